"""Cgroup usage numbers, the same shape for v1 and v2 (what kubelet's stats need)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CpuStats:
    usage_ns: int = 0
    user_ns: int = 0
    system_ns: int = 0
    nr_periods: int = 0
    nr_throttled: int = 0
    throttled_ns: int = 0


@dataclass(frozen=True)
class MemoryStats:
    usage: int = 0
    working_set: int = 0  # usage - inactive_file, as kubelet computes it
    rss: int = 0  # anonymous memory
    cache: int = 0  # page cache
    swap_usage: int = 0
    page_faults: int = 0
    major_page_faults: int = 0
    limit: int = -1  # -1 = unlimited
    oom_events: int = 0  # times the limit was hit and the OOM path ran
    oom_kills: int = 0  # processes the OOM killer killed in this cgroup


@dataclass(frozen=True)
class PidsStats:
    current: int = 0
    limit: int = -1


@dataclass(frozen=True)
class Stats:
    cpu: CpuStats = field(default_factory=CpuStats)
    memory: MemoryStats = field(default_factory=MemoryStats)
    pids: PidsStats = field(default_factory=PidsStats)
    hugetlb_usage: dict[str, int] = field(default_factory=dict)  # page size → bytes


def working_set(usage: int, inactive_file: int) -> int:
    return usage - inactive_file if inactive_file < usage else 0
