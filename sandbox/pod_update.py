"""UpdatePodSandboxResources: kubelet's pod-level resize (overhead plus the containers' sum).

The new values are recorded in the pod's config, so that status and a daemon restart see
them. The pod cgroup is written only where crisp made it: a cgroup kubelet named
(`cgroup_parent`) is kubelet's, and kubelet has resized it before it calls this verb (which
is why containerd and CRI-O only record and notify here). Repeating an update is harmless.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses

from runtime.cgroups import CgroupError
from sandbox import pod_cgroups
from sandbox.errors import InvalidArgument, NotFound
from sandbox.pod import PodConfig, Resources
from sandbox.pod_context import PodContext


def update_resources(
    ctx: PodContext, pod_id: str, overhead: Resources | None, resources: Resources | None
) -> None:
    _require_valid(overhead, "overhead")
    _require_valid(resources, "resources")
    found = ctx.store.find(pod_id)
    if found is None:
        raise NotFound(f"pod sandbox {pod_id} not found")
    with ctx.locks.hold(found.id):
        current = ctx.store.find(found.id)
        if current is None:
            raise NotFound(f"pod sandbox {pod_id} not found")
        pod = copy.deepcopy(current)
        pod.config = dataclasses.replace(pod.config, overhead=overhead, resources=resources)
        if pod.cgroup_parent and pod.cgroup_owned:
            _write(ctx, pod.cgroup_parent, current.config, pod.config, pod.id)
        ctx.store.save(pod)


def _require_valid(resources: Resources | None, where: str) -> None:
    if resources is None:
        return
    for field in dataclasses.fields(resources):
        value = getattr(resources, field.name)
        if isinstance(value, int) and value < 0:
            raise InvalidArgument(f"{where}.{field.name}={value} must not be negative")


def _write(ctx: PodContext, cgroup: str, old: PodConfig, new: PodConfig, pod_id: str) -> None:
    manager = ctx.cgroups(cgroup)
    limits = pod_cgroups.pod_limits(new, previous=old)
    if limits is None:
        return
    try:
        manager.set(limits)
    except CgroupError as e:
        # The kernel took some files before it refused one (say, a memory limit below what
        # the pod uses): put the old limits back, so the pod is as before the request.
        previous = pod_cgroups.pod_limits(old, previous=new)
        if previous is not None:
            with contextlib.suppress(CgroupError):
                manager.set(previous)
        raise InvalidArgument(f"pod sandbox {pod_id}: resources: {e}") from e
