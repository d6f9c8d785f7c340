"""The monitor's control socket protocol, client side and framing.

A request is one JSON object on one line; the monitor answers with one JSON line, either
{"ok": true, …} or {"error": "…"}, and closes the connection. `attach` is the exception:
after its answer the connection carries frames both ways, each a 1-byte kind and a 4-byte
big-endian length before the payload (an empty STDIN frame closes the container's stdin).
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

STDIN, STDOUT, STDERR = 0, 1, 2
_HEADER = struct.Struct("!BI")
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}


class ControlError(Exception):
    """The monitor refused the request; the message is its reason."""


class MonitorGoneError(ControlError):
    """Nothing answers on the control socket: the monitor has exited."""


def frame(kind: int, payload: bytes) -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


def _connect(path: Path, timeout: float) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    conn.settimeout(timeout)
    try:
        conn.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        conn.close()
        raise MonitorGoneError(f"monitor at {path} is not running ({exc.strerror})") from None
    except OSError:
        conn.close()
        raise
    return conn


def _answer(conn: socket.socket, request: dict[str, Any], path: Path) -> dict[str, Any]:
    conn.sendall(json.dumps(request).encode() + b"\n")
    line = b""
    while not line.endswith(b"\n"):
        chunk = conn.recv(1)  # byte by byte: what follows an attach answer is stream data
        if not chunk:
            raise MonitorGoneError(f"monitor at {path} closed the connection")
        line += chunk
    reply: dict[str, Any] = json.loads(line)
    if "error" in reply:
        raise ControlError(str(reply["error"]))
    return reply


def call(path: Path, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to the monitor listening at `path` and return its answer."""
    conn = _connect(path, timeout)
    with conn:
        try:
            return _answer(conn, request, path)
        except (ConnectionResetError, BrokenPipeError):
            # The monitor closed its socket with this connection still in the backlog.
            raise MonitorGoneError(f"monitor at {path} exited during the request") from None


class Attachment:
    """A live attach to a container's stdio."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._buffer = b""

    def read(self) -> tuple[int, bytes] | None:
        """Next (STDOUT|STDERR, data), or None once the container's output has ended."""
        while True:
            if len(self._buffer) >= _HEADER.size:
                kind, length = _HEADER.unpack_from(self._buffer)
                end = _HEADER.size + length
                if len(self._buffer) >= end:
                    payload = self._buffer[_HEADER.size : end]
                    self._buffer = self._buffer[end:]
                    return kind, payload
            chunk = self._conn.recv(1 << 16)
            if not chunk:
                return None
            self._buffer += chunk

    def write(self, data: bytes) -> None:
        if data:
            self._conn.sendall(frame(STDIN, data))

    def close_stdin(self) -> None:
        self._conn.sendall(frame(STDIN, b""))

    def fileno(self) -> int:
        return self._conn.fileno()

    def close(self) -> None:
        self._conn.close()


def attach(path: Path, stdin: bool, timeout: float | None = None) -> Attachment:
    conn = _connect(path, 30.0)
    try:
        _answer(conn, {"op": "attach", "stdin": stdin}, path)
    except BaseException:
        conn.close()
        raise
    conn.settimeout(timeout)
    return Attachment(conn)
