"""Whether pause processes still run, answered by a poll of a pidfd kept per process
rather than by a read of /proc: ListPodSandbox and PodSandboxStatus ask it of every pod, and
kubelet asks every second."""

from __future__ import annotations

import threading

from runtime import pause
from runtime.procfs import ProcessWatch


class PauseWatch:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[tuple[int, int], ProcessWatch] = {}

    def alive(self, pid: int, started: int) -> bool:
        """Whether the process `pid` that started at `started` (its start_time) runs."""
        key = (pid, started)
        watched = self._watched.get(key)
        if watched is None:
            try:
                watched = ProcessWatch(pid, started)
            except ProcessLookupError:
                return False
            except OSError:  # out of descriptors: asked the plain way, not remembered
                return pause.is_alive(pid, started)
            with self._lock:
                kept = self._watched.setdefault(key, watched)
            if kept is not watched:  # another thread was first: one pidfd a process
                watched.close()
                watched = kept
        if watched.exited():
            self.forget(pid, started)
            return False
        return True

    def forget(self, pid: int, started: int) -> None:
        """Stop watching (the pod stops): its descriptor is closed."""
        with self._lock:
            watched = self._watched.pop((pid, started), None)
        if watched is not None:
            watched.close()
