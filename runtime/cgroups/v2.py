"""cgroup v2 (unified hierarchy) with the cgroupfs driver: "/crisp/abc" →
<unified mount>/crisp/abc, with controllers enabled down the ancestors."""

from __future__ import annotations

import errno
import time
from pathlib import Path

from runtime.cgroups import cpu, cpuset, files, freezer, hugetlb, io, memory, pids
from runtime.cgroups.manager import (
    CgroupManager,
    CgroupVersion,
    remove_tree,
    rmdir_if_unused,
    tree_pids,
    under,
)
from runtime.cgroups.mounts import DEFAULT_ROOT, find_mounts
from runtime.cgroups.resources import LinuxResources
from runtime.cgroups.stats import MemoryStats, PidsStats, Stats

# Controllers a container may need, enabled in each ancestor's cgroup.subtree_control.
CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids", "hugetlb", "misc", "rdma")


class V2Manager(CgroupManager):
    version = CgroupVersion.V2

    def __init__(self, path: str, root: Path | None = None) -> None:
        """`root` is the cgroup2 mountpoint; by default the one in /proc/self/mountinfo
        (which on a hybrid host is /sys/fs/cgroup/unified)."""
        super().__init__(path)
        self.root = root if root is not None else (find_mounts().unified or DEFAULT_ROOT)
        self.dir = under(self.root, self.path)

    def create(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise files.CgroupError(f"mkdir {self.dir}: {exc.strerror}", exc.errno) from None
        ancestor = self.root
        for part in self.dir.relative_to(self.root).parts:
            _enable_controllers(ancestor)
            ancestor = ancestor / part

    def apply(self, pid: int) -> None:
        self.create()
        files.write(self.dir, "cgroup.procs", pid)

    def enter(self) -> None:
        # v2 moves only whole processes (cgroup.threads needs a threaded subtree).
        files.write(self.dir, "cgroup.procs", 0)

    def available_controllers(self) -> list[str]:
        return (files.read_optional(self.dir, "cgroup.controllers") or "").split()

    def set(self, resources: LinuxResources) -> None:
        self._require_exists()
        if resources.cpu is not None:
            cpu.set_v2(self.dir, resources.cpu)
            if resources.cpu.cpus or resources.cpu.mems:
                cpuset.set_v2(self.dir, resources.cpu)
        if resources.memory is not None:
            memory.set_v2(self.dir, resources.memory)
        if resources.pids is not None:
            pids.set_v2(self.dir, resources.pids)
        if resources.block_io is not None:
            io.set_v2(self.dir, resources.block_io)
        if resources.hugepage_limits:
            hugetlb.set_v2(self.dir, resources.hugepage_limits)
        if resources.devices and any(not r.allow or r.type != "a" for r in resources.devices):
            # Needs a BPF_PROG_TYPE_CGROUP_DEVICE program; refuse rather than run unconfined.
            raise files.ControllerUnavailableError(
                "device rules on cgroup v2 (eBPF device controller) are not implemented"
            )
        for name, value in resources.unified.items():
            files.write(self.dir, name, value)

    def stats(self) -> Stats:
        has = set(self.available_controllers())
        return Stats(
            cpu=cpu.stats_v2(self.dir),
            memory=memory.stats_v2(self.dir) if "memory" in has else MemoryStats(),
            pids=pids.stats(self.dir) if "pids" in has else PidsStats(),
            hugetlb_usage=hugetlb.usage_v2(self.dir, hugetlb.page_sizes())
            if "hugetlb" in has
            else {},
        )

    def oom_kills(self) -> int:
        return memory.oom_kills_v2(self.dir)

    def pids(self) -> list[int]:
        return tree_pids(self.dir)

    def freeze(self, timeout: float = 5.0) -> None:
        freezer.freeze_v2(self.dir, timeout)

    def thaw(self, timeout: float = 5.0) -> None:
        freezer.thaw_v2(self.dir, timeout)

    def is_frozen(self) -> bool:
        return freezer.is_frozen_v2(self.dir)

    def exists(self) -> bool:
        return self.dir.is_dir()

    def kill(self, timeout: float = 5.0) -> None:
        # cgroup.kill (Linux 5.14) kills the whole subtree atomically, forks included.
        if not (self.dir / "cgroup.kill").exists():
            super().kill(timeout)
            return
        files.write(self.dir, "cgroup.kill", 1)
        deadline = time.monotonic() + timeout
        while files.read_keyed(self.dir, "cgroup.events").get("populated") == 1:
            if time.monotonic() > deadline:
                raise files.CgroupError(f"{self.dir}: processes survive cgroup.kill")
            time.sleep(0.005)

    def remove_if_unused(self) -> bool:
        return self.path != "/" and rmdir_if_unused(self.dir)

    def destroy(self, timeout: float = 5.0) -> None:
        if self.path == "/":
            raise files.CgroupError("refusing to remove the root cgroup", errno.EINVAL)
        remove_tree(self.dir, timeout)


def _enable_controllers(directory: Path) -> None:
    """Best effort: a controller that cannot be enabled (e.g. the cgroup has processes
    of its own, or v1 holds it on a hybrid host) surfaces later as a missing file."""
    available = set((files.read_optional(directory, "cgroup.controllers") or "").split())
    enabled = set((files.read_optional(directory, "cgroup.subtree_control") or "").split())
    for controller in CONTROLLERS:
        if controller in available and controller not in enabled:
            try:
                files.write(directory, "cgroup.subtree_control", f"+{controller}")
            except files.CgroupError:
                continue
