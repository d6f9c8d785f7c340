"""cgroup v1 (legacy/hybrid) with the cgroupfs driver: one directory per controller
hierarchy, e.g. "/crisp/abc" → /sys/fs/cgroup/memory/crisp/abc, …/cpu/crisp/abc, …"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from pathlib import Path

from runtime.cgroups import (
    blkio,
    cpu,
    cpuset,
    devices,
    files,
    freezer,
    hugetlb,
    memory,
    pids,
)
from runtime.cgroups.manager import (
    CgroupManager,
    CgroupVersion,
    remove_tree,
    rmdir_if_unused,
    tree_pids,
    under,
)
from runtime.cgroups.mounts import find_mounts
from runtime.cgroups.resources import LinuxResources
from runtime.cgroups.stats import MemoryStats, PidsStats, Stats

# Controllers a container joins. Named hierarchies (name=systemd) are left alone.
CONTROLLERS = (
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "pids",
    "blkio",
    "hugetlb",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "perf_event",
)


class V1Manager(CgroupManager):
    version = CgroupVersion.V1

    def __init__(self, path: str, mounts: Mapping[str, Path] | None = None) -> None:
        """`mounts` maps controller → hierarchy mountpoint; by default the ones in
        /proc/self/mountinfo. Controllers that are not mounted are skipped."""
        super().__init__(path)
        found = find_mounts().v1 if mounts is None else mounts
        self.mountpoints = {c: Path(found[c]) for c in CONTROLLERS if c in found}
        self.dirs = {c: under(m, self.path) for c, m in self.mountpoints.items()}

    def _dir(self, controller: str) -> Path:
        try:
            return self.dirs[controller]
        except KeyError:
            raise files.ControllerUnavailableError(
                f"cgroup v1 controller {controller!r} is not mounted"
            ) from None

    def _unique_dirs(self) -> list[Path]:
        # Co-mounted controllers (cpu,cpuacct) share a directory.
        return list(dict.fromkeys(self.dirs.values()))

    def create(self) -> None:
        for directory in self._unique_dirs():
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise files.CgroupError(f"mkdir {directory}: {exc.strerror}", exc.errno) from None
        if "cpuset" in self.dirs:
            cpuset.inherit_v1(self.mountpoints["cpuset"], self.dirs["cpuset"])

    def apply(self, pid: int) -> None:
        self.create()
        for directory in self._unique_dirs():
            files.write(directory, "cgroup.procs", pid)

    def enter(self) -> None:
        # Not cgroup.procs: moving a whole process takes the kernel's global threadgroup
        # lock, whose write side first waits for an RCU grace period (5-17 ms here, most of
        # a container create). A thread moving itself through `tasks` skips that lock, and
        # for a single-threaded caller its thread is the whole process.
        for directory in self._unique_dirs():
            files.write(directory, "tasks", 0)

    def set(self, resources: LinuxResources) -> None:
        self._require_exists()
        if resources.unified:
            raise files.CgroupError(
                f"linux.resources.unified ({', '.join(resources.unified)}) needs cgroup v2"
            )
        if resources.cpu is not None:
            cpu.set_v1(self._dir("cpu"), resources.cpu)
            if resources.cpu.cpus or resources.cpu.mems:
                cpuset.set_v1(self._dir("cpuset"), resources.cpu)
        if resources.memory is not None:
            memory.set_v1(self._dir("memory"), resources.memory)
        if resources.pids is not None:
            pids.set_v1(self._dir("pids"), resources.pids)
        if resources.block_io is not None:
            blkio.set_v1(self._dir("blkio"), resources.block_io)
        if resources.hugepage_limits:
            hugetlb.set_v1(self._dir("hugetlb"), resources.hugepage_limits)
        if resources.devices:
            devices.set_v1(self._dir("devices"), resources.devices)

    def stats(self) -> Stats:
        memory_dir = self.dirs.get("memory")
        pids_dir = self.dirs.get("pids")
        hugetlb_dir = self.dirs.get("hugetlb")
        return Stats(
            cpu=cpu.stats_v1(self.dirs.get("cpu"), self.dirs.get("cpuacct")),
            memory=memory.stats_v1(memory_dir) if memory_dir else MemoryStats(),
            pids=pids.stats(pids_dir) if pids_dir else PidsStats(),
            hugetlb_usage=hugetlb.usage_v1(hugetlb_dir, hugetlb.page_sizes())
            if hugetlb_dir
            else {},
        )

    def oom_kills(self) -> int:
        memory_dir = self.dirs.get("memory")
        return memory.oom_kills_v1(memory_dir) if memory_dir else 0

    def pids(self) -> list[int]:
        # Every process is in exactly one cgroup of each hierarchy, so one hierarchy
        # suffices; prefer the ones a container always joins.
        for controller in ("pids", "freezer", "memory", "cpu"):
            if controller in self.dirs:
                return tree_pids(self.dirs[controller])
        return []

    def freeze(self, timeout: float = 5.0) -> None:
        freezer.freeze_v1(self._dir("freezer"), timeout)

    def thaw(self, timeout: float = 5.0) -> None:
        freezer.thaw_v1(self._dir("freezer"), timeout)

    def is_frozen(self) -> bool:
        return freezer.is_frozen_v1(self._dir("freezer"))

    def exists(self) -> bool:
        return any(d.is_dir() for d in self._unique_dirs())

    def remove_if_unused(self) -> bool:
        if self.path == "/":
            return False
        return all([rmdir_if_unused(directory) for directory in self._unique_dirs()])

    def destroy(self, timeout: float = 5.0) -> None:
        if self.path == "/":
            raise files.CgroupError("refusing to remove the root cgroup", errno.EINVAL)
        for directory in self._unique_dirs():
            remove_tree(directory, timeout)
