"""Start-up: compare the recorded pods with the host after a crash, restart or reboot.

A pod caught half-made (CREATING) is undone; a READY pod whose pins, /dev/shm or pause process
are gone becomes NOTREADY, for kubelet to stop, remove and replace. Then CNI garbage
collection releases what belongs to pods crisp no longer knows.
"""

from __future__ import annotations

import logging

from cni.errors import CNIError
from runtime import namespaces, pause
from sandbox.pod import CREATING, NOTREADY, READY, PodSandbox
from sandbox.pod_context import PodContext
from sandbox.pod_remove import dismantle
from sandbox.pod_stop import halt

log = logging.getLogger(__name__)


def problems(pod: PodSandbox, mount_points: set[str]) -> list[str]:
    found = [
        f"{kind} namespace pin {path} is gone"
        for kind, path in pod.pins.items()
        if not namespaces.is_pinned(path)
    ]
    if pod.pause_pid and not pause.is_alive(pod.pause_pid, pod.pause_start_time):
        found.append(f"pause process {pod.pause_pid} is gone")
    if pod.shm_path and pod.shm_path not in mount_points:
        found.append(f"/dev/shm mount {pod.shm_path} is gone")
    return found


def _remove_strays(ctx: PodContext) -> None:
    """Pod dirs that no record names (the database was lost or replaced): nothing can
    reach them through CRI any more, so they only hold namespaces and memory."""
    pods_dir = ctx.settings.pods_dir
    known = {pod.id for pod in ctx.store.all()}
    strays = [p for p in pods_dir.iterdir() if p.name not in known] if pods_dir.is_dir() else []
    for stray in strays:
        log.warning("removing %s: no pod sandbox of that id is recorded", stray)
        for kind in namespaces.PINNED_KINDS:
            namespaces.unpin(stray / "ns" / kind)
        namespaces.unmount(stray / "shm")
        ctx.pin_root.remove_pod_dir(stray)


def reconcile(ctx: PodContext) -> None:
    mount_points = set(namespaces.mount_points())
    for pod in ctx.store.all():
        if pod.state == CREATING:
            log.warning("pod sandbox %s: undoing a start interrupted by a restart", pod.id)
            pod.network_attached = not pod.config.host_network  # ADD may have begun
            try:
                halt(ctx, pod)
                dismantle(ctx, pod)
            except Exception:
                log.exception("pod sandbox %s: cleanup incomplete; left NOTREADY", pod.id)
                pod.state = NOTREADY
                ctx.store.save(pod)
                continue
            ctx.store.delete(pod.id)
        elif pod.state == READY:
            found = problems(pod, mount_points)
            if found:
                log.warning("pod sandbox %s is no longer ready: %s", pod.id, "; ".join(found))
                pod.state = NOTREADY
                ctx.store.save(pod)
    _remove_strays(ctx)
    try:
        ctx.network.gc(p.id for p in ctx.store.all())
    except CNIError as e:
        log.info("CNI garbage collection skipped: %s", e)
