"""checkov policy CKV_TCPINFO_2: every container drops ALL capabilities and adds only those
tcp-info needs.

The manifests skip checkov's CKV_K8S_25 and CKV_K8S_37, which fail on any added capability;
this policy takes their place with the list deploy/README.md justifies, so that a capability
added beyond it still fails the check.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.kubernetes.checks.resource.base_spec_check import BaseK8Check

from tcpinfo_pod import SUPPORTED_KINDS, containers, pod_spec

# BPF, PERFMON: load and attach the eBPF programs. NET_ADMIN: sock_diag destroy groups and
# SO_RCVBUFFORCE. SYS_ADMIN: setns(2) into other network namespaces. SYS_PTRACE: other users'
# /proc/PID/ns/net and /proc/PID/environ.
ALLOWED = frozenset({"BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"})


def name(capability: Any) -> str:
    text = str(capability).upper()
    return text[4:] if text.startswith("CAP_") else text


class Capabilities(BaseK8Check):
    def __init__(self) -> None:
        super().__init__(
            name="containers drop ALL capabilities and add only BPF, PERFMON, NET_ADMIN, SYS_ADMIN, SYS_PTRACE",
            id="CKV_TCPINFO_2",
            categories=(CheckCategories.KUBERNETES,),
            supported_entities=SUPPORTED_KINDS,
        )

    def scan_spec_conf(self, conf: dict[str, Any]) -> CheckResult:
        spec = pod_spec(conf)
        if spec is None:
            return CheckResult.PASSED
        for container in containers(spec):
            context = container.get("securityContext") or {}
            capabilities = context.get("capabilities") or {} if isinstance(context, dict) else {}
            if not isinstance(capabilities, dict):
                return CheckResult.FAILED
            if "ALL" not in {name(c) for c in capabilities.get("drop") or []}:
                return CheckResult.FAILED
            if not {name(c) for c in capabilities.get("add") or []} <= ALLOWED:
                return CheckResult.FAILED
        return CheckResult.PASSED


check = Capabilities()
