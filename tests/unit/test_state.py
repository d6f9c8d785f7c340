from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cri.state import REMOVED_HISTORY_NS, SCHEMA_VERSION, StateDB, StateError


def test_fresh_database_is_migrated_and_in_wal_mode(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "crisp.db")
    try:
        assert db.schema_version() == SCHEMA_VERSION
    finally:
        db.close()
    with sqlite3.connect(tmp_path / "crisp.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "crisp.db"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(StateError, match="newer than this crisp understands"):
        StateDB(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 5


def test_records_and_transitions(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "crisp.db")
    try:
        first = db.put("pod", "p1", "ready", {"name": "web"})
        db.put("pod", "p1", "ready", {"name": "web", "ip": "10.0.0.2"})
        db.put("pod", "p1", "notready", {"name": "web"})
        record = db.get("pod", "p1")
        assert record is not None
        assert record.state == "notready"
        assert record.created_ns == first.created_ns
        assert [r.id for r in db.list_kind("pod")] == ["p1"]
        assert db.list_kind("container") == []
        assert db.counts() == {"pod": 1}
        assert db.delete("pod", "p1") is True
        assert db.delete("pod", "p1") is False
        assert db.get("pod", "p1") is None
        assert db.transitions("pod", "p1") == [
            (None, "ready"),
            ("ready", "notready"),
            ("notready", "removed"),
        ]
    finally:
        db.close()


def test_history_of_removed_objects_is_pruned(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "crisp.db")
    try:
        db.put("container", "gone", "created", {})
        db.delete("container", "gone")
        db.put("container", "live", "created", {})
        db.put("container", "live", "running", {})
        removed_at = time.time_ns()
        assert db.prune_history(removed_at - REMOVED_HISTORY_NS) == 0  # removed just now
        assert db.prune_history(removed_at + 1) == 2
        assert db.transitions("container", "gone") == []
        assert db.transitions("container", "live") == [(None, "created"), ("created", "running")]
        # An id that came back (an image pulled again) keeps all of its history.
        db.put("image", "again", "present", {})
        db.delete("image", "again")
        db.put("image", "again", "present", {})
        assert db.prune_history(time.time_ns() + 1) == 0
        assert len(db.transitions("image", "again")) == 3
    finally:
        db.close()


def test_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "crisp.db")
    try:
        with pytest.raises(RuntimeError), db.transaction() as conn:
            conn.execute("INSERT INTO settings VALUES ('a', '1')")
            raise RuntimeError("crash between two writes")
        assert db.get_setting("a") is None
        db.set_setting("a", "2")
        db.set_setting("a", "3")
        assert db.get_setting("a") == "3"
    finally:
        db.close()


WRITER = """
import sys
from cri.state import StateDB
db = StateDB(__import__("pathlib").Path(sys.argv[1]))
i = 0
print("ready", flush=True)
while True:
    with db.transaction() as conn:
        # two writes that must land together: a pod and its matching setting
        conn.execute("INSERT OR REPLACE INTO settings VALUES ('counter', ?)", (str(i),))
        conn.execute(
            "INSERT OR REPLACE INTO records VALUES ('pod', 'p', 'ready', 0, 0, ?)",
            ('{"counter": %d}' % i,),
        )
    i += 1
"""


def test_sigkill_between_writes_leaves_a_consistent_database(tmp_path: Path) -> None:
    path = tmp_path / "crisp.db"
    StateDB(path).close()
    for _ in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        time.sleep(0.3)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        db = StateDB(path)
        try:
            record = db.get("pod", "p")
            counter = db.get_setting("counter")
            assert record is not None and counter is not None
            assert record.document["counter"] == int(counter)
        finally:
            db.close()
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
