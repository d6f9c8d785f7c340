"""runtime.crilog: the CRI log format, partial lines, reopening, the size cap."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runtime.crilog import RECORD_OVERHEAD, CriLog, timestamp
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


def _assert_valid(path: Path, cap: int) -> None:
    text = path.read_bytes()
    assert len(text) <= cap
    assert text == b"" or text.endswith(b"\n")  # no half record
    for stamp, stream, tag, _ in read_log(path):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:]{8}\.\d{9}Z", stamp)
        assert stream == "stdout" and tag in ("F", "P")


def test_size_cap_starts_the_file_over(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    cap = 10 * (RECORD_OVERHEAD + 6)  # ten records of "line-N" fit, not eleven
    log = CriLog(path, max_size=cap)
    inodes = []
    for n in range(25):
        log.write("stdout", f"line{n:02d}\n".encode())
        _assert_valid(path, cap)
        inodes.append(path.stat().st_ino)
    log.close()
    # Filled at 10 and 20: the file holds what came after, and is a new one (readers
    # following the old file see it rotated, as after kubelet's rotation).
    assert [r[3] for r in read_log(path)] == [f"line{n:02d}" for n in range(20, 25)]
    assert inodes[9] != inodes[10] and len(set(inodes[:10])) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.log"]


def test_size_cap_cuts_long_lines_into_records_that_fit(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    cap = RECORD_OVERHEAD + 8
    log = CriLog(path, max_size=cap)
    log.write("stdout", b"0123456789abcdefXYZ\n")
    _assert_valid(path, cap)
    log.close()
    assert [(r[2], r[3]) for r in read_log(path)] == [("F", "XYZ")]  # the last piece fits


def test_size_cap_counts_a_file_that_exists_and_restarts_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    path.write_bytes(b"x" * 50 + b"\n")
    cap = 51 + RECORD_OVERHEAD + 3
    log = CriLog(path, max_size=cap)
    log.write("stdout", b"abc\n")  # fits exactly behind what was there
    assert path.read_bytes().startswith(b"x" * 50)
    log.write("stdout", b"def\n")  # does not: the file starts over
    assert [r[3] for r in read_log(path)] == ["def"]
    path.rename(tmp_path / "c.log.1")
    log.reopen()
    for text in (b"ghi\n", b"jkl\n"):  # the fresh file has the whole cap again
        log.write("stdout", text)
    log.close()
    assert [r[3] for r in read_log(tmp_path / "c.log.1")] == ["def"]
    assert [r[3] for r in read_log(path)] == ["ghi", "jkl"]


def test_size_cap_too_small_for_a_record(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max log size"):
        CriLog(tmp_path / "c.log", max_size=RECORD_OVERHEAD)
