"""Container output in the Kubernetes CRI log format, one record per line:

    <RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>\\n

F closes a line; P is a piece of a line longer than `max_line` bytes, continued by the
next record of the same stream. Output still unterminated when its stream closes is
written as F, as containerd does.

With a size cap the file never grows beyond it: when the next record would not fit, the
file starts over empty (as CRI-O's conmon does with log_size_max), so the newest output
stays readable. The cap falls between whole records, so the file remains valid CRI log.
"""

from __future__ import annotations

import contextlib
import os
import time

DEFAULT_MAX_LINE = 16 * 1024
UNLIMITED = -1
# Bytes of a record besides its content: "<30-byte timestamp> stdout P " and the newline.
RECORD_OVERHEAD = 30 + len(" stdout P ") + 1


def timestamp(ns: int) -> str:
    """RFC 3339 with nanoseconds in UTC, fixed width so that records sort as text."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


class CriLog:
    """Appends records to `path` (or drops them when `path` is None). The monitor owns the
    only writer, so records never interleave; every record is one write(2)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        max_line: int = DEFAULT_MAX_LINE,
        max_size: int = UNLIMITED,
    ) -> None:
        if max_line < 1:
            raise ValueError(f"max log line size must be positive, got {max_line}")
        if max_size != UNLIMITED and max_size <= RECORD_OVERHEAD:
            raise ValueError(
                f"max log size must be {UNLIMITED} (unlimited) or more than {RECORD_OVERHEAD} "
                f"bytes, got {max_size}"
            )
        # A string, not a Path: pathlib would cost each monitor memory (runtime/monitor.py).
        self.path = None if path is None else os.fspath(path)
        self.max_size = max_size
        # Under a cap every record must fit the file, so long lines are cut shorter.
        self.max_line = (
            max_line if max_size == UNLIMITED else min(max_line, max_size - RECORD_OVERHEAD)
        )
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self._size = 0  # of the file the writer appends to
        self._fd = self._open()

    def _open(self) -> int | None:
        if self.path is None:
            return None
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o640)
        self._size = os.fstat(fd).st_size
        return fd

    def _start_over(self) -> None:
        """Replace the full file by an empty one. A new file (not a truncated one) is
        renamed into place, so that a reader following the old file sees it rotated."""
        assert self.path is not None and self._fd is not None
        fresh = f"{self.path}.tmp"
        fd = os.open(
            fresh, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640
        )
        try:
            os.rename(fresh, self.path)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(fresh)
            raise
        os.close(self._fd)
        self._fd = fd
        self._size = 0

    def _record(self, stream: str, tag: str, content: bytes) -> None:
        if self._fd is None:
            return
        head = f"{timestamp(time.time_ns())} {stream} {tag} ".encode()
        record = head + content + b"\n"
        if self.max_size != UNLIMITED and self._size + len(record) > self.max_size:
            self._start_over()
        self._size += os.write(self._fd, record)

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
