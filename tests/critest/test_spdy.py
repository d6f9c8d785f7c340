"""SPDY/3.1 framing and header blocks of the streaming client."""

from __future__ import annotations

import struct
import zlib

from critest.spdy import (
    DICTIONARY,
    FLAG_FIN,
    SYN_STREAM,
    control_frame,
    data_frame,
    decode_headers,
    encode_headers,
)


def test_header_blocks_round_trip_through_the_shared_zlib_streams() -> None:
    deflate = zlib.compressobj(zdict=DICTIONARY)
    inflate = zlib.decompressobj(zdict=DICTIONARY)
    for headers in ({"streamtype": "error"}, {"streamtype": "data", "port": "80"}):
        block = deflate.compress(encode_headers(headers)) + deflate.flush(zlib.Z_SYNC_FLUSH)
        assert decode_headers(inflate.decompress(block)) == headers


def test_the_dictionary_starts_and_ends_as_the_spec_says() -> None:
    assert DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert DICTIONARY.endswith(b",utf-,*,enq=0.")
    assert len(DICTIONARY) == 1423


def test_frame_headers() -> None:
    control = control_frame(SYN_STREAM, FLAG_FIN, b"abc")
    assert control[:4] == b"\x80\x03\x00\x01"
    assert struct.unpack(">I", control[4:8])[0] == (FLAG_FIN << 24) | 3
    data = data_frame(5, 0, b"hello")
    assert struct.unpack(">II", data[:8]) == (5, 5) and data[8:] == b"hello"
