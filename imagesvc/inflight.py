"""Single flight: concurrent calls for the same key share one execution, so identical
concurrent pulls download (and unpack) each blob once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Generic, TypeVar

from imagesvc.errors import PullCancelled

_V = TypeVar("_V")
_POLL_SECONDS = 0.1


class SingleFlight(Generic[_V]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, Future[_V]] = {}

    def do(
        self,
        key: Hashable,
        work: Callable[[], _V],
        cancelled: Callable[[], bool] = lambda: False,
    ) -> tuple[_V, bool]:
        """Run ``work`` or wait for the run already going for ``key``; returns its result
        and whether it was shared. A waiter whose leader was cancelled (by that leader's
        own caller) takes over instead of failing; ``cancelled`` lets a waiter stop waiting."""
        while True:
            with self._lock:
                future = self._calls.get(key)
                leader = future is None
                if future is None:
                    future = Future()
                    self._calls[key] = future
            if leader:
                return self._lead(key, future, work), False
            while True:
                if cancelled():
                    raise PullCancelled(str(key))
                try:
                    return future.result(timeout=_POLL_SECONDS), True
                except FutureTimeout:
                    continue
                except PullCancelled:
                    break  # the leader's caller gave up; this caller has not

    def _lead(self, key: Hashable, future: Future[_V], work: Callable[[], _V]) -> _V:
        try:
            result = work()
        except BaseException as err:
            future.set_exception(err)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            with self._lock:
                del self._calls[key]
