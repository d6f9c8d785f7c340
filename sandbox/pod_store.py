"""Pods persisted through the daemon's state database, with an in-memory copy for reads.

The database is injected as a small Protocol (cri.state.StateDB fits it), so the domain does
not import the daemon. Only this process writes pod records, so the cache stays exact.
"""

from __future__ import annotations

import threading
from typing import Literal

from sandbox.errors import AlreadyExists, InvalidArgument
from sandbox.pod import CREATING, PodMetadata, PodSandbox
from sandbox.records import RecordStore

KIND: Literal["pod"] = "pod"


class PodStore:
    def __init__(self, records: RecordStore) -> None:
        self._records = records
        self._lock = threading.Lock()
        self._pods: dict[str, PodSandbox] = {}
        for record in records.list_kind(KIND):
            self._pods[record.id] = PodSandbox.from_doc(
                record.id, record.state, record.created_ns, record.document
            )

    def reserve(self, pod: PodSandbox) -> None:
        """Persist a new pod in CREATING, refusing a second pod of the same identity."""
        with self._lock:
            for other in self._pods.values():
                if _same_identity(other.config.metadata, pod.config.metadata):
                    meta = pod.config.metadata
                    raise AlreadyExists(
                        f"pod sandbox {meta.namespace}/{meta.name} (uid {meta.uid}, attempt "
                        f"{meta.attempt}) already exists as {other.id}"
                    )
            pod.state = CREATING
            self._save_locked(pod)

    def save(self, pod: PodSandbox) -> None:
        with self._lock:
            self._save_locked(pod)

    def _save_locked(self, pod: PodSandbox) -> None:
        record = self._records.put(KIND, pod.id, pod.state, pod.to_doc())
        # The database stamps the creation time at the first write: reporting its value
        # keeps created_at the same before and after a daemon restart.
        pod.created_ns = record.created_ns
        self._pods[pod.id] = pod

    def delete(self, pod_id: str) -> None:
        with self._lock:
            self._records.delete(KIND, pod_id)
            self._pods.pop(pod_id, None)

    def all(self) -> list[PodSandbox]:
        with self._lock:
            return sorted(self._pods.values(), key=lambda p: (p.created_ns, p.id))

    def find(self, pod_id: str) -> PodSandbox | None:
        """The pod with this id, or the only one whose id starts with it (as crictl allows)."""
        if not pod_id:
            raise InvalidArgument("pod sandbox id is required")
        with self._lock:
            exact = self._pods.get(pod_id)
            if exact is not None:
                return exact
            matches = [p for p in self._pods.values() if p.id.startswith(pod_id)]
        if len(matches) > 1:
            raise InvalidArgument(f"pod sandbox id prefix {pod_id!r} is ambiguous")
        return matches[0] if matches else None


def _same_identity(a: PodMetadata, b: PodMetadata) -> bool:
    return (a.name, a.namespace, a.uid, a.attempt) == (b.name, b.namespace, b.uid, b.attempt)
