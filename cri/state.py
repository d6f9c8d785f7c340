"""The state database: one sqlite file (WAL) under the root directory.

It holds pods, containers, images and their state transitions, plus a few node-wide settings.
Every write is one transaction, so a crash leaves either the old or the new state. The
schema is versioned; `MIGRATIONS[n]` takes a database from version n to n + 1.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["pod", "container", "image"]

MIGRATIONS: list[str] = [
    # 0 → 1: records by kind, their transitions, and node-wide settings.
    """
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE records (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        state TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL,
        document TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    );
    CREATE TABLE transitions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        at_ns INTEGER NOT NULL
    );
    CREATE INDEX transitions_by_object ON transitions (kind, id);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

# The history of a removed object is kept this long, then dropped: on a node that runs
# containers for months, the transitions table would otherwise grow without end.
REMOVED_HISTORY_NS = 24 * 3600 * 10**9
_PRUNE_EVERY_NS = 3600 * 10**9


class StateError(RuntimeError):
    """The database cannot be opened or is from a newer crisp."""


@dataclass(frozen=True)
class Record:
    kind: Kind
    id: str
    state: str
    created_ns: int
    updated_ns: int
    document: dict[str, Any]


class StateDB:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # One connection shared by all gRPC threads behind a lock: sqlite serialises
            # writers anyway, and a single connection keeps transactions simple.
            self._conn = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=10
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL is crash-consistent; only an OS crash can lose the last commits.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as e:
            raise StateError(f"cannot open state database {path}: {e}") from e
        self._lock = threading.RLock()
        self._migrate()
        self._pruned_ns = 0
        self._prune_now()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def schema_version(self) -> int:
        with self._lock:
            (version,) = self._conn.execute("PRAGMA user_version").fetchone()
            return int(version)

    def _migrate(self) -> None:
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise StateError(
                f"state database {self.path} has schema version {current}, newer than this "
                f"crisp understands ({SCHEMA_VERSION}); refusing to touch it"
            )
        for version in range(current, SCHEMA_VERSION):
            with self.transaction() as conn:
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                # user_version inside the same transaction: a crash mid-migration rolls back all
                conn.execute(f"PRAGMA user_version = {version + 1}")

    # --- settings ---

    def get_setting(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # --- records ---

    def put(self, kind: Kind, id: str, state: str, document: dict[str, Any]) -> Record:
        """Insert or replace a record, logging a transition when its state changes."""
        now = time.time_ns()
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT state, created_ns FROM records WHERE kind = ? AND id = ?", (kind, id)
            ).fetchone()
            previous_state, created_ns = (None, now) if row is None else (row[0], row[1])
            conn.execute(
                "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?)",
                (kind, id, state, created_ns, now, json.dumps(document, sort_keys=True)),
            )
            if previous_state != state:
                conn.execute(
                    "INSERT INTO transitions (kind, id, from_state, to_state, at_ns) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (kind, id, previous_state, state, now),
                )
        return Record(kind, id, state, created_ns, now, document)

    def get(self, kind: Kind, id: str) -> Record | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT kind, id, state, created_ns, updated_ns, document FROM records "
                "WHERE kind = ? AND id = ?",
                (kind, id),
            ).fetchone()
        return None if row is None else _record(row)

    def list_kind(self, kind: Kind) -> list[Record]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT kind, id, state, created_ns, updated_ns, document FROM records "
                "WHERE kind = ? ORDER BY created_ns, id",
                (kind,),
            ).fetchall()
        return [_record(row) for row in rows]

    def delete(self, kind: Kind, id: str) -> bool:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT state FROM records WHERE kind = ? AND id = ?", (kind, id)
            ).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM records WHERE kind = ? AND id = ?", (kind, id))
            conn.execute(
                "INSERT INTO transitions (kind, id, from_state, to_state, at_ns) "
                "VALUES (?, ?, ?, 'removed', ?)",
                (kind, id, row[0], time.time_ns()),
            )
        if time.time_ns() - self._pruned_ns > _PRUNE_EVERY_NS:
            self._prune_now()
        return True

    def prune_history(self, removed_before_ns: int) -> int:
        """Drop the transitions of objects removed before `removed_before_ns`; returns how
        many rows went."""
        with self.transaction() as conn:
            # Not of an id that has a record again (an image pulled anew keeps its id).
            cursor = conn.execute(
                "DELETE FROM transitions WHERE (kind, id) IN (SELECT kind, id FROM "
                "transitions WHERE to_state = 'removed' AND at_ns < ?) "
                "AND (kind, id) NOT IN (SELECT kind, id FROM records)",
                (removed_before_ns,),
            )
            return cursor.rowcount

    def _prune_now(self) -> None:
        now = time.time_ns()
        self.prune_history(now - REMOVED_HISTORY_NS)
        self._pruned_ns = now

    def transitions(self, kind: Kind, id: str) -> list[tuple[str | None, str]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT from_state, to_state FROM transitions WHERE kind = ? AND id = ? "
                "ORDER BY seq",
                (kind, id),
            ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute("SELECT kind, COUNT(*) FROM records GROUP BY kind").fetchall()
        return {str(kind): int(n) for kind, n in rows}


def _record(row: tuple[Any, ...]) -> Record:
    kind, id, state, created_ns, updated_ns, document = row
    return Record(kind, id, state, created_ns, updated_ns, json.loads(document))
