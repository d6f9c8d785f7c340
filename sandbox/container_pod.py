"""What a container takes from its pod, read through the pods' own API (never their files)."""

from __future__ import annotations

from pathlib import Path

from sandbox.container_context import ContainerContext
from sandbox.errors import FailedPrecondition, NotFound
from sandbox.oci_spec import PodContext
from sandbox.pod import PodSandbox


def ready_pod(ctx: ContainerContext, pod_id: str) -> PodSandbox:
    """The pod a new container goes into: it must exist and be ready."""
    if not pod_id:
        raise NotFound("pod sandbox id is required")
    status = ctx.pods.status(pod_id)
    if not status.ready:
        raise FailedPrecondition(f"pod sandbox {status.pod.id} is not ready")
    return status.pod


def log_base(ctx: ContainerContext, pod: PodSandbox) -> Path:
    """The directory container log paths are relative to."""
    return Path(pod.config.log_directory or ctx.settings.log_dir / pod.id)


def cgroup_parent(ctx: ContainerContext, pod: PodSandbox) -> str:
    return pod.cgroup_parent or f"{ctx.settings.cgroup_parent.rstrip('/')}/pod-{pod.id}"


def pod_context(ctx: ContainerContext, pod: PodSandbox) -> PodContext:
    config = pod.config
    return PodContext(
        pod_id=pod.id,
        hostname=pod.hostname,
        network_ns=pod.pins.get("net"),
        ipc_ns=pod.pins.get("ipc"),
        uts_ns=pod.pins.get("uts"),
        pid_ns=(f"/proc/{pod.pause_pid}/ns/pid" if config.shares_pid and pod.pause_pid else None),
        hostname_file=pod.hostname_path,
        hosts_file=pod.hosts_path,
        resolv_conf_file=pod.resolv_conf_path,
        shm_path=pod.shm_path,
        cgroup_parent=cgroup_parent(ctx, pod),
        host_network=config.host_network,
        labels=dict(config.labels),
        user_ns=pod.pins.get("user"),
        uid_mappings=config.uid_mappings,
        gid_mappings=config.gid_mappings,
    )
