"""CPU controller: shares/weight, CFS quota and period, burst, idle, realtime."""

from __future__ import annotations

import errno
from pathlib import Path

from runtime.cgroups import files
from runtime.cgroups.resources import Cpu
from runtime.cgroups.stats import CpuStats

_USER_HZ = 100  # cpuacct.stat reports ticks of USER_HZ, fixed at 100 on Linux
_NS_PER_TICK = 1_000_000_000 // _USER_HZ


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2, 262144] → v2 cpu.weight [1, 10000], the OCI/kubernetes
    convention; 0 means "not set" and maps to 0."""
    if shares == 0:
        return 0
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def cpu_max(quota: int | None, period: int | None) -> str | None:
    """Value for v2 cpu.max; None when neither is set. Quota <= 0 means unlimited."""
    if not quota and not period:
        return None
    text = str(quota) if quota is not None and quota > 0 else "max"
    if period:
        text += f" {period}"
    return text


def set_v1(directory: Path, cpu: Cpu) -> None:
    if cpu.shares:
        files.write(directory, "cpu.shares", cpu.shares)
    if cpu.period:
        _write_period_quota_v1(directory, cpu.period, cpu.quota)
    elif cpu.quota is not None and cpu.quota != 0:
        files.write(directory, "cpu.cfs_quota_us", cpu.quota)
    if cpu.burst is not None:
        files.write(directory, "cpu.cfs_burst_us", cpu.burst)
    if cpu.idle is not None:
        files.write(directory, "cpu.idle", cpu.idle)
    # The runtime must fit the period the kernel already has, so period goes first.
    if cpu.realtime_period:
        files.write(directory, "cpu.rt_period_us", cpu.realtime_period)
    if cpu.realtime_runtime is not None and cpu.realtime_runtime != 0:
        files.write(directory, "cpu.rt_runtime_us", cpu.realtime_runtime)


def _write_period_quota_v1(directory: Path, period: int, quota: int | None) -> None:
    # The kernel checks quota against period (and against children), so one order can be
    # refused where the other succeeds; try period first, then the other way round.
    try:
        files.write(directory, "cpu.cfs_period_us", period)
    except files.CgroupError as exc:
        if exc.errno != errno.EINVAL or not quota:
            raise
        files.write(directory, "cpu.cfs_quota_us", quota)
        files.write(directory, "cpu.cfs_period_us", period)
        return
    if quota:
        files.write(directory, "cpu.cfs_quota_us", quota)


def set_v2(directory: Path, cpu: Cpu) -> None:
    if cpu.shares:
        files.write(directory, "cpu.weight", shares_to_weight(cpu.shares))
    value = cpu_max(cpu.quota, cpu.period)
    if value is not None:
        files.write(directory, "cpu.max", value)
    if cpu.burst is not None:
        files.write(directory, "cpu.max.burst", cpu.burst)
    if cpu.idle is not None:
        files.write(directory, "cpu.idle", cpu.idle)
    if cpu.realtime_runtime or cpu.realtime_period:
        raise files.ControllerUnavailableError("cgroup v2 has no realtime CPU controls")


def stats_v1(cpu_dir: Path | None, cpuacct_dir: Path | None) -> CpuStats:
    throttling = files.read_keyed(cpu_dir, "cpu.stat") if cpu_dir else {}
    usage = user = system = 0
    if cpuacct_dir is not None:
        usage = files.read_int(cpuacct_dir, "cpuacct.usage")
        ticks = files.read_keyed(cpuacct_dir, "cpuacct.stat")
        user = ticks.get("user", 0) * _NS_PER_TICK
        system = ticks.get("system", 0) * _NS_PER_TICK
    return CpuStats(
        usage_ns=usage,
        user_ns=user,
        system_ns=system,
        nr_periods=throttling.get("nr_periods", 0),
        nr_throttled=throttling.get("nr_throttled", 0),
        throttled_ns=throttling.get("throttled_time", 0),
    )


def stats_v2(directory: Path) -> CpuStats:
    # cpu.stat's usage lines come from the cgroup core, so they exist even when the cpu
    # controller is not enabled; the throttling lines only with it.
    stat = files.read_keyed(directory, "cpu.stat")
    return CpuStats(
        usage_ns=stat.get("usage_usec", 0) * 1000,
        user_ns=stat.get("user_usec", 0) * 1000,
        system_ns=stat.get("system_usec", 0) * 1000,
        nr_periods=stat.get("nr_periods", 0),
        nr_throttled=stat.get("nr_throttled", 0),
        throttled_ns=stat.get("throttled_usec", 0) * 1000,
    )
