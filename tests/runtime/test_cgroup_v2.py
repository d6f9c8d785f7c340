"""V2Manager on the host's real cgroup2 mount. On a hybrid host that mount has no
controllers, so limits are checked only where the controller is there; the core
(cgroup.procs, cpu.stat, cgroup.freeze, cgroup.kill) works everywhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.cgroups import (
    CgroupError,
    ControllerUnavailableError,
    V2Manager,
    find_mounts,
    from_oci,
)
from tests.runtime.processes import ALLOCATOR, Spawn, needs_root, remove_cgroup_dirs

UNIFIED = find_mounts().unified
pytestmark = [needs_root, pytest.mark.skipif(UNIFIED is None, reason="no cgroup2 mount")]
MIB = 1 << 20


@pytest.fixture
def cgroup(test_parent: str) -> Iterator[V2Manager]:
    assert UNIFIED is not None
    mgr = V2Manager(f"/{test_parent}/ctr", root=UNIFIED)
    # The manager enables controllers in every ancestor, the host's root included; put the
    # root back as it was (on a hybrid host, crun refuses a cgroup2 root with controllers).
    root_enabled = set((UNIFIED / "cgroup.subtree_control").read_text().split())
    try:
        yield mgr
    finally:
        remove_cgroup_dirs(UNIFIED / test_parent)
        assert not (UNIFIED / test_parent).exists()
        enabled_now = set((UNIFIED / "cgroup.subtree_control").read_text().split())
        for controller in enabled_now - root_enabled:
            (UNIFIED / "cgroup.subtree_control").write_text(f"-{controller}")


def controllers(mgr: V2Manager) -> set[str]:
    return set(mgr.available_controllers())


def test_create_apply_stats_freeze_kill_destroy(cgroup: V2Manager, spawn: Spawn) -> None:
    cgroup.create()
    assert cgroup.exists()
    child = spawn("python3", "-c", ALLOCATOR, "8")
    cgroup.apply(child.pid)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "allocated"
    assert (cgroup.dir / "cgroup.procs").read_text().split() == [str(child.pid)]
    assert cgroup.pids() == [child.pid]
    assert f"0::{cgroup.path}\n" in Path(f"/proc/{child.pid}/cgroup").read_text()

    stats = cgroup.stats()
    assert stats.cpu.usage_ns > 0  # from the core cpu.stat, with or without the controller
    if "memory" in controllers(cgroup):
        assert stats.memory.usage >= 8 * MIB
        assert stats.memory.rss >= 8 * MIB
    if "pids" in controllers(cgroup):
        assert stats.pids.current == 1

    cgroup.freeze()
    assert cgroup.is_frozen()
    cgroup.thaw()
    assert not cgroup.is_frozen()

    with pytest.raises(CgroupError, match=rf"processes still inside: \[{child.pid}\]"):
        cgroup.destroy(timeout=0.1)
    cgroup.kill()
    assert child.wait(timeout=10) == -9
    cgroup.destroy()
    assert not cgroup.exists()
    assert (cgroup.root / cgroup.path.split("/")[1]).is_dir()  # parent left to its owner
    cgroup.destroy()


def test_child_cgroups_are_removed_with_the_parent(cgroup: V2Manager, spawn: Spawn) -> None:
    nested = V2Manager(f"{cgroup.path}/inner", root=cgroup.root)
    nested.apply(spawn().pid)
    assert cgroup.pids() == nested.pids()
    cgroup.kill()
    cgroup.destroy()
    assert not nested.exists() and not cgroup.exists()


def test_limits_where_controllers_exist(cgroup: V2Manager) -> None:
    cgroup.create()
    have = controllers(cgroup)
    if "memory" in have:
        cgroup.set(from_oci({"memory": {"limit": 64 * MIB, "reservation": 16 * MIB}}))
        assert (cgroup.dir / "memory.max").read_text().strip() == str(64 * MIB)
        assert (cgroup.dir / "memory.low").read_text().strip() == str(16 * MIB)
    else:
        with pytest.raises(ControllerUnavailableError, match=r"memory\.max"):
            cgroup.set(from_oci({"memory": {"limit": 64 * MIB}}))
    if "pids" in have:
        cgroup.set(from_oci({"pids": {"limit": 10}}))
        assert (cgroup.dir / "pids.max").read_text().strip() == "10"
    else:
        with pytest.raises(ControllerUnavailableError, match=r"pids\.max"):
            cgroup.set(from_oci({"pids": {"limit": 10}}))
    if "cpu" in have:
        cgroup.set(from_oci({"cpu": {"shares": 1024, "quota": 20000, "period": 100000}}))
        assert (cgroup.dir / "cpu.weight").read_text().strip() == "39"
        assert (cgroup.dir / "cpu.max").read_text().strip() == "20000 100000"
    # Core files need no controller: unified writes to them work on every host.
    cgroup.set(from_oci({"unified": {"cgroup.max.descendants": "5"}}))
    assert (cgroup.dir / "cgroup.max.descendants").read_text().strip() == "5"
    cgroup.destroy()
