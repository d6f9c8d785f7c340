"""The runtime's half of CreateContainer, done after the RPC has answered.

Setting a container up in the runtime (its cgroup, the monitor, the init's namespaces, mounts
and pivot_root, up to the point where it waits to execve) is most of what a create costs.
CreateContainer does the daemon's half (record, overlay rootfs, OCI spec) and hands this
half to a worker; the container is CREATED from then on. Every verb that needs the runtime's
container waits for its create here first (outside the container's lock, which the worker
does not take), and StartContainer raises the error of a create that failed. kubelet does
work of its own between the two calls, and the setup overlaps with it.

A daemon that dies before a worker finished leaves a CREATED record without a (complete)
runtime container: reconciliation removes what the runtime had made and the container
reports as exited, as one whose runtime state is lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)

# Creates set up at the same time; more wait in line (their StartContainer waits longer).
_WORKERS = 8


class RuntimeCreates:
    def __init__(self, workers: int = _WORKERS) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="create")
        self._guard = threading.Lock()
        self._under_way: dict[str, Future[None]] = {}
        # Until the container is removed: StartContainer raises it, however late it comes.
        self._failed: dict[str, BaseException] = {}

    def begin(self, container_id: str, work: Callable[[], None]) -> None:
        """Run `work` for the container in a worker; what it raises is the create's error
        (`work` itself leaves the container in the state that error calls for)."""
        with self._guard:
            future = self._executor.submit(work)
            self._under_way[container_id] = future
        future.add_done_callback(lambda _: self._finished(container_id, future))

    def under_way(self, container_id: str) -> bool:
        return container_id in self._under_way

    def wait(self, container_id: str) -> BaseException | None:
        """Block until the container's create, if one is under way, has finished; return
        its error (None when it succeeded, or when this daemon did not begin it)."""
        future = self._under_way.get(container_id)
        if future is not None:
            return future.exception()
        return self._failed.get(container_id)

    def discard(self, container_id: str) -> None:
        """The container is removed: its error goes too."""
        self._failed.pop(container_id, None)

    def close(self) -> None:
        """The daemon stops: finish the creates under way, so none is left half made."""
        self._executor.shutdown(wait=True)

    def _finished(self, container_id: str, future: Future[None]) -> None:
        error = future.exception()
        with self._guard:
            if error is not None:
                self._failed[container_id] = error
            if self._under_way.get(container_id) is future:
                del self._under_way[container_id]
