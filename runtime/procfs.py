"""Facts about processes read from /proc."""

from __future__ import annotations


def start_time(pid: int) -> int | None:
    """Kernel start time of live process `pid`, which tells it apart from a later process
    that reuses the pid; None once it has exited (zombies included)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])
