"""A SPDY/3.1 client for the Kubernetes streaming protocols, the transport kubectl used
before WebSockets: an HTTP/1.1 upgrade, then one SPDY stream per channel, named by a
``streamtype`` header (exec/attach: error, stdin, stdout, stderr, resize; port-forward:
error and data, with ``port`` and ``requestid``). Results come back as ``Received`` with
the channel numbers of the WebSocket protocol, so cases check both transports alike."""

from __future__ import annotations

import socket
import struct
import time
import urllib.parse
import zlib
from collections.abc import Callable
from types import TracebackType
from typing import Self

from critest.websocket import ERROR, RESIZE, STDERR, STDIN, STDOUT, Received, StreamError

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 6, 7, 8, 9
FLAG_FIN = 0x01
EXEC_PROTOCOL = "v4.channel.k8s.io"
PORT_FORWARD_PROTOCOL = "portforward.k8s.io"
_EXEC_TYPES = {ERROR: "error", STDIN: "stdin", STDOUT: "stdout", STDERR: "stderr", RESIZE: "resize"}
_PORT_DATA, _PORT_ERROR = 0, 1

# The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00, 2.6.10.1):
# these words, each after its length as 4 big-endian bytes, then the text below as is.
_DICTIONARY_WORDS = [
    *[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
    ],
    *("200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"),
]
_DICTIONARY_TEXT = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
    "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
    "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = (
    b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS)
    + _DICTIONARY_TEXT.encode()
)


def encode_headers(headers: dict[str, str]) -> bytes:
    block = struct.pack(">I", len(headers))
    for name, value in headers.items():
        for part in (name.lower().encode(), value.encode()):
            block += struct.pack(">I", len(part)) + part
    return block


def decode_headers(block: bytes) -> dict[str, str]:
    (count,) = struct.unpack_from(">I", block)
    offset, headers = 4, {}
    for _ in range(count):
        parts = []
        for _ in range(2):
            (length,) = struct.unpack_from(">I", block, offset)
            parts.append(block[offset + 4 : offset + 4 + length].decode())
            offset += 4 + length
        headers[parts[0]] = parts[1]
    return headers


def control_frame(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(payload)) + payload


