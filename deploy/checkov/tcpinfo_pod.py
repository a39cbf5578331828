"""The pod spec of a workload, for tcp-info's checkov policies (imported by name: checkov puts
this directory on the module path while loading it)."""

from __future__ import annotations

from typing import Any

# Kinds that carry a pod spec, directly (Pod) or in a template.
SUPPORTED_KINDS = (
    "Pod",
    "DaemonSet",
    "Deployment",
    "StatefulSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
)


def pod_spec(conf: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of `conf`, or None if it has none."""
    spec = conf.get("spec")
    if not isinstance(spec, dict):
        return None
    if conf.get("kind") == "Pod":
        return spec
    if conf.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
        if not isinstance(spec, dict):
            return None
    template = spec.get("template")
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        return None
    return template["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container of the pod spec: init, regular and ephemeral."""
    found = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                found.append(container)
    return found
