"""SPDY/3.1 frames on the wire: their binary layout and the compressed name/value header blocks.

Layout (SPDY/3.1 draft, section 2.2): a control frame starts with the control bit, version 3
and the 16-bit type, then 8 bits of flags and a 24-bit length; a data frame starts with a
31-bit stream ID, then flags and length. Header blocks are one zlib stream per direction per
connection, primed with the spec's dictionary and sync-flushed after every block.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

VERSION = 3

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_SETTINGS_CLEAR = 0x01

SETTINGS_MAX_CONCURRENT_STREAMS = 4
SETTINGS_INITIAL_WINDOW_SIZE = 7

DEFAULT_WINDOW = 64 * 1024
MAX_WINDOW = 0x7FFFFFFF
MAX_FRAME_PAYLOAD = 0xFFFFFF
MAX_STREAM_ID = 0x7FFFFFFF
# A header block is a few hundred bytes in every k8s protocol; the cap stops a zlib bomb.
MAX_HEADER_BLOCK = 256 * 1024


class RstStatus(IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    FRAME_TOO_LARGE = 11


class GoAwayStatus(IntEnum):
    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class ProtocolError(Exception):
    """The peer sent bytes that are not valid SPDY/3.1; the session must end."""


def _dictionary() -> bytes:
    # Section 2.6.10.1: length-prefixed header names and common values, then a plain tail
    # of status lines, dates and content types. Built from the word lists so that the
    # 1423 bytes stay reviewable; the tests pin its length and Adler-32.
    # fmt: off
    words = [
        "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
        "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
        "cache-control", "connection", "content-base", "content-encoding", "content-language",
        "content-length", "content-location", "content-md5", "content-range", "content-type",
        "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
        "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
        "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
        "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
        "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
        "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
    ]
    # fmt: on
    prefixed = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words)
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502"
        "504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
        "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return prefixed + tail.encode()


DICTIONARY = _dictionary()

Headers = Mapping[str, str]


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers
    flags: int = 0
    associated_to: int = 0
    priority: int = 0
    slot: int = 0


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers
    flags: int = 0


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Setting:
    id: int
    value: int
    flags: int = 0


@dataclass(frozen=True)
class Settings:
    entries: tuple[Setting, ...]
    flags: int = 0


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = GoAwayStatus.OK


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    flags: int = 0


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes
    flags: int = 0


Frame = (
    SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate | Data
)


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed name/value block: 32-bit count, then 32-bit-length-prefixed strings.
    Several values of one name travel NUL-separated in one value, so names are unique."""
    out = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        if not name or name != name.lower():
            raise ValueError(f"SPDY header names must be non-empty and lowercase: {name!r}")
        raw_name, raw_value = name.encode(), value.encode()
        out.append(struct.pack(">I", len(raw_name)) + raw_name)
        out.append(struct.pack(">I", len(raw_value)) + raw_value)
    return b"".join(out)


