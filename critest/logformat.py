"""The CRI container log format, read without any daemon's help:
``<RFC 3339 nano timestamp> <stdout|stderr> <F|P> <content>`` per line, where P marks a
partial line continued by the next entry of the same stream."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_LINE = re.compile(rb"^(\S+) (stdout|stderr) (F|P) (.*)$", re.DOTALL)
_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


class LogFormatError(ValueError):
    pass


@dataclass(frozen=True)
class LogEntry:
    timestamp: datetime
    nanos: int  # the fraction, which datetime cannot hold in full
    stream: str
    partial: bool
    content: bytes


def parse_timestamp(text: str) -> tuple[datetime, int]:
    match = _TIMESTAMP.match(text)
    if not match:
        raise LogFormatError(f"timestamp {text!r} is not RFC 3339 with nanoseconds")
    zone = "+00:00" if match[3] == "Z" else match[3]
    fraction = (match[2] or ".0")[1:]
    return datetime.fromisoformat(match[1] + zone), int(fraction.ljust(9, "0"))


def parse_line(raw: bytes) -> LogEntry:
    match = _LINE.match(raw)
    if not match:
        raise LogFormatError(f"not a CRI log line: {raw[:200]!r}")
    when, nanos = parse_timestamp(match[1].decode())
    return LogEntry(when, nanos, match[2].decode(), match[3] == b"P", match[4])


def parse_log(data: bytes) -> list[LogEntry]:
    """Every complete (newline-ended) line of ``data``."""
    lines = data.split(b"\n")
    return [parse_line(line) for line in lines[:-1]]


def read_log(path: Path) -> list[LogEntry]:
    return parse_log(path.read_bytes()) if path.exists() else []


def messages(entries: list[LogEntry], stream: str) -> list[bytes]:
    """Joins partial entries: the whole lines written to ``stream``, without newlines."""
    whole: list[bytes] = []
    pending = b""
    for entry in entries:
        if entry.stream != stream:
            continue
        pending += entry.content
        if not entry.partial:
            whole.append(pending)
            pending = b""
    if pending:  # output that ended without a newline stays partial, and still counts
        whole.append(pending)
    return whole
