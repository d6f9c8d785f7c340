"""A pod's cgroups with the cgroupfs driver: the pod cgroup (kubelet's `cgroup_parent`, or
one crisp makes below its own parent) and the pause process's cgroup inside it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from runtime.cgroups import (
    CgroupError,
    CgroupManager,
    CgroupVersion,
    LinuxResources,
    V1Manager,
    V2Manager,
    find_mounts,
)
from runtime.cgroups.resources import Cpu, Memory
from sandbox.errors import InvalidArgument
from sandbox.pod import PodConfig, PodSandbox, Resources
from sandbox.pod_context import PodSettings

Managers = Callable[[str], CgroupManager]


def managers() -> Managers:
    """Cgroup managers for this host. The mount table is read once: it grows with every pod
    (pins, /dev/shm), and reading it per call made each verb slower the more pods ran."""
    mounts = find_mounts()
    if mounts.version is CgroupVersion.V1:
        return lambda path: V1Manager(path, mounts.v1)
    root = mounts.unified or Path("/sys/fs/cgroup")
    return lambda path: V2Manager(path, root)


def plan(pod: PodSandbox, settings: PodSettings) -> None:
    """Decide the paths (nothing is made yet), so teardown knows them from the first record."""
    if settings.cgroup_driver != "cgroupfs":
        return  # systemd slices are not managed by crisp yet: processes stay where they are
    given = pod.config.cgroup_parent
    pod.cgroup_parent = given or f"{settings.cgroup_parent.rstrip('/')}/pod-{pod.id}"
    pod.cgroup_owned = not given
    pod.infra_cgroup = f"{pod.cgroup_parent}/crisp-{pod.id}"


def create(new: Managers, pod: PodSandbox) -> None:
    if not pod.cgroup_parent:
        return
    manager = new(pod.cgroup_parent)
    if not manager.exists():
        pod.cgroup_owned = True  # kubelet had not made it: ours to remove again
    manager.create()
    limits = pod_limits(pod.config) if pod.cgroup_owned else None
    if limits is not None:
        try:
            manager.set(limits)
        except CgroupError as e:
            raise InvalidArgument(f"pod sandbox config: linux.resources: {e}") from e


def place(new: Managers, pod: PodSandbox) -> None:
    """Move the pause process into its own cgroup below the pod cgroup."""
    if pod.infra_cgroup and pod.pause_pid:
        new(pod.infra_cgroup).apply(pod.pause_pid)


def destroy_infra(new: Managers, pod: PodSandbox) -> None:
    if pod.infra_cgroup:
        new(pod.infra_cgroup).destroy()


def destroy(new: Managers, pod: PodSandbox) -> bool:
    """Remove the pod's cgroups; False when its parent, crisp's to remove, stays in use."""
    destroy_infra(new, pod)
    if not (pod.cgroup_parent and pod.cgroup_owned):
        return True
    if pod.config.cgroup_parent:
        # A parent the client named but had not made may be shared (critest gives every pod
        # the same one): what other pods made below it is theirs, and a fresh cgroup has no
        # tasks to keep a recursive removal away. Only an unused parent goes.
        return new(pod.cgroup_parent).remove_if_unused()
    new(pod.cgroup_parent).destroy()
    return True


def pod_limits(config: PodConfig, previous: PodConfig | None = None) -> LinuxResources | None:
    """Pod-level limits: the containers' sum (`resources`) plus the runtime class overhead.
    With the `previous` config (an update), a CPU quota or memory limit it had and `config`
    drops is lifted again (-1, unlimited) rather than left at its old value."""
    total = _add(config.resources, config.overhead)
    before = None if previous is None else _add(previous.resources, previous.overhead)
    if total is None and before is None:
        return None
    total = total or Resources()

    def lifted(value: int, old: int) -> int | None:
        if value:
            return value
        return -1 if old > 0 else None

    cpu = Cpu(
        shares=total.cpu_shares or None,
        quota=lifted(total.cpu_quota, before.cpu_quota if before else 0),
        period=total.cpu_period or None,
        cpus=total.cpuset_cpus or None,
        mems=total.cpuset_mems or None,
    )
    memory = Memory(
        limit=lifted(total.memory_limit_in_bytes, before.memory_limit_in_bytes if before else 0)
    )
    return LinuxResources(
        cpu=cpu if cpu != Cpu() else None,
        memory=memory if memory != Memory() else None,
    )


def _add(resources: Resources | None, overhead: Resources | None) -> Resources | None:
    if resources is None:
        return overhead
    if overhead is None:
        return resources

    def limit(a: int, b: int) -> int:
        return a + b if a > 0 else 0  # no limit stays no limit, whatever the overhead

    return Resources(
        cpu_period=resources.cpu_period or overhead.cpu_period,
        cpu_quota=limit(resources.cpu_quota, overhead.cpu_quota),
        cpu_shares=resources.cpu_shares + overhead.cpu_shares,
        memory_limit_in_bytes=limit(
            resources.memory_limit_in_bytes, overhead.memory_limit_in_bytes
        ),
        cpuset_cpus=resources.cpuset_cpus,
        cpuset_mems=resources.cpuset_mems,
    )
