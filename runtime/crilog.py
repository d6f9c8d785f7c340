"""Container output in the Kubernetes CRI log format, one record per line:

    <RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>\\n

F closes a line; P is a piece of a line longer than `max_line` bytes, continued by the
next record of the same stream. Output still unterminated when its stream closes is
written as F, as containerd does.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

DEFAULT_MAX_LINE = 16 * 1024


def timestamp(ns: int) -> str:
    """RFC 3339 with nanoseconds in UTC, fixed width so that records sort as text."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


class CriLog:
    """Appends records to `path` (or drops them when `path` is None). The monitor owns the
    only writer, so records never interleave; every record is one write(2)."""

    def __init__(self, path: Path | None, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError(f"max log line size must be positive, got {max_line}")
        self.path = path
        self.max_line = max_line
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self._fd = self._open()

    def _open(self) -> int | None:
        if self.path is None:
            return None
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        return os.open(self.path, flags, 0o640)

    def _record(self, stream: str, tag: str, content: bytes) -> None:
        if self._fd is None:
            return
        head = f"{timestamp(time.time_ns())} {stream} {tag} ".encode()
        os.write(self._fd, head + content + b"\n")

    def write(self, stream: str, data: bytes) -> None:
        """Add output of `stream` ("stdout" or "stderr")."""
        pending = self._partial[stream] + data
        start = 0
        while True:
            end = pending.find(b"\n", start, start + self.max_line + 1)
            if end != -1:
                self._record(stream, "F", pending[start:end])
                start = end + 1
            elif len(pending) - start > self.max_line:
                self._record(stream, "P", pending[start : start + self.max_line])
                start += self.max_line
            else:
                break
        self._partial[stream] = pending[start:]

    def end(self, stream: str) -> None:
        """`stream` closed: write what is left of its last line."""
        rest = self._partial[stream]
        self._partial[stream] = b""
        if rest:
            self._record(stream, "F", rest)

    def reopen(self) -> None:
        """Start writing to a fresh file at `path` (after the old one was rotated away)."""
        old = self._fd
        self._fd = self._open()
        if old is not None:
            os.close(old)

    def close(self) -> None:
        for stream in self._partial:
            self.end(stream)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
