"""A SPDY/3.1 session: streams, their half-closes and resets, pings, GOAWAY and flow control.

One thread runs `serve()` and reads frames; any thread may write to streams. All session state
sits under one condition variable, which every change notifies.

Flow control. We always account both windows (per stream and, new in 3.1, per session on
stream 0) and send WINDOW_UPDATE as data is consumed. Enforcing the peer's window on our sends
is switched on only once the peer shows it takes part, by sending SETTINGS or WINDOW_UPDATE:
moby/spdystream, the library behind kubelet, kubectl and crictl, neither sends WINDOW_UPDATE
nor obeys windows, so waiting for one would stall every transfer to it after 64 KiB. For
such peers TCP alone paces the data, as it does between spdystream endpoints.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable

from cri.streaming import spdy
from cri.streaming.transport import Transport

log = logging.getLogger("crisp.streaming")

# Bytes buffered for a stream nobody reads before the reader thread waits; a flow-controlled
# peer never gets there (its window is smaller), so only window-ignoring peers are slowed.
_MAX_INBOX = 1024 * 1024
_MAX_CHUNK = 32 * 1024


class StreamClosed(OSError):
    """The stream was reset, finished on our side, or its connection is gone."""


class SpdyStream:
    def __init__(self, conn: SpdyConnection, stream_id: int, headers: dict[str, str]) -> None:
        self.conn = conn
        self.id = stream_id
        self.headers = headers
        self.inbox = bytearray()
        self.remote_fin = False
        self.local_fin = False
        self.was_reset = False
        self.replied = False
        self.send_window = conn.peer_initial_window
        self._unacked = 0

    def read(self, size: int = 65536) -> bytes:
        """Up to `size` bytes as they arrive; b"" once the peer finished or reset the stream."""
        conn = self.conn
        with conn.cond:
            while not self.inbox and not self.remote_fin and not conn.closed.is_set():
                conn.cond.wait()
            data = bytes(self.inbox[:size])
            del self.inbox[:size]
            self._unacked += len(data)
            conn.session_unacked += len(data)
            updates = []
            half = spdy.DEFAULT_WINDOW // 2
            if not conn.closed.is_set():  # else the data was buffered before the end
                if self._unacked >= half and not self.remote_fin:
                    updates.append(spdy.WindowUpdate(self.id, self._unacked))
                    self._unacked = 0
                if conn.session_unacked >= half:
                    updates.append(spdy.WindowUpdate(0, conn.session_unacked))
                    conn.session_unacked = 0
            conn.cond.notify_all()
        # A lost connection shows on the next read as end of data, not as an error here.
        with contextlib.suppress(StreamClosed):
            for frame in updates:
                conn.send_frame(frame)
        return data

    def write(self, data: bytes) -> None:
        conn = self.conn
        view = memoryview(data)
        while view:
            with conn.cond:
                while True:
                    if self.local_fin or self.was_reset or conn.closed.is_set():
                        raise StreamClosed(f"SPDY stream {self.id} is closed")
                    if not conn.peer_flow_control:
                        allowed = len(view)
                        break
                    allowed = min(len(view), self.send_window, conn.session_send_window)
                    if allowed > 0:
                        break
                    conn.cond.wait()
                chunk = min(allowed, _MAX_CHUNK)
                self.send_window -= chunk
                conn.session_send_window -= chunk
            conn.send_frame(spdy.Data(self.id, bytes(view[:chunk])))
            view = view[chunk:]

    def close(self) -> None:
        """Half-close: an empty DATA frame with FIN. Idempotent."""
        with self.conn.cond:
            if self.local_fin or self.was_reset or self.conn.closed.is_set():
                return
            self.local_fin = True
            self.conn.forget_if_done(self)
        self.conn.send_frame(spdy.Data(self.id, b"", spdy.FLAG_FIN))

    def reset(self, status: int = spdy.RstStatus.CANCEL) -> None:
        """Abort the stream both ways. Never raises: on a lost connection there is nobody
        left to tell."""
        with self.conn.cond:
            if self.was_reset:
                return
            self.was_reset = self.local_fin = self.remote_fin = True
            self.conn.forget_if_done(self)
            self.conn.cond.notify_all()
        with contextlib.suppress(StreamClosed):
            self.conn.send_frame(spdy.RstStream(self.id, status))

    def wait_reply(self, timeout: float) -> bool:
        with self.conn.cond:
            return (
                self.conn.cond.wait_for(
                    lambda: self.replied or self.was_reset or self.conn.closed.is_set(), timeout
                )
                and self.replied
                and not self.was_reset
            )


class SpdyConnection:
    """Either end of a session. `on_stream` is called (from the reader thread) for each stream
    the peer opens, after its SYN_REPLY went out; it returns False to refuse the stream."""

    def __init__(
        self,
        transport: Transport,
        *,
        server: bool,
        idle_timeout: float | None = None,
        on_stream: Callable[[SpdyStream], bool] | None = None,
        initial_bytes: bytes = b"",
    ) -> None:
        self.transport = transport
        self.server = server
        self.idle_timeout = idle_timeout
        self.on_stream = on_stream
        self._initial = initial_bytes
        self.cond = threading.Condition()
        self.closed = threading.Event()
        self.streams: dict[int, SpdyStream] = {}
        self._ids = itertools.count(2 if server else 1, 2)
        self._ping_ids = itertools.count(2 if server else 1, 2)
        self._pongs: set[int] = set()
        self._last_peer_id = 0
        self.peer_initial_window = spdy.DEFAULT_WINDOW
        self.session_send_window = spdy.DEFAULT_WINDOW
        self.session_unacked = 0
        self.peer_flow_control = False
        self._goaway_sent = False
        self.goaway_received = False
        self._linger_until: float | None = None
        self._encoder = spdy.FrameEncoder()
        self._encode_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self.last_activity = time.monotonic()

    # -- sending

    def send_frame(self, frame: spdy.Frame) -> None:
        """Encode and send in one critical section: header blocks share one zlib stream, so
        frames must hit the wire in the order they were compressed."""
        try:
            with self._encode_lock:
                self.transport.sendall(self._encoder.encode(frame))
            self.last_activity = time.monotonic()
        except OSError as e:
            self._lost(e)
            raise StreamClosed(f"SPDY connection lost: {e}") from e

    def open_stream(self, headers: dict[str, str], fin: bool = False) -> SpdyStream:
        """Open a stream of our own (client side); see SpdyStream.wait_reply."""
        # Stream IDs must reach the wire in increasing order.
        with self._open_lock:
            with self.cond:
                if self.closed.is_set() or self.goaway_received:
                    raise StreamClosed("SPDY connection is going away")
                stream = SpdyStream(self, next(self._ids), headers)
                stream.local_fin = fin
                self.streams[stream.id] = stream
            self.send_frame(spdy.SynStream(stream.id, headers, spdy.FLAG_FIN if fin else 0))
        return stream

    def ping(self, timeout: float) -> float:
        """Round-trip time of one PING, in seconds."""
        ping_id = next(self._ping_ids)
        start = time.monotonic()
        self.send_frame(spdy.Ping(ping_id))
        with self.cond:
            if not self.cond.wait_for(
                lambda: ping_id in self._pongs or self.closed.is_set(), timeout
            ):
                raise TimeoutError(f"no answer to PING {ping_id} within {timeout}s")
            self._pongs.discard(ping_id)
        if self.closed.is_set():
            raise StreamClosed("SPDY connection closed while waiting for PING")
        return time.monotonic() - start

    def close(self, status: int = spdy.GoAwayStatus.OK, linger: float = 5.0) -> None:
        """GOAWAY, then end our half of the TCP stream; the reader keeps draining for up to
        `linger` seconds so the peer reads everything before the socket closes."""
        with self.cond:
            if self._goaway_sent or self.closed.is_set():
                return
            self._goaway_sent = True
            self._linger_until = time.monotonic() + linger
            self.cond.notify_all()  # a reader parked on a full inbox must go back to reading
        with contextlib.suppress(StreamClosed):
            self.send_frame(spdy.GoAway(self._last_peer_id, status))
        self.transport.shutdown_write()
        # Wake the reader so it notices the linger deadline even if the peer stays silent.
        with contextlib.suppress(OSError):  # the reader may have closed the socket already
            self.transport.settimeout(min(linger, self.idle_timeout or linger) or None)

    def abort(self) -> None:
        """Drop the connection now (server shutdown)."""
        self.transport.close()
        self._lost(None)

    def forget_if_done(self, stream: SpdyStream) -> None:
        # Caller holds self.cond. Streams closed both ways leave the table, so that a
        # long port-forward session does not accumulate them.
        if stream.local_fin and stream.remote_fin:
            self.streams.pop(stream.id, None)

    # -- reading

    def serve(self) -> None:
        """Read and dispatch frames until the peer goes, the idle timeout passes or the
        session breaks. Marks the connection closed on the way out."""
        decoder = spdy.FrameDecoder()
        self.transport.settimeout(self.idle_timeout)
        data = self._initial
        try:
            while True:
                if data:
                    self.last_activity = time.monotonic()
                    for frame in decoder.feed(data):
                        self._dispatch(frame)
                try:
                    data = self.transport.recv(65536)
                except TimeoutError:
                    now = time.monotonic()
                    if self._linger_until is not None and now >= self._linger_until:
                        return
                    if self.idle_timeout and now - self.last_activity >= self.idle_timeout:
                        log.info("SPDY connection idle for %ss, closing", self.idle_timeout)
                        return
                    data = b""
                    continue
                if not data:
                    return
        except spdy.ProtocolError as e:
            log.warning("SPDY protocol error from peer: %s", e)
            with contextlib.suppress(StreamClosed):
                self.send_frame(spdy.GoAway(self._last_peer_id, spdy.GoAwayStatus.PROTOCOL_ERROR))
        except OSError:
            pass
        finally:
            self.transport.close()
            self._lost(None)

    def _lost(self, error: OSError | None) -> None:
        with self.cond:
            if self.closed.is_set():
                return
            self.closed.set()
            for stream in self.streams.values():
                stream.remote_fin = True
            self.streams.clear()
            self.cond.notify_all()
        if error is not None:
            log.debug("SPDY connection lost: %s", error)

    def _dispatch(self, frame: spdy.Frame) -> None:
        match frame:
            case spdy.Data():
                self._on_data(frame)
            case spdy.SynStream():
                self._on_syn_stream(frame)
            case spdy.SynReply(stream_id):
                with self.cond:
                    stream = self.streams.get(stream_id)
                    if stream is not None:
                        stream.replied = True
                        self._remote_fin(stream, frame.flags)
                        self.cond.notify_all()
            case spdy.HeadersFrame(stream_id):
                with self.cond:
                    stream = self.streams.get(stream_id)
                    if stream is not None:
                        self._remote_fin(stream, frame.flags)
                        self.cond.notify_all()
            case spdy.RstStream(stream_id):
                with self.cond:
                    stream = self.streams.pop(stream_id, None)
                    if stream is not None:
                        stream.was_reset = stream.remote_fin = stream.local_fin = True
                        self.cond.notify_all()
            case spdy.Settings(entries):
                with self.cond:
                    self.peer_flow_control = True
                    for entry in entries:
                        if entry.id == spdy.SETTINGS_INITIAL_WINDOW_SIZE:
                            delta = entry.value - self.peer_initial_window
                            self.peer_initial_window = entry.value
                            for stream in self.streams.values():
                                stream.send_window += delta
                    self.cond.notify_all()
            case spdy.WindowUpdate(stream_id, delta):
                self._on_window_update(stream_id, delta)
            case spdy.Ping(ping_id):
                if ping_id % 2 == (0 if self.server else 1):
                    with self.cond:
                        self._pongs.add(ping_id)
                        self.cond.notify_all()
                else:
                    self.send_frame(frame)
            case spdy.GoAway():
                with self.cond:
                    self.goaway_received = True
                    self.cond.notify_all()

    def _remote_fin(self, stream: SpdyStream, flags: int) -> None:
        if flags & spdy.FLAG_FIN:
            stream.remote_fin = True
            self.forget_if_done(stream)

    def _on_syn_stream(self, frame: spdy.SynStream) -> None:
        sid = frame.stream_id
        peer_parity = 1 if self.server else 0
        if sid % 2 != peer_parity or sid <= self._last_peer_id:
            self.send_frame(spdy.RstStream(sid, spdy.RstStatus.PROTOCOL_ERROR))
            return
        self._last_peer_id = sid
        if self._goaway_sent or self.on_stream is None:
            self.send_frame(spdy.RstStream(sid, spdy.RstStatus.REFUSED_STREAM))
            return
        stream = SpdyStream(self, sid, dict(frame.headers))
        stream.replied = True
        stream.remote_fin = bool(frame.flags & spdy.FLAG_FIN)
        stream.local_fin = bool(frame.flags & spdy.FLAG_UNIDIRECTIONAL)
        with self.cond:
            self.streams[sid] = stream
        # The reply goes out before the handler sees the stream: spdystream drops DATA that
        # arrives on a stream it has no SYN_REPLY for.
        self.send_frame(spdy.SynReply(sid, {}))
        if not self.on_stream(stream):
            stream.reset(spdy.RstStatus.REFUSED_STREAM)

    def _on_data(self, frame: spdy.Data) -> None:
        with self.cond:
            stream = self.streams.get(frame.stream_id)
            if stream is None or stream.remote_fin:
                # Late data for a stream we finished with, or for none at all.
                unknown = frame.stream_id > self._last_peer_id and frame.stream_id % 2 == (
                    1 if self.server else 0
                )
                status = spdy.RstStatus.INVALID_STREAM if unknown else None
            else:
                status = None
                stream.inbox += frame.data
                self._remote_fin(stream, frame.flags)
                self.cond.notify_all()
                while (
                    len(stream.inbox) > _MAX_INBOX
                    and not stream.was_reset
                    and not self._goaway_sent
                ):
                    self.cond.wait()
        if status is not None:
            self.send_frame(spdy.RstStream(frame.stream_id, status))

    def _on_window_update(self, stream_id: int, delta: int) -> None:
        overflow = False
        with self.cond:
            self.peer_flow_control = True
            if stream_id == 0:
                self.session_send_window += delta
            elif (stream := self.streams.get(stream_id)) is not None:
                stream.send_window += delta
                if stream.send_window > spdy.MAX_WINDOW:
                    stream.was_reset = stream.remote_fin = stream.local_fin = True
                    self.streams.pop(stream_id, None)
                    overflow = True
            self.cond.notify_all()
        if overflow:
            self.send_frame(spdy.RstStream(stream_id, spdy.RstStatus.FLOW_CONTROL_ERROR))
