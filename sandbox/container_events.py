"""Container lifecycle events for GetContainerEvents (kubelet's evented PLEG).

Every subscriber has its own bounded queue: a slow consumer loses events (counted) rather
than blocking the verb that published them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

_QUEUE_SIZE = 1000
_POLL_SECONDS = 0.5


class EventType(Enum):
    CREATED = "created"
    STARTED = "started"
    STOPPED = "stopped"
    DELETED = "deleted"


@dataclass(frozen=True)
class ContainerEvent:
    container_id: str
    pod_id: str
    type: EventType
    at_ns: int


class EventHub:
    def __init__(self, queue_size: int = _QUEUE_SIZE) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[queue.Queue[ContainerEvent]] = set()
        self._queue_size = queue_size
        self.dropped = 0  # events a full subscriber queue did not take

    def publish(self, event: ContainerEvent) -> None:
        with self._lock:
            for subscriber in self._subscribers:
                try:
                    subscriber.put_nowait(event)
                except queue.Full:
                    self.dropped += 1

    def subscribe(self, active: threading.Event | None = None) -> Iterator[ContainerEvent]:
        """Events from now on, until the consumer stops iterating (or `active` is
        cleared by the caller, e.g. when its RPC ends)."""
        inbox: queue.Queue[ContainerEvent] = queue.Queue(self._queue_size)
        with self._lock:
            self._subscribers.add(inbox)
        try:
            while active is None or active.is_set():
                try:
                    yield inbox.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    continue
        finally:
            with self._lock:
                self._subscribers.discard(inbox)
