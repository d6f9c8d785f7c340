"""Pure parts of runtime.cgroups: OCI parsing, unit conversions, mountinfo."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cgroups import CgroupVersion, InvalidResourcesError, from_oci
from runtime.cgroups.cpu import cpu_max, shares_to_weight
from runtime.cgroups.devices import rule_text
from runtime.cgroups.hugetlb import page_sizes
from runtime.cgroups.io import blkio_weight_to_io_weight, io_max_lines
from runtime.cgroups.manager import normalize
from runtime.cgroups.mounts import parse_mountinfo
from runtime.cgroups.resources import (
    BlockIO,
    Cpu,
    DeviceRule,
    HugepageLimit,
    Memory,
    Pids,
    ThrottleDevice,
    WeightDevice,
)
from runtime.cgroups.stats import working_set


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(0, 0), (2, 1), (1024, 39), (512, 20), (262144, 10000), (1, 1), (10**9, 10000)],
)
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert shares_to_weight(shares) == weight


@pytest.mark.parametrize(
    ("quota", "period", "value"),
    [
        (None, None, None),
        (0, 0, None),
        (50000, 100000, "50000 100000"),
        (-1, 100000, "max 100000"),
        (20000, None, "20000"),
        (None, 250000, "max 250000"),
    ],
)
def test_cpu_max(quota: int | None, period: int | None, value: str | None) -> None:
    assert cpu_max(quota, period) == value


def test_blkio_weight_to_io_weight() -> None:
    assert blkio_weight_to_io_weight(0) == 0
    assert blkio_weight_to_io_weight(10) == 1
    assert blkio_weight_to_io_weight(1000) == 10000
    assert blkio_weight_to_io_weight(500) == 1 + 490 * 9999 // 990


def test_io_max_groups_limits_per_device() -> None:
    blkio = BlockIO(
        throttle_read_bps_device=(ThrottleDevice(8, 0, 1048576),),
        throttle_write_iops_device=(ThrottleDevice(8, 0, 100), ThrottleDevice(8, 16, 0)),
    )
    assert io_max_lines(blkio) == ["8:0 rbps=1048576 wiops=100", "8:16 wiops=max"]


def test_device_rule_text() -> None:
    assert rule_text(DeviceRule(allow=False)) == "a"
    null = DeviceRule(allow=True, type="c", major=1, minor=3, access="rwm")
    assert rule_text(null) == "c 1:3 rwm"
    assert rule_text(DeviceRule(allow=True, type="c", major=136, minor=None, access="rw")) == (
        "c 136:* rw"
    )
    assert rule_text(DeviceRule(allow=True, type="b", major=-1, minor=-1, access="m")) == "b *:* m"


KUBERNETES_LIKE = {
    "devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    ],
    "memory": {"limit": 134217728, "swap": 134217728, "reservation": 0, "swappiness": 2**64 - 1},
    "cpu": {"shares": 256, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
    "pids": {"limit": 1024},
    "blockIO": {
        "weight": 300,
        "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
    },
    "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
    "unified": {"memory.oom.group": "1"},
    "network": {"classID": 7},  # not handled; must not be fatal
}


def test_from_oci_full_example() -> None:
    res = from_oci(KUBERNETES_LIKE)
    assert res.devices == (
        DeviceRule(allow=False, type="a", access="rwm"),
        DeviceRule(allow=True, type="c", major=1, minor=3, access="rwm"),
    )
    assert res.memory == Memory(limit=134217728, swap=134217728, reservation=0)
    assert res.cpu == Cpu(shares=256, quota=50000, period=100000, cpus="0", mems="0")
    assert res.pids == Pids(1024)
    assert res.block_io is not None
    assert res.block_io.weight == 300
    assert res.block_io.weight_device == (WeightDevice(8, 0, weight=500),)
    assert res.block_io.throttle_read_bps_device == (ThrottleDevice(8, 0, 1000),)
    assert res.hugepage_limits == (HugepageLimit("2MB", 0),)
    assert dict(res.unified) == {"memory.oom.group": "1"}


def test_from_oci_empty_and_none() -> None:
    assert from_oci(None) == from_oci({})
    res = from_oci({"pids": {}, "memory": {}})
    assert res.pids is None
    assert res.memory == Memory()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"memory": {"limit": "1G"}}, r"linux\.resources\.memory\.limit must be an integer"),
        ({"memory": {"limit": True}}, r"memory\.limit must be an integer"),
        ({"memory": {"limit": -2}}, r"memory\.limit=-2 is out of range"),
        ({"memory": {"swappiness": 101}}, r"swappiness=101 is above 100"),
        ({"cpu": {"cpus": 3}}, r"cpu\.cpus must be a string"),
        ({"cpu": []}, r"linux\.resources\.cpu must be an object"),
        ({"devices": [{"type": "c"}]}, r"devices\[0\]\.allow is required"),
        ({"devices": [{"allow": True, "type": "x"}]}, r"devices\[0\]\.type must be a, b or c"),
        ({"devices": [{"allow": True, "access": "rwx"}]}, r"access must be letters"),
        ({"blockIO": {"weight": 5000}}, r"blockIO\.weight=5000 is out of range"),
        ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}}, r"\[0\]\.minor is req"),
        ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]}, r"pageSize must look like"),
        ({"unified": {"../../etc/passwd": "x"}}, r"invalid cgroup file name"),
        ({"unified": {"cgroup.procs": 1}}, r"unified\.cgroup\.procs must be a string"),
        ({"devices": {}}, r"devices must be a list"),
    ],
)
def test_from_oci_rejects_bad_input_naming_the_field(spec: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidResourcesError, match=message):
        from_oci(spec)


def test_normalize_cgroups_path() -> None:
    assert normalize("/crisp/abc") == "/crisp/abc"
    assert normalize("crisp//abc/") == "/crisp/abc"
    assert normalize("") == "/"
    for bad in ("/crisp/../etc", "./x", "a/./b"):
        with pytest.raises(ValueError, match="must not contain"):
            normalize(bad)


HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:5 - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 23 0:40 / /mnt/with\\040space rw - ext4 /dev/sda1 rw
"""

UNIFIED_MOUNTINFO = """\
30 23 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
"""


def test_parse_mountinfo_hybrid() -> None:
    mounts = parse_mountinfo(HYBRID_MOUNTINFO)
    assert mounts.v1["cpu"] == mounts.v1["cpuacct"] == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert mounts.v1["memory"] == Path("/sys/fs/cgroup/memory")
    assert mounts.v1["name=systemd"] == Path("/sys/fs/cgroup/systemd")
    assert mounts.unified == Path("/sys/fs/cgroup/unified")
    assert mounts.version is CgroupVersion.V1


def test_parse_mountinfo_unified() -> None:
    mounts = parse_mountinfo(UNIFIED_MOUNTINFO)
    assert mounts.v1 == {}
    assert mounts.unified == Path("/sys/fs/cgroup")
    assert mounts.version is CgroupVersion.V2


def test_page_sizes_from_sysfs(tmp_path: Path) -> None:
    for name in ("hugepages-2048kB", "hugepages-1048576kB", "hugepages-64kB"):
        (tmp_path / name).mkdir()
    assert page_sizes(tmp_path) == ["1GB", "2MB", "64KB"]
    assert page_sizes(tmp_path / "missing") == []


def test_working_set() -> None:
    assert working_set(1000, 300) == 700
    assert working_set(100, 300) == 0
