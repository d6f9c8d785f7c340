"""RemovePodSandbox: stop if needed, then unpin the namespaces and remove the pod's files,
cgroups and record. Idempotent, also for ids crisp never knew."""

from __future__ import annotations

import copy
from pathlib import Path

from runtime import namespaces
from sandbox import pod_cgroups
from sandbox.pod import NOTREADY, PodSandbox
from sandbox.pod_context import PodContext
from sandbox.pod_stop import halt


def remove(ctx: PodContext, pod_id: str) -> None:
    found = ctx.store.find(pod_id)
    if found is None:
        return
    with ctx.locks.hold(found.id):
        current = ctx.store.find(found.id)
        if current is None:
            return
        pod = copy.deepcopy(current)
        try:
            halt(ctx, pod)
        except BaseException:
            pod.state = NOTREADY
            ctx.store.save(pod)
            raise
        if not dismantle(ctx, pod):
            _hand_on_cgroup_parent(ctx, pod)
        ctx.store.delete(pod.id)


def _hand_on_cgroup_parent(ctx: PodContext, pod: PodSandbox) -> None:
    """The cgroup parent crisp made for this pod is still used by other pods that named it
    too: the next of them removes it once unused."""
    for other in ctx.store.all():
        if other.id == pod.id or other.cgroup_parent != pod.cgroup_parent:
            continue
        with ctx.locks.hold(other.id):
            current = ctx.store.find(other.id)
            if current is None:
                continue
            heir = copy.deepcopy(current)
            heir.cgroup_owned = True
            ctx.store.save(heir)
            return


def dismantle(ctx: PodContext, pod: PodSandbox) -> bool:
    """Remove pins, mounts, files and cgroups, including ones made by a run that crashed
    before it could record them (their paths are fixed by the pod's id). False when the
    cgroup parent crisp made for the pod stays, used by others."""
    pin_dir = Path(pod.dir) / "ns"
    for path in {*pod.pins.values(), *(str(pin_dir / k) for k in namespaces.PINNED_KINDS)}:
        namespaces.unpin(path)
    if pod.shm_path:
        namespaces.unmount(pod.shm_path)
    ctx.pin_root.remove_pod_dir(Path(pod.dir))
    return pod_cgroups.destroy(ctx.cgroups, pod)
