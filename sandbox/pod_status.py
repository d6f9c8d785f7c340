"""PodSandboxStatus: the pod as kubelet sees it, and the verbose info crictl inspectp shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.errors import NotFound
from sandbox.pod import NOTREADY, READY, PodSandbox
from sandbox.pod_context import PodContext


@dataclass(frozen=True)
class PodStatus:
    pod: PodSandbox
    ready: bool
    info: dict[str, Any] | None  # with verbose only


def observed_state(ctx: PodContext, pod: PodSandbox) -> str:
    """READY only while everything is there: a pause process that died (killed, OOM) makes
    the pod NOTREADY, so that kubelet replaces it."""
    if pod.state != READY:
        return NOTREADY
    if pod.pause_pid and not ctx.pauses.alive(pod.pause_pid, pod.pause_start_time):
        return NOTREADY
    return READY


def status(ctx: PodContext, pod_id: str, verbose: bool) -> PodStatus:
    pod = ctx.store.find(pod_id)
    if pod is None:
        raise NotFound(f"pod sandbox {pod_id} not found")
    ready = observed_state(ctx, pod) == READY
    return PodStatus(pod, ready, verbose_info(pod) if verbose else None)


def verbose_info(pod: PodSandbox) -> dict[str, Any]:
    config = pod.config
    namespaces = [{"type": kind, "path": path} for kind, path in sorted(pod.pins.items())]
    if config.shares_pid and pod.pause_pid:
        namespaces.append({"type": "pid", "path": f"/proc/{pod.pause_pid}/ns/pid"})
    mounts = [
        {"destination": "/etc/hostname", "source": pod.hostname_path},
        {"destination": "/etc/hosts", "source": pod.hosts_path},
        {"destination": "/etc/resolv.conf", "source": pod.resolv_conf_path},
    ]
    if pod.shm_path:
        mounts.append({"destination": "/dev/shm", "source": pod.shm_path})
    return {
        "pid": pod.pause_pid,
        "runtimeHandler": pod.runtime_handler,
        "netNamespacePath": pod.netns_path,
        "state": pod.state,
        "config": config.to_doc(),
        "runtimeSpec": {
            "hostname": pod.hostname,
            "namespaces": namespaces,
            "mounts": mounts,
            "sysctl": config.sysctls,
            "cgroupsPath": pod.infra_cgroup,
            "cgroupParent": pod.cgroup_parent,
        },
        "network": {"name": pod.network_name, "ips": pod.ips, "attached": pod.network_attached},
    }
