"""Protobuf messages built once per domain record rather than on every call.

kubelet asks for the same containers and images every second or so, and building their
messages costs more than finding them. The stores replace a record when anything in it
changes and never edit one in place, so a kept message is current exactly while the record
it was built from is the very object the store hands out now.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

_Record = TypeVar("_Record")
_Message = TypeVar("_Message")

# Entries kept at most; past it the cache starts afresh, which also drops removed objects'.
_LIMIT = 4096


class MessageCache(Generic[_Record, _Message]):
    def __init__(self) -> None:
        self._kept: dict[Hashable, tuple[_Record, _Message]] = {}

    def get(self, key: Hashable, record: _Record, build: Callable[[], _Message]) -> _Message:
        """The message of `record` (built by `build` when not kept). Read-only: it is shared
        with later calls, so callers copy it into their answer."""
        kept = self._kept.get(key)
        if kept is not None and kept[0] is record:
            return kept[1]
        if len(self._kept) >= _LIMIT:
            self._kept.clear()
        message = build()
        self._kept[key] = (record, message)
        return message