class SpdyStream:
    """``SpdyStream.exec(url, ...)`` or ``SpdyStream.port_forward(url, port)``; then
    ``send``, ``until`` and ``received`` as the WebSocket ``Stream``."""

    def __init__(
        self,
        url: str,
        protocol: str,
        channels: dict[int, dict[str, str]],
        read_only: set[int],
        final: int,
    ) -> None:
        """Opens one stream per channel, in order; ``read_only`` ones are half-closed at
        once (as kubectl does); the server closing ``final`` ends the exchange."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http":
            raise StreamError(f"only plain http streaming URLs are supported, not {url!r}")
        self._socket = socket.create_connection((parts.hostname, parts.port or 80), timeout=30)
        self._buffer = self._upgrade(parts, protocol)
        self._deflate = zlib.compressobj(zdict=DICTIONARY)
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self.received = Received()
        self._streams: dict[int, int] = {}  # SPDY stream id -> channel
        self._ids: dict[int, int] = {}  # channel -> SPDY stream id
        self._open: set[int] = set()
        for number, (channel, headers) in enumerate(channels.items()):
            self._open_stream(2 * number + 1, channel, headers, channel in read_only)
        self._final = self._ids[final]

    @classmethod
    def exec(cls, url: str, *, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Self:
        chosen = ((STDIN, stdin), (STDOUT, stdout), (STDERR, stderr), (RESIZE, tty))
        wanted = [ERROR] + [channel for channel, on in chosen if on]
        channels = {c: {"streamtype": _EXEC_TYPES[c]} for c in wanted}
        return cls(url, EXEC_PROTOCOL, channels, {ERROR, STDOUT, STDERR}, ERROR)

    @classmethod
    def port_forward(cls, url: str, port: int) -> Self:
        common = {"port": str(port), "requestid": "0"}
        channels = {
            _PORT_ERROR: {"streamtype": "error", **common},
            _PORT_DATA: {"streamtype": "data", **common},
        }
        return cls(url, PORT_FORWARD_PROTOCOL, channels, {_PORT_ERROR}, _PORT_DATA)

    def _upgrade(self, parts: urllib.parse.SplitResult, protocol: str) -> bytes:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        request = (
            f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: Upgrade\r\n"
            f"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        self._socket.sendall(request.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = self._socket.recv(65536)
            if not chunk:
                raise StreamError(f"connection closed during the upgrade: {answer!r}")
            answer += chunk
        head, _, rest = answer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise StreamError(f"streaming server refused the SPDY upgrade: {head!r}")
        return rest

    def _open_stream(
        self, stream_id: int, channel: int, headers: dict[str, str], half_closed: bool
    ) -> None:
        block = self._deflate.compress(encode_headers(headers))
        block += self._deflate.flush(zlib.Z_SYNC_FLUSH)
        flags = FLAG_FIN if half_closed else 0
        payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + block
        self._socket.sendall(control_frame(SYN_STREAM, flags, payload))
        self._streams[stream_id] = channel
        self._ids[channel] = stream_id
        self._open.add(stream_id)

    def send(self, channel: int, data: bytes) -> None:
        self._socket.sendall(data_frame(self._ids[channel], 0, data))

    def close_channel(self, channel: int) -> None:
        """Half-closes the client's side of ``channel`` (stdin EOF)."""
        self._socket.sendall(data_frame(self._ids[channel], FLAG_FIN, b""))

    def _frames(self) -> list[tuple[bool, int, int, bytes]]:
        frames = []
        while len(self._buffer) >= 8:
            first, second = struct.unpack_from(">II", self._buffer)
            length = second & 0xFFFFFF
            if len(self._buffer) < 8 + length:
                break
            payload = self._buffer[8 : 8 + length]
            self._buffer = self._buffer[8 + length :]
            control = bool(first & 0x80000000)
            kind = first & 0xFFFF if control else first & 0x7FFFFFFF
            frames.append((control, kind, second >> 24, payload))
        return frames

    def pump(self, timeout: float) -> None:
        self._socket.settimeout(timeout)
        try:
            chunk = self._socket.recv(65536)
        except TimeoutError:
            return
        except ConnectionResetError:
            chunk = b""  # the server may reset instead of closing once it is done
        if not chunk:
            self.received.closed = True
            return
        self._buffer += chunk
        for control, kind, flags, payload in self._frames():
            self._handle(control, kind, flags, payload)

    def _handle(self, control: bool, kind: int, flags: int, payload: bytes) -> None:
        if not control:
            channel = self._streams.get(kind)
            if channel is not None:
                self.received.channels[channel] += payload
                if payload:
                    delta = struct.pack(">II", kind, len(payload))
                    self._reply(control_frame(WINDOW_UPDATE, 0, delta))
            if flags & FLAG_FIN:
                self._open.discard(kind)
        elif kind in (SYN_REPLY, HEADERS):
            # Every header block goes through the one inflate stream, in order.
            self._inflate.decompress(payload[4:])
            if flags & FLAG_FIN:
                self._open.discard(struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF)
        elif kind == RST_STREAM:
            self._open.discard(struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF)
        elif kind == PING:
            self._reply(control_frame(PING, 0, payload))
        elif kind == GOAWAY:
            self.received.closed = True
        if self._final not in self._open:
            self.received.closed = True

    def _reply(self, frame: bytes) -> None:
        """Flow control and pings: a server that already hung up needs neither."""
        try:
            self._socket.sendall(frame)
        except (BrokenPipeError, ConnectionResetError):
            self.received.closed = True

    def until(
        self, done: Callable[[Received], bool] | None = None, timeout: float = 30
    ) -> Received:
        deadline = time.monotonic() + timeout
        while not self.received.closed and not (done and done(self.received)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise StreamError(f"stream did not finish within {timeout:g}s: {self.received}")
            self.pump(min(left, 1.0))
        return self.received

    def close(self) -> None:
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
