"""checkov policy CKV_TCPINFO_1: hostPath volumes are mounted read-only, except tcp-info's own
data directories, and the host's root is never mounted.

checkov's built-in Kubernetes checks look at hostPath only for the Docker socket (CKV_K8S_27).
tcp-info mounts several host directories; this policy keeps every one of them read-only but the
two the daemon writes (the archives and the event socket's directory) and, for init containers
only, the UUID prefix file's directory (written by `tcp-info write-uuid-prefix`, read-only for
the daemon). scripts/check-deploy.sh loads it with `checkov --external-checks-dir deploy/checkov`.
"""

from __future__ import annotations

import posixpath
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.kubernetes.checks.resource.base_spec_check import BaseK8Check

from tcpinfo_pod import SUPPORTED_KINDS, containers, pod_spec

# Host directories the daemon writes to (daemonset.yaml: -output, -tcpinfo.eventsocket).
WRITABLE = frozenset({"/var/spool/tcpinfo", "/var/local/tcpinfoeventsocket"})
# Host directories init containers may write to as well: the UUID prefix file's, which the init
# container writes (`tcp-info write-uuid-prefix /var/local/uuid/prefix`) and the daemon and the
# other programs of the node that compute the same UUIDs only read.
WRITABLE_BY_INIT = WRITABLE | frozenset({"/var/local/uuid"})

class HostPathWritable(BaseK8Check):
    def __init__(self) -> None:
        super().__init__(
            name="hostPath volumes are read-only except tcp-info's data directories (and the UUID prefix's, for init containers); / is never mounted",
            id="CKV_TCPINFO_1",
            categories=(CheckCategories.KUBERNETES,),
            supported_entities=SUPPORTED_KINDS,
        )

    def scan_spec_conf(self, conf: dict[str, Any]) -> CheckResult:
        spec = pod_spec(conf)
        if not isinstance(spec, dict):
            return CheckResult.PASSED
        host_paths: dict[str, str] = {}
        for volume in spec.get("volumes") or []:
            if isinstance(volume, dict) and isinstance(volume.get("hostPath"), dict):
                path = posixpath.normpath(str(volume["hostPath"].get("path", "")))
                if path in ("/", "//"):
                    return CheckResult.FAILED
                host_paths[str(volume.get("name"))] = path
        init = [c for c in spec.get("initContainers") or [] if isinstance(c, dict)]
        for container in containers(spec):
            writable = WRITABLE_BY_INIT if any(container is c for c in init) else WRITABLE
            for mount in container.get("volumeMounts") or []:
                if not isinstance(mount, dict):
                    continue
                path = host_paths.get(str(mount.get("name")))
                if path is None or mount.get("readOnly") is True:
                    continue
                if path not in writable:
                    return CheckResult.FAILED
        return CheckResult.PASSED


check = HostPathWritable()
