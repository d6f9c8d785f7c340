"""Kubernetes' channel protocol on WebSocket (RFC 6455 through wsproto), server side.

Each message carries one channel: binary protocols prefix the payload with the channel byte;
the base64 protocols send text messages of an ASCII channel digit and base64 payload. With
v5.channel.k8s.io a message on channel 255 whose payload is one channel number closes that
channel (the client's stdin half-close).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import threading
import time

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from cri.streaming import http1
from cri.streaming.transport import Transport

log = logging.getLogger("crisp.streaming")

CLOSE_CHANNEL = 255
_MAX_INBOX = 1024 * 1024
_MAX_MESSAGE = 16 * 1024 * 1024


class WsChannel:
    def __init__(self, conn: ChannelWebSocket, number: int) -> None:
        self.conn = conn
        self.number = number
        self.inbox = bytearray()
        self.remote_closed = False

    def read(self, size: int = 65536) -> bytes:
        conn = self.conn
        with conn.cond:
            while not self.inbox and not self.remote_closed and not conn.closed.is_set():
                conn.cond.wait()
            data = bytes(self.inbox[:size])
            del self.inbox[:size]
            conn.cond.notify_all()
            return data

    def write(self, data: bytes) -> None:
        self.conn.send(self.number, data)

    def close(self) -> None:
        # The protocol has no server-side half-close; the session ends with the socket.
        pass


class ChannelWebSocket:
    def __init__(
        self,
        transport: Transport,
        request: http1.Request,
        subprotocol: str,
        channels: int,
        idle_timeout: float | None,
    ) -> None:
        self.transport = transport
        self.subprotocol = subprotocol
        self.base64 = subprotocol.startswith("base64.") or ".base64." in subprotocol
        self.close_signals = subprotocol.startswith("v5.")
        self.idle_timeout = idle_timeout
        self.cond = threading.Condition()
        self.closed = threading.Event()
        self.channels = [WsChannel(self, i) for i in range(channels)]
        self._send_lock = threading.Lock()
        self._closing = False
        self._linger_until: float | None = None
        self.last_activity = time.monotonic()
        self._ws = WSConnection(ConnectionType.SERVER)
        try:
            self._ws.receive_data(request.raw_head)
            events = list(self._ws.events())
        except RemoteProtocolError as e:
            raise http1.BadRequest(f"bad WebSocket handshake: {e}") from None
        if not events or not isinstance(events[0], Request):
            raise http1.BadRequest("not a WebSocket upgrade request")
        self._rest = request.rest

    def accept(self) -> None:
        """Send the 101 answer naming the chosen subprotocol (none for the legacy "")."""
        self._send_raw(self._ws.send(AcceptConnection(subprotocol=self.subprotocol or None)))

    def _send_raw(self, data: bytes) -> None:
        self.transport.sendall(data)
        self.last_activity = time.monotonic()

    def send(self, channel: int, data: bytes) -> None:
        if self.base64:
            message: TextMessage | BytesMessage = TextMessage(
                chr(ord("0") + channel) + base64.b64encode(data).decode()
            )
        else:
            message = BytesMessage(bytes([channel]) + data)
        with self._send_lock:
            if self._closing or self.closed.is_set():
                raise OSError(f"WebSocket closed; cannot write channel {channel}")
            try:
                self._send_raw(self._ws.send(message))
            except LocalProtocolError as e:
                raise OSError(f"WebSocket closed: {e}") from e

    def close(self, code: int = 1000, reason: str = "", linger: float = 5.0) -> None:
        """Start the closing handshake; `serve` returns when the peer answers or after
        `linger` seconds."""
        with self._send_lock:
            if self._closing or self.closed.is_set():
                return
            self._closing = True
            with contextlib.suppress(OSError, LocalProtocolError):
                self._send_raw(self._ws.send(CloseConnection(code=code, reason=reason)))
        with contextlib.suppress(OSError):  # the reader may have closed the socket already
            self.transport.settimeout(linger)
        with self.cond:
            self._linger_until = time.monotonic() + linger
            self.cond.notify_all()  # a reader parked on a full inbox must go back to reading

    def _lost(self) -> None:
        with self.cond:
            self.closed.set()
            for channel in self.channels:
                channel.remote_closed = True
            self.cond.notify_all()

    def serve(self) -> None:
        """Read messages until the closing handshake, the idle timeout, or the socket goes."""
        self.transport.settimeout(self.idle_timeout)
        data = self._rest
        parts: list[bytes | str] = []
        size = 0
        try:
            while True:
                if data:
                    self.last_activity = time.monotonic()
                    self._ws.receive_data(data)
                    for event in self._ws.events():
                        if isinstance(event, BytesMessage | TextMessage):
                            chunk = event.data
                            parts.append(chunk if isinstance(chunk, str) else bytes(chunk))
                            size += len(chunk)
                            if size > _MAX_MESSAGE:
                                self.close(1009, "message too big")
                            if event.message_finished:
                                self._deliver(parts)
                                parts, size = [], 0
                        elif isinstance(event, Ping):
                            with self._send_lock:
                                self._send_raw(self._ws.send(event.response()))
                        elif isinstance(event, CloseConnection):
                            with self._send_lock, contextlib.suppress(LocalProtocolError):
                                if not self._closing:
                                    self._closing = True
                                    self._send_raw(self._ws.send(event.response()))
                            return
                try:
                    data = self.transport.recv(65536)
                except TimeoutError:
                    now = time.monotonic()
                    if self._linger_until is not None and now >= self._linger_until:
                        return
                    if self.idle_timeout and now - self.last_activity >= self.idle_timeout:
                        log.info("WebSocket idle for %ss, closing", self.idle_timeout)
                        return
                    data = b""
                    continue
                if not data:
                    self._ws.receive_data(None)
                    return
        except (OSError, RemoteProtocolError, LocalProtocolError) as e:
            log.debug("WebSocket ended: %s", e)
        finally:
            self.transport.close()
            self._lost()

    def _deliver(self, parts: list[bytes | str]) -> None:
        if not parts:
            return
        if isinstance(parts[0], str):
            text = "".join(p for p in parts if isinstance(p, str))
            if not text:
                return
            channel = ord(text[0]) - ord("0")
            try:
                payload = base64.b64decode(text[1:], validate=True)
            except binascii.Error:
                log.debug("WebSocket: bad base64 on channel %d", channel)
                return
        else:
            raw = b"".join(p for p in parts if isinstance(p, bytes))
            if not raw:
                return
            channel, payload = raw[0], raw[1:]
        if channel == CLOSE_CHANNEL and self.close_signals:
            if payload and payload[0] < len(self.channels):
                with self.cond:
                    self.channels[payload[0]].remote_closed = True
                    self.cond.notify_all()
            return
        if not 0 <= channel < len(self.channels):
            log.debug("WebSocket: message for unknown channel %d dropped", channel)
            return
        target = self.channels[channel]
        with self.cond:
            target.inbox += payload
            self.cond.notify_all()
            while len(target.inbox) > _MAX_INBOX and self._linger_until is None:
                self.cond.wait()
