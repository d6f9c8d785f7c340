"""Byte transports under the streaming protocols: plain TCP, or TLS over a memory BIO.

One thread reads a streaming connection while others write to it. An `ssl.SSLSocket` must not
be used from two threads at once (OpenSSL forbids concurrent use of one SSL object), so TLS
runs on an `SSLObject` whose state is touched only under a lock, with the socket I/O itself
outside the lock: a blocked read never holds up a write.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from typing import Protocol


class Transport(Protocol):
    def recv(self, size: int) -> bytes:
        """Up to `size` bytes; b"" at end of stream. Raises TimeoutError when the socket
        timeout passes without data."""

    def sendall(self, data: bytes) -> None: ...

    def settimeout(self, seconds: float | None) -> None: ...

    def shutdown_write(self) -> None:
        """Tell the peer no more bytes follow, keeping the read side open."""

    def close(self) -> None: ...


class Channel(Protocol):
    """One byte stream inside a multiplexed connection: a SPDY stream, a WebSocket channel."""

    def read(self, size: int = 65536) -> bytes:
        """Blocks for data; b"" once the peer finished sending on it."""

    def write(self, data: bytes) -> None:
        """Raises OSError once the channel or its connection is closed."""

    def close(self) -> None:
        """We are done writing; idempotent."""


class SocketTransport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def sendall(self, data: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(data)

    def settimeout(self, seconds: float | None) -> None:
        self.sock.settimeout(seconds)

    def shutdown_write(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class TlsTransport:
    """Server or client side of TLS on a connected socket; the handshake runs in __init__."""

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        self.sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self._state_lock = threading.Lock()
        self._send_lock = threading.Lock()
        while True:
            try:
                with self._state_lock:
                    self._tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                pass
            self._flush()
            raw = self.sock.recv(65536)
            if not raw:
                raise ConnectionError("peer closed the connection during the TLS handshake")
            with self._state_lock:
                self._incoming.write(raw)

    def _flush(self) -> None:
        with self._send_lock:
            with self._state_lock:
                pending = self._outgoing.read()
            if pending:
                self.sock.sendall(pending)

    def recv(self, size: int) -> bytes:
        while True:
            with self._state_lock:
                try:
                    return self._tls.read(size)
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLZeroReturnError:
                    return b""
            # TLS 1.3 may answer a record (key update) while reading.
            self._flush()
            raw = self.sock.recv(65536)
            if not raw:
                return b""
            with self._state_lock:
                self._incoming.write(raw)

    def sendall(self, data: bytes) -> None:
        with self._send_lock:
            with self._state_lock:
                self._tls.write(data)
                pending = self._outgoing.read()
            self.sock.sendall(pending)

    def settimeout(self, seconds: float | None) -> None:
        self.sock.settimeout(seconds)

    def shutdown_write(self) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            with self._send_lock:
                with self._state_lock:
                    with contextlib.suppress(ssl.SSLWantReadError):
                        self._tls.unwrap()  # queues close_notify; the peer's is not awaited
                    pending = self._outgoing.read()
                self.sock.sendall(pending)
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
