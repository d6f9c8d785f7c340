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


class RuntimeCreatesClosed(RuntimeError):
    """The daemon is stopping: no create can begin any more."""


class RuntimeCreates:
    def __init__(self, workers: int = _WORKERS) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="create")
        self._guard = threading.Lock()
        self._under_way: dict[str, Future[None]] = {}
        # Until the container is removed: StartContainer raises it, however late it comes.
        self._failed: dict[str, BaseException] = {}
        self._closed = False

    def expect(self, container_id: str) -> None:
        """Announce a create before its container can be seen: from now on every verb
        waits for it, until `begin`'s work has finished or the create is `abandon`ed."""
        future: Future[None] = Future()
        with self._guard:
            self._under_way[container_id] = future

    def begin(self, container_id: str, work: Callable[[], None]) -> None:
        """Run `work` for the expected container in a worker; what it raises is the
        create's error (`work` itself leaves the container in the state that error calls
        for). Raises RuntimeCreatesClosed once the daemon is stopping."""
        future = self._under_way[container_id]

        def run() -> None:
            try:
                work()
            except BaseException as error:
                self._settle(container_id, future, error)
                future.set_exception(error)
            else:
                self._settle(container_id, future, None)
                future.set_result(None)

        with self._guard:
            if self._closed:
                raise RuntimeCreatesClosed("crisp is stopping: no container can be created")
            self._executor.submit(run)

    def abandon(self, container_id: str) -> None:
        """The create failed before `begin` (and was undone): nobody waits for it any more."""
        future = self._under_way.get(container_id)
        if future is not None and not future.done():
            self._settle(container_id, future, None)
            future.set_result(None)

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
        with self._guard:
            self._closed = True
        self._executor.shutdown(wait=True)

    def _settle(self, container_id: str, future: Future[None], error: BaseException | None) -> None:
        """The bookkeeping of a finished create, done before its future completes: whoever
        the future wakes finds it done (a done-callback would run only after them)."""
        with self._guard:
            if error is not None:
                self._failed[container_id] = error
            if self._under_way.get(container_id) is future:
                del self._under_way[container_id]
