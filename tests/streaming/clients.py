"""Our own streaming clients, playing kubectl/crictl against the server: a SPDY/3.1 client on
the project's framing, and a WebSocket client on wsproto. They follow the client side of
k8s remotecommand and portforward: which streams are opened, in which order, with which
headers."""

from __future__ import annotations

import base64
import json
import queue
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from cri.streaming import spdy
from cri.streaming.spdy_connection import SpdyConnection, SpdyStream
from cri.streaming.transport import SocketTransport, TlsTransport, Transport


@dataclass
class Response:
    status: int
    headers: dict[str, list[str]]
    body: bytes
    transport: Transport
    rest: bytes

    def header(self, name: str) -> str:
        return ", ".join(self.headers.get(name.lower(), []))


def connect(url: str, tls: ssl.SSLContext | None = None, timeout: float = 10.0) -> Transport:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if parts.scheme == "https":
        assert tls is not None, "https URL needs a client TLS context"
        return TlsTransport(sock, tls, server_side=False, server_hostname=parts.hostname)
    return SocketTransport(sock)


def http_request(
    url: str, headers: list[tuple[str, str]], tls: ssl.SSLContext | None = None
) -> Response:
    """Send one GET and read the response head (and, unless it is a 101, its body)."""
    transport = connect(url, tls)
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in headers]
    transport.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = transport.recv(65536)
        if not chunk:
            raise ConnectionError(f"no response head; got {buffer!r}")
        buffer += chunk
    head, rest = buffer.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found: dict[str, list[str]] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        found.setdefault(name.strip().lower(), []).append(value.strip())
    status = int(status_line.split(" ")[1])
    if status != 101:
        length = int(found.get("content-length", ["0"])[0])
        while len(rest) < length:
            chunk = transport.recv(65536)
            if not chunk:
                break
            rest += chunk
        transport.close()
    return Response(status, found, rest if status != 101 else b"", transport, rest)


class SpdyClient:
    """A SPDY session to a streaming URL. With `flow_control` it announces flow control by a
    SETTINGS frame, as a SPDY/3.1 client should; without it, it behaves like spdystream."""

    def __init__(
        self,
        url: str,
        protocols: list[str],
        tls: ssl.SSLContext | None = None,
        flow_control: bool = True,
    ) -> None:
        headers = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]
        headers += [("X-Stream-Protocol-Version", p) for p in protocols]
        self.response = http_request(url, headers, tls)
        if self.response.status != 101:
            raise UpgradeRefused(self.response.status, self.response.body.decode())
        self.protocol = self.response.header("X-Stream-Protocol-Version")
        self.conn = SpdyConnection(
            self.response.transport, server=False, initial_bytes=self.response.rest
        )
        self.conn.transport.settimeout(None)
        self._reader = threading.Thread(target=self.conn.serve, daemon=True)
        self._reader.start()
        if flow_control:
            setting = spdy.Setting(spdy.SETTINGS_INITIAL_WINDOW_SIZE, spdy.DEFAULT_WINDOW)
            self.conn.send_frame(spdy.Settings((setting,)))

    def open(self, headers: dict[str, str]) -> SpdyStream:
        stream = self.conn.open_stream(headers)
        if not stream.wait_reply(10):
            raise ConnectionError(f"no SYN_REPLY for stream {stream.id} ({headers})")
        return stream

    def close(self) -> None:
        self.conn.close(linger=2.0)
        self._reader.join(5)

    def drop(self) -> None:
        """Vanish without GOAWAY, like a killed kubectl."""
        self.conn.abort()
        self._reader.join(5)


