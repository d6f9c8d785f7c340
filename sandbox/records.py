"""The state database as the domain sees it: records of pods and containers by kind.

A Protocol, so sandbox/ does not import the daemon; cri.state.StateDB fits it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

Kind = Literal["pod", "container"]


class StoredRecord(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def created_ns(self) -> int: ...

    @property
    def document(self) -> dict[str, Any]: ...


class RecordStore(Protocol):
    def put(self, kind: Kind, id: str, state: str, document: dict[str, Any]) -> StoredRecord: ...

    def list_kind(self, kind: Kind) -> Sequence[StoredRecord]: ...

    def delete(self, kind: Kind, id: str) -> bool: ...
