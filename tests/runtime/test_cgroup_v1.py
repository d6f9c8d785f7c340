"""V1Manager on the host's real cgroup v1 hierarchies, under a unique test parent."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.cgroups import CgroupError, V1Manager, find_mounts, from_oci
from tests.runtime.processes import ALLOCATOR, Spawn, needs_root, remove_cgroup_dirs

MOUNTS = find_mounts().v1
pytestmark = [
    needs_root,
    pytest.mark.skipif(
        not {"cpu", "memory", "pids", "freezer"} <= MOUNTS.keys(),
        reason="needs cgroup v1 cpu, memory, pids and freezer hierarchies",
    ),
]
MIB = 1 << 20


@pytest.fixture
def cgroup(test_parent: str) -> Iterator[V1Manager]:
    mgr = V1Manager(f"/{test_parent}/ctr")
    try:
        yield mgr
    finally:
        tops = {Path(m) / test_parent for m in MOUNTS.values()}
        for top in tops:
            remove_cgroup_dirs(top)
        assert not any(top.exists() for top in tops)


def read(mgr: V1Manager, controller: str, name: str) -> str:
    return (mgr.dirs[controller] / name).read_text().strip()


def procs(mgr: V1Manager, controller: str) -> list[int]:
    return [int(p) for p in read(mgr, controller, "cgroup.procs").split()]


def start_allocator(spawn: Spawn, mgr: V1Manager, mib: int) -> int:
    child = spawn("python3", "-c", ALLOCATOR, str(mib))
    mgr.apply(child.pid)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "allocated"
    return child.pid


def test_create_makes_every_hierarchy_and_fills_cpuset(cgroup: V1Manager) -> None:
    cgroup.create()
    cgroup.create()  # idempotent
    assert cgroup.exists()
    for directory in cgroup.dirs.values():
        assert directory.is_dir()
    if "cpuset" in cgroup.dirs:
        root = Path(MOUNTS["cpuset"])
        assert read(cgroup, "cpuset", "cpuset.cpus") == (root / "cpuset.cpus").read_text().strip()
        assert read(cgroup, "cpuset", "cpuset.mems") == (root / "cpuset.mems").read_text().strip()


def test_set_limits_and_read_them_back(cgroup: V1Manager) -> None:
    cgroup.create()
    memory: dict[str, int] = {"limit": 64 * MIB, "reservation": 32 * MIB, "swappiness": 10}
    has_memsw = (cgroup.dirs["memory"] / "memory.memsw.limit_in_bytes").exists()
    if has_memsw:
        memory["swap"] = 96 * MIB
    spec = {
        "memory": memory,
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 100},
        "devices": [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": True, "type": "c", "major": 136, "access": "rw"},
        ],
    }
    cgroup.set(from_oci(spec))
    assert read(cgroup, "memory", "memory.limit_in_bytes") == str(64 * MIB)
    assert read(cgroup, "memory", "memory.soft_limit_in_bytes") == str(32 * MIB)
    assert read(cgroup, "memory", "memory.swappiness") == "10"
    if has_memsw:
        assert read(cgroup, "memory", "memory.memsw.limit_in_bytes") == str(96 * MIB)
    assert read(cgroup, "cpu", "cpu.shares") == "512"
    assert read(cgroup, "cpu", "cpu.cfs_quota_us") == "50000"
    assert read(cgroup, "cpu", "cpu.cfs_period_us") == "100000"
    assert read(cgroup, "pids", "pids.max") == "100"
    if "cpuset" in cgroup.dirs:
        assert read(cgroup, "cpuset", "cpuset.cpus") == "0"
    if "devices" in cgroup.dirs:
        assert read(cgroup, "devices", "devices.list").splitlines() == ["c 1:3 rwm", "c 136:* rw"]

    # Growing memory+swap past the old memsw limit needs memsw written first.
    grown: dict[str, int] = {"limit": 256 * MIB}
    if has_memsw:
        grown["swap"] = 512 * MIB
    update = {"memory": grown, "cpu": {"quota": -1}, "pids": {"limit": -1}}
    cgroup.update(from_oci(update))
    assert read(cgroup, "memory", "memory.limit_in_bytes") == str(256 * MIB)
    if has_memsw:
        assert read(cgroup, "memory", "memory.memsw.limit_in_bytes") == str(512 * MIB)
    assert read(cgroup, "cpu", "cpu.cfs_quota_us") == "-1"
    assert read(cgroup, "pids", "pids.max") == "max"
    cgroup.update(from_oci({"memory": {"limit": -1, "swap": -1}}))
    assert int(read(cgroup, "memory", "memory.limit_in_bytes")) >= 1 << 62


def test_kernel_rejection_names_file_and_value(cgroup: V1Manager) -> None:
    cgroup.create()
    with pytest.raises(CgroupError, match=r"write '1' to .*cpu\.cfs_period_us: Invalid argument"):
        cgroup.set(from_oci({"cpu": {"period": 1}}))


def test_apply_stats_freeze_kill_destroy(cgroup: V1Manager, spawn: Spawn) -> None:
    with pytest.raises(CgroupError, match=r"crisp-test-\w+/ctr does not exist \(create it"):
        cgroup.set(from_oci({"pids": {"limit": 50}}))
    cgroup.create()
    cgroup.set(from_oci({"pids": {"limit": 50}}))
    pid = start_allocator(spawn, cgroup, 24)
    for controller in ("cpu", "memory", "pids", "freezer"):
        assert pid in procs(cgroup, controller)
    own = Path(f"/proc/{pid}/cgroup").read_text()
    assert f":memory:{cgroup.path}\n" in own
    assert cgroup.pids() == [pid]

    stats = cgroup.stats()
    assert stats.pids.current == 1
    assert stats.pids.limit == 50
    assert stats.memory.usage >= 24 * MIB
    assert stats.memory.rss >= 24 * MIB
    assert 24 * MIB <= stats.memory.working_set <= stats.memory.usage
    assert stats.memory.page_faults > 0
    assert stats.memory.limit == -1
    assert stats.memory.oom_kills == 0
    assert cgroup.oom_kills() == 0
    assert stats.cpu.usage_ns > 0

    cgroup.freeze()
    assert cgroup.is_frozen()
    assert read(cgroup, "freezer", "freezer.state") == "FROZEN"
    cgroup.thaw()
    assert not cgroup.is_frozen()

    with pytest.raises(CgroupError, match=rf"processes still inside: \[{pid}\]"):
        cgroup.destroy(timeout=0.1)
    cgroup.kill()
    cgroup.destroy()
    assert not cgroup.exists()
    for directory in cgroup.dirs.values():
        assert not directory.exists()
    cgroup.destroy()  # idempotent


def test_enter_moves_the_calling_process_into_every_hierarchy(cgroup: V1Manager) -> None:
    cgroup.create()
    report_r, report_w = os.pipe()
    child = os.fork()
    if child == 0:  # single-threaded, as enter() requires
        status = 1
        try:
            cgroup.enter()
            os.write(report_w, Path("/proc/self/cgroup").read_bytes())
            status = 0
        finally:
            os._exit(status)
    os.close(report_w)
    with os.fdopen(report_r, "rb") as report:
        own = report.read().decode()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    joined = {}
    for line in own.splitlines():
        _, controllers, path = line.split(":", 2)
        joined.update(dict.fromkeys(controllers.split(","), path))
    for controller in cgroup.dirs:
        assert joined[controller] == cgroup.path, controller


def test_oom_kill_is_counted(cgroup: V1Manager, spawn: Spawn) -> None:
    memory: dict[str, int] = {"limit": 32 * MIB}
    if (Path(MOUNTS["memory"]) / "memory.memsw.limit_in_bytes").exists():
        memory["swap"] = 32 * MIB  # no swap, or the allocation would just page out
    cgroup.create()
    cgroup.set(from_oci({"memory": memory}))
    child = spawn("python3", "-c", ALLOCATOR, "128")
    cgroup.apply(child.pid)
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.wait(timeout=30) == -9
    deadline = time.monotonic() + 5
    while cgroup.stats().memory.oom_kills == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = cgroup.stats()
    assert stats.memory.oom_kills >= 1
    assert cgroup.oom_kills() == stats.memory.oom_kills
    assert stats.memory.oom_events >= 1
    assert stats.memory.limit == 32 * MIB
    cgroup.destroy()
    assert not cgroup.exists()
