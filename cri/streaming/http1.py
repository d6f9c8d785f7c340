"""Just enough HTTP/1.1 for the streaming endpoints: read one request head, answer it.

Every streaming request ends in a protocol upgrade or an error, so there is no keep-alive,
no request body and no chunking. The bytes that follow the head (a client may start talking
its new protocol at once) are kept for the protocol that takes over.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from cri.streaming.transport import Transport

MAX_HEAD = 64 * 1024


class BadRequest(Exception):
    pass


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: tuple[tuple[str, str], ...]
    raw_head: bytes  # the head as received, for a library that parses it again (wsproto)
    rest: bytes

    def header_values(self, name: str) -> list[str]:
        """Every value of `name`, whether sent as repeated lines or as one comma list."""
        name = name.lower()
        return [
            item.strip()
            for key, value in self.headers
            if key.lower() == name
            for item in value.split(",")
            if item.strip()
        ]

    def has_token(self, name: str, token: str) -> bool:
        return token.lower() in (v.lower() for v in self.header_values(name))


def read_request(transport: Transport) -> Request | None:
    """The next request head, or None if the peer closed before sending one."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD:
            raise BadRequest("request head too large")
        chunk = transport.recv(65536)
        if not chunk:
            if buffer:
                raise BadRequest("connection closed inside the request head")
            return None
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head, rest = buffer[: end - 4], buffer[end:]
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise BadRequest("malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise BadRequest(f"unsupported protocol {version}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(f"malformed header line {line!r}")
        headers.append((name, value.strip()))
    url = urlsplit(target)
    return Request(method, url.path, parse_qs(url.query), tuple(headers), buffer[:end], rest)


def response(status: HTTPStatus, headers: dict[str, str] | None = None, body: str = "") -> bytes:
    raw_body = body.encode()
    lines = [f"HTTP/1.1 {status.value} {status.phrase}"]
    all_headers = dict(headers or {})
    if status != HTTPStatus.SWITCHING_PROTOCOLS:
        all_headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        all_headers["Content-Length"] = str(len(raw_body))
        all_headers["Connection"] = "close"
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + raw_body
