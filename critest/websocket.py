"""A WebSocket client for the Kubernetes streaming protocols (exec, attach, port-forward)
that CRI runtimes serve at the URLs Exec/Attach/PortForward return. Frames carry one
leading byte naming the channel: for exec and attach 0 stdin, 1 stdout, 2 stderr, 3 the
final status (v4: a JSON metav1.Status), 4 terminal resize; for port-forward, channel 2n
is port n's data and 2n+1 its errors, and each channel's first frame starts with the port
number (uint16, little-endian)."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)
EXEC_PROTOCOLS = ("v4.channel.k8s.io", "channel.k8s.io")
PORT_FORWARD_PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io")


class StreamError(RuntimeError):
    pass


@dataclass
class Received:
    """What arrived, joined per channel, and whether the server closed the stream."""

    channels: dict[int, bytes] = field(default_factory=lambda: defaultdict(bytes))
    closed: bool = False

    def text(self, channel: int) -> str:
        return self.channels[channel].decode(errors="replace")

    def status(self) -> dict[str, object]:
        """The v4 status of an exec or attach (empty when none came)."""
        raw = self.channels[ERROR]
        return dict(json.loads(raw)) if raw.strip() else {}

    def exit_code(self) -> int:
        """0 for status Success; the ExitCode cause of a NonZeroExitCode failure."""
        status = self.status()
        if status.get("status") == "Success":
            return 0
        details = status.get("details")
        causes = details.get("causes", []) if isinstance(details, dict) else []
        for cause in causes:
            if cause.get("reason") == "ExitCode":
                return int(cause["message"])
        raise StreamError(f"no exit code in the stream status {status!r}")


class Stream:
    def __init__(
        self, url: str, protocols: Sequence[str], query: dict[str, str] | None = None
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http":
            raise StreamError(f"only plain http streaming URLs are supported, not {url!r}")
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        if query:
            target += ("&" if parts.query else "?") + urllib.parse.urlencode(query)
        self._socket = socket.create_connection((parts.hostname, parts.port or 80), timeout=30)
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._partial = b""
        self.received = Received()
        self.protocol = ""
        self._socket.sendall(
            self._ws.send(Request(host=parts.netloc, target=target, subprotocols=list(protocols)))
        )
        self._handshake()

    def _handshake(self) -> None:
        while not self.protocol:
            events = self._events(30)
            for position, event in enumerate(events):
                if isinstance(event, AcceptConnection):
                    self.protocol = event.subprotocol or "(none)"
                    # Frames may arrive in the same read as the upgrade answer.
                    for later in events[position + 1 :]:
                        self._handle(later)
                    break
                if isinstance(event, RejectConnection | RejectData):
                    raise StreamError(f"streaming server refused the upgrade: {event!r}")

    def _events(self, timeout: float) -> list[object]:
        self._socket.settimeout(timeout)
        try:
            data = self._socket.recv(65536)
        except TimeoutError:
            return []
        except ConnectionResetError:
            data = b""  # the server may reset instead of closing once it is done
        self._ws.receive_data(data or None)
        return list(self._ws.events())

    def send(self, channel: int, data: bytes) -> None:
        self._socket.sendall(self._ws.send(BytesMessage(data=bytes([channel]) + data)))

    def pump(self, timeout: float) -> None:
        """Reads for at most ``timeout`` seconds (less if the server closes)."""
        for event in self._events(timeout):
            self._handle(event)

    def _handle(self, event: object) -> None:
        if isinstance(event, BytesMessage | TextMessage):
            data = event.data
            self._partial += data.encode() if isinstance(data, str) else bytes(data)
            if event.message_finished:
                frame, self._partial = self._partial, b""
                if frame:
                    self.received.channels[frame[0]] += frame[1:]
        elif isinstance(event, Ping):
            self._socket.sendall(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            self._socket.sendall(self._ws.send(event.response()))
            self.received.closed = True

    def until(
        self, done: Callable[[Received], bool] | None = None, timeout: float = 30
    ) -> Received:
        """Reads until ``done(received)`` holds or the server closes; fails on timeout."""
        deadline = time.monotonic() + timeout
        while not self.received.closed and not (done and done(self.received)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise StreamError(f"stream did not finish within {timeout:g}s: {self.received}")
            self.pump(min(left, 1.0))
        return self.received

    def close(self) -> None:
        try:
            if not self.received.closed:
                self._socket.sendall(self._ws.send(CloseConnection(code=1000)))
        except Exception:  # closing a broken stream is best effort
            pass
        self._socket.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def port_forward_data(received: Received, index: int = 0) -> bytes:
    """Port ``index``'s data without the two-byte port prefix of its first frame."""
    return received.channels[2 * index][2:]
