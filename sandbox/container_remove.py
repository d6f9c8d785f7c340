"""RemoveContainer: stop (at once) if needed and answer; the container is then gone for
clients. Its monitor's state, cgroup, overlay rootfs and bundle are taken apart after the
answer by the collector thread, from a REMOVING record, so that a crash meanwhile is finished
at the next start. Idempotent, also for ids crisp never knew."""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from pathlib import Path

from runtime.container import ContainerNotFoundError
from sandbox import image_volumes, rootfs
from sandbox.container_context import ContainerContext
from sandbox.container_events import ContainerEvent, EventType
from sandbox.container_record import REMOVING, Container
from sandbox.container_stop import halt
from sandbox.errors import NotFound

log = logging.getLogger(__name__)


def remove(ctx: ContainerContext, container_id: str) -> None:
    container = ctx.store.find(container_id)
    if container is None:
        return
    ctx.creates.wait(container.id)
    with ctx.locks.hold(container.id):
        if ctx.store.find(container.id) is None:
            return  # removed meanwhile
        halt(ctx, container, 0)
        ctx.store.set_state(container.id, REMOVING)
    ctx.removed.put(container.id)
    ctx.events.publish(
        ContainerEvent(container.id, container.pod_id, EventType.DELETED, time.time_ns())
    )


def collect(ctx: ContainerContext, container_id: str) -> bool:
    """Take apart what a removed container left, unless that is done already; False when
    a step failed (the record stays REMOVING, for a retry)."""
    with ctx.locks.hold(container_id):
        container = ctx.store.being_removed(container_id)
        if container is None:
            return True
        try:
            dismantle(ctx, container)
        except Exception:
            log.exception("container %s: taking apart the removed container failed", container_id)
            return False
        return True


# The collector works in batches, at most this often. Unmounting an overlay and removing
# cgroups hold kernel locks (mount namespace, cgroup tree) that a create needs too; taken
# a moment later, they stay off the path of the request right after RemoveContainer.
BATCH_SECONDS = 0.1
# A container that could not be taken apart is tried again after this, doubling up to the
# cap (RemoveContainer has answered: nobody else would retry before the pod goes).
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 300.0


def collect_removed(ctx: ContainerContext) -> None:
    """The collector thread: containers as RemoveContainer hands them over, a batch at a
    time, and those that failed again later; ends at None (after what was queued before
    it)."""
    retries: dict[str, tuple[float, float]] = {}  # id → (when to try again, delay after that)
    while True:
        due = min((at for at, _ in retries.values()), default=None)
        try:
            first = ctx.removed.get(
                timeout=None if due is None else max(0.0, due - time.monotonic())
            )
            batch = [first]
        except queue.Empty:
            batch = []
        time.sleep(BATCH_SECONDS)
        while not ctx.removed.empty():
            batch.append(ctx.removed.get())
        now = time.monotonic()
        batch += [c for c, (at, _) in retries.items() if at <= now and c not in batch]
        for container_id in batch:
            if container_id is None:
                return
            if collect(ctx, container_id):
                retries.pop(container_id, None)
            else:
                _, delay = retries.get(container_id, (0.0, RETRY_FIRST_SECONDS))
                retries[container_id] = (now + delay, min(delay * 2, RETRY_MAX_SECONDS))


def dismantle(ctx: ContainerContext, container: Container) -> None:
    """Everything a container has, in reverse order of creation (the caller holds its
    lock, and has waited for its create). Each step is idempotent, so a retry after a
    failure finishes the job."""
    halt(ctx, container, 0)
    with contextlib.suppress(ContainerNotFoundError):
        ctx.runtime_of(container).delete(container.id, force=True)
    image_volumes.unmount(Path(container.bundle))
    rootfs.remove(Path(container.bundle))
    ctx.store.delete(container.id)
    ctx.exited.pop(container.id, None)
    ctx.creates.discard(container.id)
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
        ctx.creates.wait(container.id)
        with ctx.locks.hold(container.id):
            halt(ctx, container, timeout)


def remove_pod_containers(ctx: ContainerContext, pod_id: str) -> None:
    """For RemovePodSandbox: every container of the pod removed and taken apart now (the
    pod's cgroup and namespaces go next), also those the collector has not reached yet."""
    for container in ctx.store.in_pod(_full_pod_id(ctx, pod_id), removing=True):
        remove(ctx, container.id)
        with ctx.locks.hold(container.id):
            if ctx.store.being_removed(container.id) is not None:
                dismantle(ctx, container)
