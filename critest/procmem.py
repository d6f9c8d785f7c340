"""How much memory processes use, read from /proc, and which processes to count.

RSS counts every resident page a process maps, shared or not, so summing RSS over processes
that share pages (a daemon and its forked children) counts those pages many times. PSS
divides each page by the number of processes mapping it: the PSS of a set of processes sums
to what they cost together. Both come from /proc/PID/smaps_rollup, readable by root (or the
process's owner); where it is not readable, PSS is left 0 and RSS comes from /proc/PID/status.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Memory:
    rss_kib: int = 0
    pss_kib: int = 0
    private_kib: int = 0  # pages no other process maps: what exiting would free

    def __add__(self, other: Memory) -> Memory:
        return Memory(
            self.rss_kib + other.rss_kib,
            self.pss_kib + other.pss_kib,
            self.private_kib + other.private_kib,
        )


def _kib_fields(text: str) -> dict[str, int]:
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[key] = int(parts[0])
    return fields


def memory_of(pid: int) -> Memory | None:
    """The process's memory, or None if it is gone."""
    try:
        rollup = _kib_fields(Path(f"/proc/{pid}/smaps_rollup").read_text())
    except PermissionError:
        rollup = {}
    except (FileNotFoundError, ProcessLookupError):
        return None
    if rollup:
        private = rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)
        return Memory(rollup.get("Rss", 0), rollup.get("Pss", 0), private)
    try:
        status = _kib_fields(Path(f"/proc/{pid}/status").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None
    # A kernel thread or a zombie has no memory map: it costs nothing here.
    return Memory(rss_kib=status.get("VmRSS", 0))


def total(pids: Iterable[int]) -> Memory:
    """The summed memory of the processes still alive."""
    summed = Memory()
    for pid in pids:
        memory = memory_of(pid)
        if memory is not None:
            summed += memory
    return summed


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in parentheses may hold spaces and parentheses itself.
    return int(stat.rsplit(")", 1)[1].split()[1])


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = parent_of(int(entry))
            if parent is not None:
                children[parent].append(int(entry))
    return children


def with_descendants(pids: Iterable[int]) -> set[int]:
    """The processes and all their descendants alive now."""
    children = _children_by_parent()
    found: set[int] = set()
    pending = list(pids)
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending.extend(children.get(pid, ()))
    return found


def cgroup_processes(cgroup: Path) -> set[int]:
    """Every process in the cgroup directory and the cgroups below it (v1 or v2)."""
    found: set[int] = set()
    for directory, _subdirs, files in os.walk(cgroup):
        if "cgroup.procs" in files:
            try:
                text = (Path(directory) / "cgroup.procs").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue  # removed while walking
            found.update(int(line) for line in text.split())
    return found
