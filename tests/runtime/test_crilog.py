"""runtime.crilog: the CRI log format, partial lines, reopening."""

from __future__ import annotations

import re
from pathlib import Path

from runtime.crilog import CriLog, timestamp
from tests.runtime.containers import read_log


def test_timestamp_is_rfc3339_with_nanoseconds_in_utc() -> None:
    assert timestamp(1_700_000_000_000_000_042) == "2023-11-14T22:13:20.000000042Z"


def test_lines_partials_and_streams(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = CriLog(path, max_line=4)
    log.write("stdout", b"ab\ncdefghij\nk")
    log.write("stderr", b"err\n")
    log.write("stdout", b"l\n\n")
    log.write("stdout", b"tail")
    log.close()
    assert [(r[1], r[2], r[3]) for r in read_log(path)] == [
        ("stdout", "F", "ab"),
        ("stdout", "P", "cdef"),
        ("stdout", "F", "ghij"),
        ("stderr", "F", "err"),
        ("stdout", "F", "kl"),
        ("stdout", "F", ""),
        ("stdout", "F", "tail"),  # unterminated at close: still a full line
    ]
    line = path.read_text().splitlines()[0]
    assert re.fullmatch(r"\S+Z stdout F ab", line)


def test_reopen_writes_to_a_fresh_file(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = CriLog(path)
    log.write("stdout", b"one\n")
    path.rename(tmp_path / "c.log.1")
    log.reopen()
    log.write("stdout", b"two\n")
    log.close()
    assert [r[3] for r in read_log(tmp_path / "c.log.1")] == ["one"]
    assert [r[3] for r in read_log(path)] == ["two"]


def test_no_path_discards_output() -> None:
    log = CriLog(None)
    log.write("stdout", b"x\n")
    log.close()
