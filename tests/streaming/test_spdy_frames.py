"""SPDY/3.1 framing, byte for byte against layouts written out from the spec (section 2.6),
and the header compression against the dictionary and a frame as Go's framer writes it."""

from __future__ import annotations

import zlib

import pytest

from cri.streaming import spdy

# Control frame header: C=1 | version 3 | type, then flags | 24-bit length.
CASES: list[tuple[spdy.Frame, str]] = [
    (spdy.Data(5, b"hello"), "00000005 00000005 68656c6c6f"),
    (spdy.Data(0x7FFFFFFF, b"", spdy.FLAG_FIN), "7fffffff 01000000"),
    (spdy.RstStream(3, spdy.RstStatus.CANCEL), "80030003 00000008 00000003 00000005"),
    (
        spdy.RstStream(9, spdy.RstStatus.FLOW_CONTROL_ERROR),
        "80030003 00000008 00000009 00000007",
    ),
    (
        spdy.Settings((spdy.Setting(spdy.SETTINGS_INITIAL_WINDOW_SIZE, 65536),)),
        "80030004 0000000c 00000001 00000007 00010000",
    ),
    (
        spdy.Settings(
            (
                spdy.Setting(spdy.SETTINGS_MAX_CONCURRENT_STREAMS, 100, flags=1),
                spdy.Setting(spdy.SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20),
            ),
            flags=spdy.FLAG_SETTINGS_CLEAR,
        ),
        "80030004 01000014 00000002 01000004 00000064 00000007 00100000",
    ),
    (spdy.Ping(1), "80030006 00000004 00000001"),
    (spdy.GoAway(7, spdy.GoAwayStatus.OK), "80030007 00000008 00000007 00000000"),
    (spdy.GoAway(0, spdy.GoAwayStatus.PROTOCOL_ERROR), "80030007 00000008 00000000 00000001"),
    (spdy.WindowUpdate(0, 32768), "80030009 00000008 00000000 00008000"),
    (spdy.WindowUpdate(5, 0x7FFFFFFF), "80030009 00000008 00000005 7fffffff"),
]


@pytest.mark.parametrize(("frame", "wire"), CASES, ids=[type(f).__name__ for f, _ in CASES])
def test_frame_bytes_match_the_spec_layout(frame: spdy.Frame, wire: str) -> None:
    raw = bytes.fromhex(wire.replace(" ", ""))
    assert spdy.FrameEncoder().encode(frame) == raw
    assert spdy.FrameDecoder().feed(raw) == [frame]


def test_dictionary_is_the_spec_dictionary() -> None:
    # 1423 bytes whose Adler-32 is the DICTID every SPDY/3 header block's zlib header names.
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


# SYN_STREAM for stream 1 with {"streamtype": "stdout"}, as Go's framer (moby/spdystream,
# level 9, dictionary) writes it: the zlib header 78 f9 carries FDICT and DICTID e3c6a7c2.
GO_SYN_STREAM = bytes.fromhex(
    "80030001 0000002b 00000001 00000000 0000"
    "78f9e3c6a7c2 62606060 04a7b392 a2d4c45c 6851c256 5c92925f 5a020000 00ffff".replace(" ", "")
)


def test_decodes_a_syn_stream_written_by_go() -> None:
    (frame,) = spdy.FrameDecoder().feed(GO_SYN_STREAM)
    assert frame == spdy.SynStream(1, {"streamtype": "stdout"})


def test_syn_stream_layout_and_header_block() -> None:
    raw = spdy.FrameEncoder().encode(
        spdy.SynStream(3, {"streamtype": "error"}, spdy.FLAG_FIN, associated_to=1, priority=7)
    )
    assert raw[:4] == bytes.fromhex("80030001")
    assert raw[4] == spdy.FLAG_FIN
    assert int.from_bytes(raw[5:8], "big") == len(raw) - 8
    assert raw[8:18] == bytes.fromhex("00000003 00000001 e000".replace(" ", ""))
    # The block is an ordinary zlib stream primed with the dictionary and sync-flushed.
    assert raw[18:24] == bytes.fromhex("78f9e3c6a7c2")
    assert raw.endswith(b"\x00\x00\xff\xff")
    inflate = zlib.decompressobj(zdict=spdy.DICTIONARY)
    block = inflate.decompress(raw[18:])
    assert block == bytes.fromhex("00000001 0000000a") + b"streamtype" + b"\0\0\0\x05error"


def test_header_blocks_share_one_zlib_stream_per_direction() -> None:
    encoder = spdy.FrameEncoder()
    frames: list[spdy.Frame] = [
        spdy.SynStream(1, {"streamtype": "error"}),
        spdy.SynReply(1, {}),
        spdy.SynStream(3, {"streamtype": "data", "port": "8080", "requestid": "0"}),
        spdy.HeadersFrame(3, {"x": "a\0b"}, spdy.FLAG_FIN),
    ]
    encoded = [encoder.encode(f) for f in frames]
    assert spdy.FrameDecoder().feed(b"".join(encoded)) == frames
    # Only the first block carries the zlib header; a later one alone is undecodable.
    assert encoded[0][18:20] == bytes.fromhex("78f9")
    with pytest.raises(spdy.ProtocolError):
        spdy.FrameDecoder().feed(encoded[2])


def test_decoder_takes_bytes_in_any_pieces() -> None:
    encoder = spdy.FrameEncoder()
    frames: list[spdy.Frame] = [
        spdy.SynStream(1, {"streamtype": "stdin"}),
        spdy.Data(1, b"x" * 1000),
        spdy.Ping(2),
        spdy.Data(1, b"", spdy.FLAG_FIN),
    ]
    wire = b"".join(encoder.encode(f) for f in frames)
    decoder = spdy.FrameDecoder()
    got: list[spdy.Frame] = []
    for i in range(0, len(wire), 7):
        got += decoder.feed(wire[i : i + 7])
    assert got == frames


def test_unknown_control_frames_are_ignored() -> None:
    noop = bytes.fromhex("80030005 00000000")  # NOOP, gone since SPDY/3
    assert spdy.FrameDecoder().feed(noop + bytes.fromhex("80030006 00000004 00000003")) == [
        spdy.Ping(3)
    ]


@pytest.mark.parametrize(
    "wire",
    [
        "80020006 00000004 00000001",  # SPDY/2
        "80030003 00000004 00000001",  # RST_STREAM too short
        "80030004 0000000c 00000002 00000007 00010000",  # SETTINGS count mismatch
        "80030002 00000008 00000001 deadbeef",  # SYN_REPLY block is not zlib
    ],
)
def test_malformed_frames_are_protocol_errors(wire: str) -> None:
    with pytest.raises(spdy.ProtocolError):
        spdy.FrameDecoder().feed(bytes.fromhex(wire.replace(" ", "")))


def test_header_names_must_be_lowercase() -> None:
    with pytest.raises(ValueError, match="lowercase"):
        spdy.FrameEncoder().encode(spdy.SynReply(1, {"StreamType": "error"}))


def test_header_bomb_is_refused() -> None:
    block = spdy.encode_header_block({"x": "a" * (spdy.MAX_HEADER_BLOCK + 10)})
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, spdy.DICTIONARY)
    payload = b"\0\0\0\1" + deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
    frame = bytes.fromhex("80030002") + len(payload).to_bytes(4, "big") + payload
    with pytest.raises(spdy.ProtocolError, match="larger than"):
        spdy.FrameDecoder().feed(frame)
