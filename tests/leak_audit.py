"""What a crisp daemon and its monitors hold, read from /proc: open fds, threads, RSS, and
zombies that crisp's own processes failed to reap.

PID 1 on the test hosts reaps orphans only every few seconds, so zombies whose parent is
PID 1 are the environment's, not crisp's: only zombies whose parent is the daemon, one of
its descendants (the fork server), a monitor or a process below a monitor (the containers
and their exec children) count.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from critest.procmem import with_descendants


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in parentheses may hold spaces and parentheses itself.
    state, parent = stat.rsplit(")", 1)[1].split()[:2]
    return state, int(parent)


def zombies_below(roots: Iterable[int]) -> list[int]:
    """Zombies whose parent is one of `roots` or a descendant of one."""
    parents = with_descendants(roots)
    found = []
    for pid in parents:
        info = _state_and_parent(pid)
        if info is not None and info[0] == "Z" and info[1] in parents:
            found.append(pid)
    return sorted(found)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _status_field(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


@dataclass(frozen=True)
class Holdings:
    """One look at the daemon and its monitors."""

    daemon_fds: int
    daemon_threads: int
    daemon_rss_kib: int
    monitor_fds: Mapping[int, int]  # monitor pid → its open fds
    zombies: tuple[int, ...]

    def grown_monitors(self, before: Holdings, slack: int) -> dict[int, tuple[int, int]]:
        """Monitors holding more than `slack` fds above `before`: pid → (before, now)."""
        return {
            pid: (before.monitor_fds[pid], fds)
            for pid, fds in self.monitor_fds.items()
            if fds > before.monitor_fds.get(pid, fds) + slack
        }


def holdings(daemon_pid: int, monitor_pids: Iterable[int]) -> Holdings:
    monitors = list(monitor_pids)
    return Holdings(
        daemon_fds=fd_count(daemon_pid),
        daemon_threads=_status_field(daemon_pid, "Threads"),
        daemon_rss_kib=_status_field(daemon_pid, "VmRSS"),
        monitor_fds={pid: fd_count(pid) for pid in monitors},
        zombies=tuple(zombies_below([daemon_pid, *monitors])),
    )


def settled_holdings(
    daemon_pid: int,
    monitor_pids: Iterable[int],
    settled: Callable[[Holdings], bool],
    timeout: float = 5,
) -> Holdings:
    """The first look that `settled` accepts, or the last one after `timeout`.

    An exec that just returned can still be on its way out: its pipes closing in the
    monitor, its zombie a few milliseconds from being reaped. What stays beyond `timeout`
    is a leak."""
    monitors = list(monitor_pids)
    deadline = time.monotonic() + timeout
    while True:
        now = holdings(daemon_pid, monitors)
        if settled(now) or time.monotonic() > deadline:
            return now
        time.sleep(0.1)
