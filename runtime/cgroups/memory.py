"""Memory controller: limit, memory+swap, reservation, swappiness, OOM; usage stats."""

from __future__ import annotations

import errno
from pathlib import Path

from runtime.cgroups import files
from runtime.cgroups.resources import Memory
from runtime.cgroups.stats import MemoryStats, working_set

# v1 reports "unlimited" as the largest page-aligned long.
_V1_UNLIMITED = 0x7FFFFFFFFFFFF000


def _v1_value(limit: int) -> int:
    return _V1_UNLIMITED if limit == -1 else limit


def set_v1(directory: Path, memory: Memory) -> None:
    limit, swap = memory.limit, memory.swap
    has_swap_file = (directory / "memory.memsw.limit_in_bytes").exists()
    if swap is None and limit == -1 and has_swap_file:
        swap = -1  # otherwise memsw would cap the "unlimited" memory at its old value
    if swap is not None and not has_swap_file:
        if swap == limit or swap == -1:
            swap = None  # asking for "no extra swap" is already true without accounting
        else:
            raise files.ControllerUnavailableError(
                f"memory.swap={swap} needs swap accounting (memory.memsw.limit_in_bytes "
                f"missing in {directory}; boot with swapaccount=1)"
            )
    if limit is not None and swap is not None:
        # The kernel keeps memsw >= limit at every moment: raise memsw first when growing.
        current_memsw = files.read_int(directory, "memory.memsw.limit_in_bytes")
        if _v1_value(swap) >= current_memsw:
            _write_v1(directory, "memory.memsw.limit_in_bytes", swap)
            _write_v1(directory, "memory.limit_in_bytes", limit)
        else:
            _write_v1(directory, "memory.limit_in_bytes", limit)
            _write_v1(directory, "memory.memsw.limit_in_bytes", swap)
    elif limit is not None:
        _write_v1(directory, "memory.limit_in_bytes", limit)
    elif swap is not None:
        _write_v1(directory, "memory.memsw.limit_in_bytes", swap)
    if memory.reservation is not None and memory.reservation != 0:
        files.write(directory, "memory.soft_limit_in_bytes", memory.reservation)
    if memory.swappiness is not None:
        files.write(directory, "memory.swappiness", memory.swappiness)
    if memory.disable_oom_killer:
        files.write(directory, "memory.oom_control", 1)


def _write_v1(directory: Path, name: str, value: int) -> None:
    try:
        files.write(directory, name, value)
    except files.CgroupError as exc:
        if exc.errno == errno.EBUSY:
            raise files.CgroupError(
                f"{exc}: the cgroup already uses more memory than {value} bytes", exc.errno
            ) from None
        raise


def set_v2(directory: Path, memory: Memory) -> None:
    limit, swap = memory.limit, memory.swap
    if swap is not None and swap != -1 and (limit is None or limit == -1):
        raise files.CgroupError(
            f"memory.swap={swap} needs a memory.limit: OCI swap is memory+swap and "
            "cgroup v2 limits swap alone"
        )
    if swap is not None:
        # v2's memory.swap.max counts swap only, OCI's swap counts memory + swap.
        swap_max = "max" if swap == -1 else str(swap - (limit or 0))
        if swap != -1 and swap < (limit or 0):
            raise files.CgroupError(f"memory.swap={swap} is below memory.limit={limit}")
        if (directory / "memory.swap.max").exists():
            files.write(directory, "memory.swap.max", swap_max)
        elif swap_max not in ("0", "max"):
            raise files.ControllerUnavailableError(
                f"memory.swap set but {directory}/memory.swap.max is missing (no swap support)"
            )
    if limit is not None:
        files.write(directory, "memory.max", "max" if limit == -1 else limit)
    if memory.reservation is not None and memory.reservation != 0:
        low = "max" if memory.reservation == -1 else memory.reservation
        files.write(directory, "memory.low", low)
    # swappiness and disableOOMKiller have no v2 files; like runc, they are ignored there.


def stats_v1(directory: Path) -> MemoryStats:
    stat = files.read_keyed(directory, "memory.stat")
    usage = files.read_int(directory, "memory.usage_in_bytes")
    memsw = files.read_int(directory, "memory.memsw.usage_in_bytes", default=usage)
    limit = files.read_int(directory, "memory.limit_in_bytes", default=-1)
    # total_* are hierarchical (include child cgroups), which is what a pod cgroup needs.
    oom_kills = oom_kills_v1(directory)
    return MemoryStats(
        usage=usage,
        working_set=working_set(usage, stat.get("total_inactive_file", 0)),
        rss=stat.get("total_rss", 0),
        cache=stat.get("total_cache", 0),
        swap_usage=max(memsw - usage, 0),
        page_faults=stat.get("total_pgfault", 0),
        major_page_faults=stat.get("total_pgmajfault", 0),
        limit=-1 if limit >= _V1_UNLIMITED else limit,
        # v1 counts only kills, and failcnt counts limit hits that reclaim solved too.
        oom_events=oom_kills,
        oom_kills=oom_kills,
    )


def oom_kills_v1(directory: Path) -> int:
    return files.read_keyed(directory, "memory.oom_control").get("oom_kill", 0)


def oom_kills_v2(directory: Path) -> int:
    # memory.events is absent where the memory controller is not enabled: no kills then.
    return files.read_keyed(directory, "memory.events").get("oom_kill", 0)


def stats_v2(directory: Path) -> MemoryStats:
    stat = files.read_keyed(directory, "memory.stat")
    events = files.read_keyed(directory, "memory.events")
    usage = files.read_int(directory, "memory.current")
    return MemoryStats(
        usage=usage,
        working_set=working_set(usage, stat.get("inactive_file", 0)),
        rss=stat.get("anon", 0),
        cache=stat.get("file", 0),
        swap_usage=files.read_int(directory, "memory.swap.current"),
        page_faults=stat.get("pgfault", 0),
        major_page_faults=stat.get("pgmajfault", 0),
        limit=files.read_int(directory, "memory.max", default=-1),
        oom_events=events.get("oom", 0),
        oom_kills=events.get("oom_kill", 0),
    )
