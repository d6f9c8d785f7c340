"""RemoveContainer: stop (at once) if needed, then remove the monitor's state, the overlay
rootfs, the bundle and the record. Idempotent, also for ids crisp never knew."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from runtime.container import ContainerNotFoundError
from sandbox import image_volumes, rootfs
from sandbox.container_context import ContainerContext
from sandbox.container_events import ContainerEvent, EventType
from sandbox.container_record import Container
from sandbox.container_stop import halt
from sandbox.errors import NotFound


def remove(ctx: ContainerContext, container_id: str) -> None:
    container = ctx.store.find(container_id)
    if container is None:
        return
    with ctx.locks.hold(container.id):
        if ctx.store.find(container.id) is None:
            return  # removed meanwhile
        dismantle(ctx, container)
    ctx.events.publish(
        ContainerEvent(container.id, container.pod_id, EventType.DELETED, time.time_ns())
    )


def dismantle(ctx: ContainerContext, container: Container) -> None:
    """Everything a container has, in reverse order of creation (the caller holds its
    lock). Each step is idempotent, so a retry after a failure finishes the job."""
    halt(ctx, container, 0)
    with contextlib.suppress(ContainerNotFoundError):
        ctx.runtime_of(container).delete(container.id, force=True)
    image_volumes.unmount(Path(container.bundle))
    rootfs.remove(Path(container.bundle))
    ctx.store.delete(container.id)
    ctx.exited.pop(container.id, None)
    ctx.cpu_samples.pop(container.cgroup, None)


def _full_pod_id(ctx: ContainerContext, pod_id: str) -> str:
    """Pod verbs accept an id prefix (as crictl sends); containers record the full id."""
    try:
        return ctx.pods.status(pod_id).pod.id
    except NotFound:
        return pod_id


def stop_pod_containers(ctx: ContainerContext, pod_id: str, timeout: int = 0) -> None:
    """For StopPodSandbox: every container of the pod stopped."""
    for container in ctx.store.in_pod(_full_pod_id(ctx, pod_id)):
        with ctx.locks.hold(container.id):
            halt(ctx, container, timeout)


def remove_pod_containers(ctx: ContainerContext, pod_id: str) -> None:
    """For RemovePodSandbox: every container of the pod removed."""
    for container in ctx.store.in_pod(_full_pod_id(ctx, pod_id)):
        remove(ctx, container.id)