def decode_header_block(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    try:
        (count,) = struct.unpack_from(">I", block, 0)
        offset = 4
        for _ in range(count):
            (n,) = struct.unpack_from(">I", block, offset)
            name = block[offset + 4 : offset + 4 + n]
            offset += 4 + n
            (v,) = struct.unpack_from(">I", block, offset)
            value = block[offset + 4 : offset + 4 + v]
            offset += 4 + v
            if len(name) != n or len(value) != v or not name:
                raise ProtocolError("truncated or empty name in header block")
            key = name.decode().lower()
            if key in headers:
                raise ProtocolError(f"duplicate header {key!r}")
            headers[key] = value.decode()
    except (struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(f"malformed header block: {e}") from None
    if offset != len(block):
        raise ProtocolError("trailing bytes after header block")
    return headers


class HeaderCompressor:
    """The sending half of a connection's header compression context."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        return self._z.compress(encode_header_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The receiving half; one per connection, since blocks share one zlib stream."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(15, zdict=DICTIONARY)

    def decompress(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._z.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise ProtocolError(f"header block does not decompress: {e}") from None
        if self._z.unconsumed_tail:
            raise ProtocolError(f"header block larger than {MAX_HEADER_BLOCK} bytes")
        return decode_header_block(raw)


def _control(frame_type: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_PAYLOAD:
        raise ValueError(f"frame payload of {len(payload)} bytes exceeds 24 bits")
    return struct.pack(">HHI", 0x8000 | VERSION, frame_type, flags << 24 | len(payload)) + payload


class FrameEncoder:
    def __init__(self) -> None:
        self._headers = HeaderCompressor()

    def encode(self, frame: Frame) -> bytes:
        match frame:
            case Data(stream_id, data, flags):
                if len(data) > MAX_FRAME_PAYLOAD:
                    raise ValueError(f"DATA of {len(data)} bytes exceeds 24 bits")
                return struct.pack(">II", stream_id & MAX_STREAM_ID, flags << 24 | len(data)) + data
            case SynStream(stream_id, headers, flags, associated_to, priority, slot):
                fixed = struct.pack(">IIBB", stream_id, associated_to, (priority & 7) << 5, slot)
                return _control(SYN_STREAM, flags, fixed + self._headers.compress(headers))
            case SynReply(stream_id, headers, flags):
                block = self._headers.compress(headers)
                return _control(SYN_REPLY, flags, struct.pack(">I", stream_id) + block)
            case HeadersFrame(stream_id, headers, flags):
                block = self._headers.compress(headers)
                return _control(HEADERS, flags, struct.pack(">I", stream_id) + block)
            case RstStream(stream_id, status):
                return _control(RST_STREAM, 0, struct.pack(">II", stream_id, status))
            case Settings(entries, flags):
                body = b"".join(struct.pack(">II", e.flags << 24 | e.id, e.value) for e in entries)
                return _control(SETTINGS, flags, struct.pack(">I", len(entries)) + body)
            case Ping(ping_id):
                return _control(PING, 0, struct.pack(">I", ping_id))
            case GoAway(last_good, status):
                return _control(GOAWAY, 0, struct.pack(">II", last_good, status))
            case WindowUpdate(stream_id, delta):
                return _control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta))
        raise TypeError(f"not a SPDY frame: {frame!r}")


class FrameDecoder:
    """Turns a byte stream into frames; feed it whatever the socket gave."""

    def __init__(self) -> None:
        self._headers = HeaderDecompressor()
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            word, flags_length = struct.unpack_from(">II", self._buffer, 0)
            length = flags_length & 0xFFFFFF
            if len(self._buffer) < 8 + length:
                break
            payload = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            flags = flags_length >> 24
            if word & 0x80000000:
                frame = self._control(word >> 16 & 0x7FFF, word & 0xFFFF, flags, payload)
                if frame is not None:
                    frames.append(frame)
            else:
                frames.append(Data(word & MAX_STREAM_ID, payload, flags))
        return frames

    def _control(self, version: int, kind: int, flags: int, p: bytes) -> Frame | None:
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        try:
            match kind:
                case 1:
                    sid, assoc, pri, slot = struct.unpack_from(">IIBB", p, 0)
                    headers = self._headers.decompress(p[10:])
                    return SynStream(
                        sid & MAX_STREAM_ID, headers, flags, assoc & MAX_STREAM_ID, pri >> 5, slot
                    )
                case 2:
                    (sid,) = struct.unpack_from(">I", p, 0)
                    return SynReply(sid & MAX_STREAM_ID, self._headers.decompress(p[4:]), flags)
                case 8:
                    (sid,) = struct.unpack_from(">I", p, 0)
                    return HeadersFrame(sid & MAX_STREAM_ID, self._headers.decompress(p[4:]), flags)
                case 3:
                    sid, status = struct.unpack(">II", p)
                    return RstStream(sid & MAX_STREAM_ID, status)
                case 4:
                    (count,) = struct.unpack_from(">I", p, 0)
                    if len(p) != 4 + 8 * count:
                        raise ProtocolError("SETTINGS length does not match its entry count")
                    entries = []
                    for i in range(count):
                        fid, value = struct.unpack_from(">II", p, 4 + 8 * i)
                        entries.append(Setting(fid & 0xFFFFFF, value, fid >> 24))
                    return Settings(tuple(entries), flags)
                case 6:
                    (ping_id,) = struct.unpack(">I", p)
                    return Ping(ping_id)
                case 7:
                    last, status = struct.unpack(">II", p)
                    return GoAway(last & MAX_STREAM_ID, status)
                case 9:
                    sid, delta = struct.unpack(">II", p)
                    return WindowUpdate(sid & MAX_STREAM_ID, delta & MAX_WINDOW)
        except struct.error as e:
            raise ProtocolError(f"control frame type {kind} is malformed: {e}") from None
        # Section 2.2.1: unknown control frame types are ignored.
        return None
