"""What each controller writes, and in which order, checked on plain directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.cgroups import ControllerUnavailableError, V1Manager, V2Manager, files, from_oci
from runtime.cgroups import memory as memory_controller
from runtime.cgroups.resources import Memory

Write = tuple[str, str, str]


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Write]]:
    """Record (directory name, file, value) of every files.write instead of writing, but
    update files that exist so that read-back logic sees the new value."""
    log: list[Write] = []

    def record(directory: Path, name: str, value: str | int) -> None:
        log.append((directory.name, name, str(value)))
        if (directory / name).exists():
            (directory / name).write_text(str(value))

    monkeypatch.setattr(files, "write", record)
    yield log


def make(directory: Path, **contents: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in contents.items():
        (directory / name.replace("__", ".")).write_text(value)
    return directory


UNLIMITED_V1 = str(0x7FFFFFFFFFFFF000)


def test_v1_memory_grows_memsw_first_and_shrinks_limit_first(
    tmp_path: Path, writes: list[Write]
) -> None:
    leaf = make(
        tmp_path / "memory",
        memory__limit_in_bytes=UNLIMITED_V1,
        memory__memsw__limit_in_bytes=UNLIMITED_V1,
        memory__soft_limit_in_bytes="0",
    )
    memory_controller.set_v1(leaf, Memory(limit=100, swap=200, reservation=50))
    assert writes == [
        ("memory", "memory.limit_in_bytes", "100"),
        ("memory", "memory.memsw.limit_in_bytes", "200"),
        ("memory", "memory.soft_limit_in_bytes", "50"),
    ]
    writes.clear()
    memory_controller.set_v1(leaf, Memory(limit=300, swap=400))
    assert [w[1] for w in writes] == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    writes.clear()
    memory_controller.set_v1(leaf, Memory(limit=-1))
    assert writes == [
        ("memory", "memory.memsw.limit_in_bytes", "-1"),
        ("memory", "memory.limit_in_bytes", "-1"),
    ]


def test_v1_swap_without_swap_accounting(tmp_path: Path, writes: list[Write]) -> None:
    leaf = make(tmp_path / "memory", memory__limit_in_bytes=UNLIMITED_V1)
    memory_controller.set_v1(leaf, Memory(limit=100, swap=100))
    assert writes == [("memory", "memory.limit_in_bytes", "100")]
    with pytest.raises(ControllerUnavailableError, match="swap accounting"):
        memory_controller.set_v1(leaf, Memory(limit=100, swap=300))


def test_v2_memory_converts_oci_swap_to_swap_only(tmp_path: Path, writes: list[Write]) -> None:
    leaf = make(tmp_path / "c", memory__max="max", memory__swap__max="max", memory__low="0")
    memory_controller.set_v2(leaf, Memory(limit=100, swap=300, reservation=10))
    assert writes == [
        ("c", "memory.swap.max", "200"),
        ("c", "memory.max", "100"),
        ("c", "memory.low", "10"),
    ]
    writes.clear()
    memory_controller.set_v2(leaf, Memory(limit=-1, swap=-1))
    assert writes == [("c", "memory.swap.max", "max"), ("c", "memory.max", "max")]
    with pytest.raises(files.CgroupError, match=r"needs a memory\.limit"):
        memory_controller.set_v2(leaf, Memory(swap=300))
    with pytest.raises(files.CgroupError, match=r"below memory\.limit"):
        memory_controller.set_v2(leaf, Memory(limit=300, swap=100))


def test_v1_manager_writes_each_controller_in_its_hierarchy(
    tmp_path: Path, writes: list[Write]
) -> None:
    mounts = {c: tmp_path / c for c in ("cpu", "cpuacct", "memory", "pids", "devices", "blkio")}
    mgr = V1Manager("/pod/ctr", mounts=mounts)
    assert mgr.dirs["memory"] == tmp_path / "memory" / "pod" / "ctr"
    mgr.create()
    make(mgr.dirs["memory"], memory__limit_in_bytes=UNLIMITED_V1)
    make(mgr.dirs["blkio"], blkio__bfq__weight="100")
    mgr.set(
        from_oci(
            {
                "cpu": {"shares": 512, "quota": 20000, "period": 100000},
                "memory": {"limit": 1 << 20},
                "pids": {"limit": -1},
                "blockIO": {
                    "weight": 200,
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 10}],
                },
                "devices": [
                    {"allow": False},
                    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rw"},
                ],
            }
        )
    )
    assert [(w[1], w[2]) for w in writes] == [
        ("cpu.shares", "512"),
        ("cpu.cfs_period_us", "100000"),
        ("cpu.cfs_quota_us", "20000"),
        ("memory.limit_in_bytes", "1048576"),
        ("pids.max", "max"),
        ("blkio.bfq.weight", "200"),
        ("blkio.throttle.write_iops_device", "8:0 10"),
        ("devices.deny", "a"),
        ("devices.allow", "c 5:1 rw"),
    ]
    with pytest.raises(ControllerUnavailableError, match="'hugetlb' is not mounted"):
        mgr.set(from_oci({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]}))
    with pytest.raises(files.CgroupError, match="needs cgroup v2"):
        mgr.set(from_oci({"unified": {"memory.high": "1"}}))
    for leaf in mgr.dirs.values():  # real cgroupfs dirs are removable with files in them
        for item in leaf.iterdir():
            item.unlink()
    mgr.destroy()
    assert not mgr.exists()
    assert (tmp_path / "memory" / "pod").is_dir()  # the parent is not ours to remove


def test_v2_manager_writes_files_and_unified(tmp_path: Path, writes: list[Write]) -> None:
    mgr = V2Manager("/pod/ctr", root=tmp_path)
    mgr.create()
    make(mgr.dir, io__weight="default 100")
    mgr.set(
        from_oci(
            {
                "cpu": {"shares": 1024, "quota": -1, "period": 100000, "cpus": "0-1"},
                "pids": {"limit": 64},
                "blockIO": {
                    "weight": 1000,
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 4096}],
                },
                "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}],
                "unified": {"memory.oom.group": "1"},
            }
        )
    )
    assert [(w[1], w[2]) for w in writes] == [
        ("cpu.weight", "39"),
        ("cpu.max", "max 100000"),
        ("cpuset.cpus", "0-1"),
        ("pids.max", "64"),
        ("io.weight", "default 10000"),
        ("io.max", "8:0 rbps=4096"),
        ("hugetlb.2MB.max", "2097152"),
        ("memory.oom.group", "1"),
    ]
    with pytest.raises(ControllerUnavailableError, match="eBPF"):
        mgr.set(from_oci({"devices": [{"allow": False}]}))


def test_missing_controller_file_is_a_clear_error(tmp_path: Path) -> None:
    mgr = V2Manager("/x", root=tmp_path)
    mgr.create()
    with pytest.raises(ControllerUnavailableError, match=r"cannot set memory\.max='1024'"):
        mgr.set(from_oci({"memory": {"limit": 1024}}))
