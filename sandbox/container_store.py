"""Containers persisted through the daemon's state database, with an in-memory copy for
reads. The database is injected as a small Protocol (cri.state.StateDB fits it); only this
process writes container records, so the cache stays exact."""

from __future__ import annotations

import copy
import dataclasses
import threading
from typing import Any, Literal

from sandbox.container_record import CREATING, REMOVING, Container
from sandbox.errors import AlreadyExists, InvalidArgument
from sandbox.records import RecordStore

KIND: Literal["container"] = "container"


class ContainerStore:
    def __init__(self, records: RecordStore) -> None:
        self._records = records
        self._lock = threading.Lock()
        self._containers: dict[str, Container] = {}
        for record in records.list_kind(KIND):
            self._containers[record.id] = Container.from_doc(
                record.id, record.state, record.created_ns, record.document
            )

    def reserve(self, container: Container) -> None:
        """Hold a new container in CREATING, refusing a second one of the same name and
        attempt in the same pod (kubelet's identity of a container). In memory only: its
        first database write is its CREATED record; what a crash leaves before that is a
        bundle directory no record names, which reconciliation removes."""
        with self._lock:
            for other in self._containers.values():
                if other.state != REMOVING and (other.pod_id, other.name, other.attempt) == (
                    container.pod_id,
                    container.name,
                    container.attempt,
                ):
                    raise AlreadyExists(
                        f"container {container.name!r} (attempt {container.attempt}) already "
                        f"exists in pod sandbox {container.pod_id} as {other.id}"
                    )
            container.state = CREATING
            self._containers[container.id] = copy.deepcopy(container)

    def save(self, container: Container) -> None:
        with self._lock:
            self._save_locked(container)

    def _save_locked(self, container: Container) -> None:
        record = self._records.put(KIND, container.id, container.state, container.to_doc())
        # The database stamps the creation time at the first write: reporting its value
        # keeps created_at the same before and after a daemon restart.
        container.created_ns = record.created_ns
        self._containers[container.id] = copy.deepcopy(container)

    def set_state(self, container_id: str, state: str, **changes: Any) -> Container | None:
        """Record a transition (with other `changes` to the record); None when the container
        is gone meanwhile. REMOVING is the last state: a late observer (an exit noticed, a
        failed create) cannot revive it."""
        return self._change(container_id, state=state, **changes)

    def update(self, container_id: str, **changes: Any) -> Container | None:
        """Change fields other than the state, of the record as it is now (not of a copy
        read earlier, which a concurrent transition may have overtaken)."""
        return self._change(container_id, **changes)

    def _change(self, container_id: str, **changes: Any) -> Container | None:
        with self._lock:
            current = self._containers.get(container_id)
            if current is None or current.state == REMOVING:
                return None
            changed = dataclasses.replace(current, **changes)
            if changed != current:
                self._records.put(KIND, changed.id, changed.state, changed.to_doc())
                self._containers[container_id] = changed
            return changed

    def delete(self, container_id: str) -> None:
        with self._lock:
            self._records.delete(KIND, container_id)
            self._containers.pop(container_id, None)

    def all(self, removing: bool = False) -> list[Container]:
        """Oldest first; those being removed (gone for clients) only with `removing`.
        Records handed out are read-only: a change goes through save()."""
        with self._lock:
            chosen = [c for c in self._containers.values() if removing or c.state != REMOVING]
        return sorted(chosen, key=lambda c: (c.created_ns, c.id))

    def in_pod(self, pod_id: str, removing: bool = False) -> list[Container]:
        return [c for c in self.all(removing) if c.pod_id == pod_id]

    def being_removed(self, container_id: str) -> Container | None:
        """The container if RemoveContainer has answered for it and its parts remain."""
        with self._lock:
            container = self._containers.get(container_id)
        return container if container is not None and container.state == REMOVING else None

    def find(self, container_id: str) -> Container | None:
        """The container with this id, or the only one whose id starts with it (not one
        being removed)."""
        if not container_id:
            raise InvalidArgument("container id is required")
        with self._lock:
            exact = self._containers.get(container_id)
            if exact is not None and exact.state != REMOVING:
                return exact
            matches = [
                c
                for c in self._containers.values()
                if c.id.startswith(container_id) and c.state != REMOVING
            ]
        if len(matches) > 1:
            raise InvalidArgument(f"container id prefix {container_id!r} is ambiguous")
        return matches[0] if matches else None