class UpgradeRefused(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def read_all(stream: SpdyStream | WsClientChannel) -> bytes:
    out = b""
    while data := stream.read():
        out += data
    return out


def exit_code(status_json: bytes) -> int:
    """The exit code a v4 Status on the error stream reports, as client-go decodes it."""
    status: dict[str, Any] = json.loads(status_json)
    if status["status"] == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in status["details"]["causes"]:
            if cause.get("reason") == "ExitCode":
                return int(cause["message"])
    raise AssertionError(f"not an exit status: {status}")


@dataclass
class ExecStreams:
    client: SpdyClient
    error: SpdyStream
    stdin: SpdyStream | None
    stdout: SpdyStream | None
    stderr: SpdyStream | None
    resize: SpdyStream | None


def spdy_remotecommand(
    url: str,
    *,
    stdin: bool = False,
    stdout: bool = True,
    stderr: bool = True,
    tty: bool = False,
    protocols: tuple[str, ...] = ("v4.channel.k8s.io",),
    tls: ssl.SSLContext | None = None,
    flow_control: bool = True,
) -> ExecStreams:
    """Open the streams in client-go's order: error first, then the standard streams and, for
    a tty, resize."""
    client = SpdyClient(url, list(protocols), tls, flow_control)
    error = client.open({"streamtype": "error"})
    streams = ExecStreams(client, error, None, None, None, None)
    if stdin:
        streams.stdin = client.open({"streamtype": "stdin"})
    if stdout:
        streams.stdout = client.open({"streamtype": "stdout"})
    if stderr and not tty:
        streams.stderr = client.open({"streamtype": "stderr"})
    if tty and client.protocol in ("v3.channel.k8s.io", "v4.channel.k8s.io"):
        streams.resize = client.open({"streamtype": "resize"})
    return streams


def resize_message(width: int, height: int) -> bytes:
    return json.dumps({"Width": width, "Height": height}).encode()


class WsClientChannel:
    def __init__(self, client: WsClient, number: int) -> None:
        self.client = client
        self.number = number
        self.inbox: queue.Queue[bytes] = queue.Queue()

    def read(self, timeout: float = 10.0) -> bytes:
        """The next message's payload; b"" once the connection closed."""
        return self.inbox.get(timeout=timeout)

    def write(self, data: bytes) -> None:
        self.client.send(self.number, data)


class WsClient:
    def __init__(
        self,
        url: str,
        subprotocols: list[str],
        channels: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.transport = connect(url, tls)
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.ws = WSConnection(ConnectionType.CLIENT)
        self._send_lock = threading.Lock()
        self.transport.sendall(
            self.ws.send(Request(host=parts.netloc, target=target, subprotocols=subprotocols))
        )
        self.subprotocol: str | None = None
        self.channels = [WsClientChannel(self, i) for i in range(channels)]
        self.closed = threading.Event()
        self.close_code: int | None = None
        # Channels that got an empty message (the server's "session is up" signal).
        self.empty_messages: list[int] = []
        while True:
            data = self.transport.recv(65536)
            if not data:
                self.transport.close()
                raise ConnectionError("closed during the WebSocket handshake")
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    self.subprotocol = event.subprotocol
                    self._reader = threading.Thread(target=self._read, daemon=True)
                    self._reader.start()
                    return
                if isinstance(event, RejectConnection):
                    body = b""
                    for more in self.ws.events():
                        if isinstance(more, RejectData):
                            body += more.data
                    self.transport.close()
                    raise UpgradeRefused(event.status_code, body.decode())

    @property
    def base64(self) -> bool:
        return bool(self.subprotocol) and "base64" in (self.subprotocol or "")

    def send(self, channel: int, data: bytes) -> None:
        if self.base64:
            message: TextMessage | BytesMessage = TextMessage(
                chr(ord("0") + channel) + base64.b64encode(data).decode()
            )
        else:
            message = BytesMessage(bytes([channel]) + data)
        with self._send_lock:
            self.transport.sendall(self.ws.send(message))

    def _read(self) -> None:
        pending: list[bytes | str] = []
        data = b""
        try:
            # Messages may have come in with the 101; wsproto holds them until asked.
            while True:
                if data:
                    self.ws.receive_data(data)
                for event in self.ws.events():
                    if isinstance(event, BytesMessage | TextMessage):
                        chunk = event.data
                        pending.append(chunk if isinstance(chunk, str) else bytes(chunk))
                        if event.message_finished:
                            self._deliver(pending)
                            pending = []
                    elif isinstance(event, CloseConnection):
                        self.close_code = event.code
                        with self._send_lock:
                            self.transport.sendall(self.ws.send(event.response()))
                        return
                data = self.transport.recv(65536)
                if not data:
                    return
        except OSError:
            pass
        finally:
            self.closed.set()
            for channel in self.channels:
                channel.inbox.put(b"")
            self.transport.close()

    def _deliver(self, parts: list[bytes | str]) -> None:
        if isinstance(parts[0], str):
            text = "".join(p for p in parts if isinstance(p, str))
            number, payload = ord(text[0]) - ord("0"), base64.b64decode(text[1:])
        else:
            raw = b"".join(p for p in parts if isinstance(p, bytes))
            number, payload = raw[0], raw[1:]
        if not payload:
            self.empty_messages.append(number)
        elif number < len(self.channels):
            self.channels[number].inbox.put(payload)

    def collect(self, number: int, timeout: float = 10.0) -> bytes:
        """Everything channel `number` receives until the connection closes."""
        out = b""
        while data := self.channels[number].read(timeout):
            out += data
        return out

    def drop(self) -> None:
        self.transport.close()
