"""SPDY sessions over a socketpair: flow control both ways, PING, resets, GOAWAY."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cri.streaming import spdy
from cri.streaming.spdy_connection import SpdyConnection, SpdyStream, StreamClosed
from cri.streaming.transport import SocketTransport


@dataclass
class Pair:
    client: SpdyConnection
    server: SpdyConnection
    accepted: queue.Queue[SpdyStream]
    raw: socket.socket  # the client's socket, for writing hand-made frames


@pytest.fixture
def pair() -> Iterator[Pair]:
    a, b = socket.socketpair()
    accepted: queue.Queue[SpdyStream] = queue.Queue()

    def on_stream(stream: SpdyStream) -> bool:
        accepted.put(stream)
        return stream.headers.get("refuse") is None

    server = SpdyConnection(SocketTransport(b), server=True, on_stream=on_stream)
    client = SpdyConnection(SocketTransport(a), server=False)
    threads = [threading.Thread(target=c.serve) for c in (server, client)]
    for thread in threads:
        thread.start()
    yield Pair(client, server, accepted, a)
    client.abort()
    server.abort()
    for thread in threads:
        thread.join(5)


def _settle(check: object, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def test_open_write_read_and_half_close(pair: Pair) -> None:
    stream = pair.client.open_stream({"streamtype": "stdin"})
    assert stream.wait_reply(2)
    peer = pair.accepted.get(timeout=2)
    assert peer.headers == {"streamtype": "stdin"}
    stream.write(b"hello")
    stream.close()
    assert peer.read() == b"hello"
    assert peer.read() == b""
    peer.write(b"back")
    peer.close()
    assert stream.read() == b"back"
    assert stream.read() == b""
    _settle(lambda: not pair.client.streams and not pair.server.streams)
    assert not pair.client.streams and not pair.server.streams


def test_sender_waits_for_window_updates_of_a_flow_controlled_peer(pair: Pair) -> None:
    pair.client.send_frame(spdy.Settings((spdy.Setting(spdy.SETTINGS_INITIAL_WINDOW_SIZE, 65536),)))
    stream = pair.client.open_stream({"x": "1"})
    assert stream.wait_reply(2)
    peer = pair.accepted.get(timeout=2)
    writer = threading.Thread(target=peer.write, args=(b"z" * 300_000,))
    writer.start()
    time.sleep(0.3)
    # Unread, the client holds exactly one window's worth; the server is waiting.
    assert len(stream.inbox) == spdy.DEFAULT_WINDOW
    assert writer.is_alive()
    received = b""
    while len(received) < 300_000:
        received += stream.read()
    writer.join(5)
    assert received == b"z" * 300_000


def test_sender_does_not_wait_for_a_peer_without_flow_control(pair: Pair) -> None:
    stream = pair.client.open_stream({"x": "1"})
    assert stream.wait_reply(2)
    peer = pair.accepted.get(timeout=2)
    peer.write(b"z" * 300_000)  # spdystream sends no WINDOW_UPDATE; this must not block
    _settle(lambda: len(stream.inbox) == 300_000)
    assert len(stream.inbox) == 300_000


def test_initial_window_setting_applies_to_open_streams(pair: Pair) -> None:
    stream = pair.client.open_stream({"x": "1"})
    assert stream.wait_reply(2)
    peer = pair.accepted.get(timeout=2)
    settings = (spdy.Setting(spdy.SETTINGS_INITIAL_WINDOW_SIZE, 1000),)
    pair.client.send_frame(spdy.Settings(settings))
    _settle(lambda: peer.send_window == 1000)
    assert peer.send_window == 1000 and pair.server.peer_flow_control


def test_ping_is_answered(pair: Pair) -> None:
    assert pair.client.ping(2) < 1
    assert pair.server.ping(2) < 1


def test_refused_stream_is_reset(pair: Pair) -> None:
    stream = pair.client.open_stream({"refuse": "yes"})
    _settle(lambda: stream.was_reset)
    assert stream.was_reset
    with pytest.raises(StreamClosed):
        stream.write(b"x")


@pytest.fixture
def raw() -> Iterator[tuple[socket.socket, SpdyConnection]]:
    """A server session whose client is a bare socket, for hand-made frames."""
    a, b = socket.socketpair()
    server = SpdyConnection(SocketTransport(b), server=True, on_stream=lambda s: True)
    thread = threading.Thread(target=server.serve)
    thread.start()
    a.settimeout(2)
    yield a, server
    server.abort()
    thread.join(5)
    a.close()


def _frames_until(sock: socket.socket, kind: type) -> list[spdy.Frame]:
    decoder = spdy.FrameDecoder()
    frames: list[spdy.Frame] = []
    while not any(isinstance(f, kind) for f in frames):
        data = sock.recv(65536)
        if not data:
            break
        frames += decoder.feed(data)
    return frames


def test_stream_ids_must_grow(raw: tuple[socket.socket, SpdyConnection]) -> None:
    sock, server = raw
    encoder = spdy.FrameEncoder()
    sock.sendall(encoder.encode(spdy.SynStream(5, {"a": "b"})))
    assert spdy.SynReply(5, {}) in _frames_until(sock, spdy.SynReply)
    # A lower ID than one seen is a protocol error for that stream; the session survives.
    sock.sendall(encoder.encode(spdy.SynStream(3, {"a": "b"})))
    assert spdy.RstStream(3, spdy.RstStatus.PROTOCOL_ERROR) in _frames_until(sock, spdy.RstStream)
    # So are even (server-side) IDs and data for streams never opened.
    sock.sendall(encoder.encode(spdy.Data(9, b"x")))
    assert spdy.RstStream(9, spdy.RstStatus.INVALID_STREAM) in _frames_until(sock, spdy.RstStream)
    assert not server.closed.is_set()


def test_garbage_ends_the_session_with_goaway(raw: tuple[socket.socket, SpdyConnection]) -> None:
    sock, server = raw
    sock.sendall(bytes.fromhex("80020001 00000000"))  # SPDY/2
    assert spdy.GoAway(0, spdy.GoAwayStatus.PROTOCOL_ERROR) in _frames_until(sock, spdy.GoAway)
    assert server.closed.wait(2)


def test_ping_from_the_peer_is_echoed(raw: tuple[socket.socket, SpdyConnection]) -> None:
    sock, _ = raw
    sock.sendall(spdy.FrameEncoder().encode(spdy.Ping(7)))
    assert spdy.Ping(7) in _frames_until(sock, spdy.Ping)


def test_goaway_then_close(pair: Pair) -> None:
    stream = pair.client.open_stream({"x": "1"})
    assert stream.wait_reply(2)
    peer = pair.accepted.get(timeout=2)
    pair.server.close(linger=2)
    _settle(lambda: pair.client.goaway_received)
    assert pair.client.goaway_received
    with pytest.raises(StreamClosed):
        pair.client.open_stream({"x": "2"})
    pair.client.close(linger=2)
    assert pair.server.closed.wait(3) and pair.client.closed.wait(3)
    assert peer.read() == b""
