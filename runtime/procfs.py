"""Facts about processes read from /proc."""

from __future__ import annotations

import os
import select


def start_time(pid: int) -> int | None:
    """Kernel start time of live process `pid`, which tells it apart from a later process
    that reuses the pid; None once it has exited (zombies included)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def wait_exit(pid: int, started: int | None, timeout: float) -> bool:
    """Block until process `pid`, the one whose start_time() was `started`, has exited
    (zombies included), at most `timeout` seconds; whether it has. Any process's exit can
    be waited for this way (a pidfd), not only a child's, and without polling."""
    if started is None:
        return True
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        if start_time(pid) != started:  # exited before the pidfd, or the pid is reused
            return True
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(max(timeout, 0) * 1000))
    finally:
        os.close(pidfd)


class ProcessWatch:
    """Whether a process has exited, told by a poll of a pidfd kept open: no read of /proc
    per look, for answers asked every second (container and pod status)."""

    def __init__(self, pid: int, started: int) -> None:
        """Raises ProcessLookupError when process `pid` with start_time() `started` has
        exited, or OSError when no descriptor is left."""
        self._pidfd = os.pidfd_open(pid)
        # Checked after pidfd_open: from here on the pidfd names this very process.
        if start_time(pid) != started:
            os.close(self._pidfd)
            raise ProcessLookupError(f"process {pid} started at {started} has exited")
        self._exit = select.poll()
        self._exit.register(self._pidfd, select.POLLIN)

    def exited(self) -> bool:
        return bool(self._exit.poll(0))

    def close(self) -> None:
        os.close(self._pidfd)
