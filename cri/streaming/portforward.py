"""Port forwarding (k8s "portforward.k8s.io"): client channels spliced onto TCP connections
that the backend opens inside the pod's network namespace.

SPDY: each forwarded connection is a pair of client streams, an "error" and a "data" stream,
with the same "port" and "requestID" headers. WebSocket: the URL names the ports; port i gets
channel 2i for data and 2i+1 for errors, and each of them starts with the port number as two
little-endian bytes.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import struct
import threading
import time
from dataclasses import dataclass

from cri.streaming.backend import StreamingBackend
from cri.streaming.spdy_connection import SpdyStream
from cri.streaming.transport import Channel

log = logging.getLogger("crisp.streaming")

SPDY_PROTOCOL = "portforward.k8s.io"
WEBSOCKET_PROTOCOLS = ("v4.channel.k8s.io", "v4.base64.channel.k8s.io", "")


class Forwarder:
    """The pod connections of one client connection, so that they all go when it does."""

    def __init__(self, backend: StreamingBackend, pod_sandbox_id: str) -> None:
        self.backend = backend
        self.pod_sandbox_id = pod_sandbox_id
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False

    def forward(self, port: int, data: Channel, error: Channel) -> None:
        """Splice `data` onto a connection to `port` until the pod side ends; failures go
        to `error` as text."""
        pod = self.pod_sandbox_id
        try:
            conn = self.backend.port_forward(pod, port)
        except Exception as e:
            if not isinstance(e, OSError):
                log.warning("port forward to %s:%d failed: %s", pod, port, e)
            with contextlib.suppress(OSError):
                error.write(f"error forwarding port {port} to pod {pod}: {e}".encode())
                data.close()
            return
        with self._lock:
            if self._closed:
                conn.close()
                return
            self._sockets.add(conn)
        try:
            threading.Thread(target=_client_to_pod, args=(data, conn), daemon=True).start()
            while chunk := conn.recv(65536):
                data.write(chunk)
        except OSError as e:
            log.debug("port forward %s:%d ended: %s", pod, port, e)
        finally:
            with self._lock:
                self._sockets.discard(conn)
            conn.close()
        with contextlib.suppress(OSError):
            data.close()
        # Not waiting for the client's half: kubectl closes its data stream only after it
        # saw the error stream end, which the caller does once this returns. The copy
        # thread ends when the stream does.

    def close(self) -> None:
        """The client is gone: end every pod connection."""
        with self._lock:
            self._closed = True
            sockets = list(self._sockets)
        for conn in sockets:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def _client_to_pod(data: Channel, conn: socket.socket) -> None:
    try:
        while chunk := data.read():
            conn.sendall(chunk)
        conn.shutdown(socket.SHUT_WR)
    except OSError as e:
        log.debug("port forward: client side ended: %s", e)


def parse_port(value: str) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return port


@dataclass
class _Pair:
    created: float
    data: SpdyStream | None = None
    error: SpdyStream | None = None


def _request_id(stream: SpdyStream) -> str:
    request_id = stream.headers.get("requestid", "")
    if request_id:
        return request_id
    # Clients before requestID opened the error stream right before its data stream.
    return str(stream.id - 2 if stream.headers.get("streamtype") == "data" else stream.id)


def serve_spdy(
    forwarder: Forwarder, incoming: queue.Queue[SpdyStream | None], creation_timeout: float
) -> None:
    """Pair streams as they arrive and forward each complete pair in its own thread, until
    `incoming` yields None (the connection closed)."""
    pairs: dict[str, _Pair] = {}
    workers: list[threading.Thread] = []
    while True:
        _expire(pairs, creation_timeout)
        try:
            stream = incoming.get(timeout=min(creation_timeout, 1.0))
        except queue.Empty:
            continue
        if stream is None:
            break
        kind = stream.headers.get("streamtype", "")
        if kind not in ("data", "error"):
            stream.reset()
            continue
        request_id = _request_id(stream)
        pair = pairs.setdefault(request_id, _Pair(time.monotonic()))
        if getattr(pair, kind) is not None:
            stream.reset()
            continue
        setattr(pair, kind, stream)
        if pair.data is None or pair.error is None:
            continue
        del pairs[request_id]
        worker = threading.Thread(
            target=_forward_pair,
            args=(forwarder, pair.data, pair.error),
            daemon=True,
            name=f"crisp-portforward-{request_id}",
        )
        worker.start()
        workers = [w for w in workers if w.is_alive()] + [worker]
    forwarder.close()
    for worker in workers:
        worker.join()


def _expire(pairs: dict[str, _Pair], creation_timeout: float) -> None:
    now = time.monotonic()
    stale = [rid for rid, p in pairs.items() if now - p.created >= creation_timeout]
    for request_id in stale:
        pair = pairs.pop(request_id)
        if pair.error is not None:
            with contextlib.suppress(OSError):
                pair.error.write(
                    f"timed out waiting for the streams of request {request_id}".encode()
                )
                pair.error.close()
        for stream in (pair.data, pair.error):
            if stream is not None:
                stream.reset()


def _forward_pair(forwarder: Forwarder, data: SpdyStream, error: SpdyStream) -> None:
    try:
        port = parse_port(data.headers.get("port", ""))
    except ValueError:
        with contextlib.suppress(OSError):
            error.write(f"invalid port header {data.headers.get('port', '')!r}".encode())
            error.close()
        data.reset()
        return
    forwarder.forward(port, data, error)
    with contextlib.suppress(OSError):
        error.close()


def websocket_ports(query: dict[str, list[str]]) -> list[int]:
    """The "port" query parameters, repeated or comma-separated, as kubelet reads them."""
    values = query.get("port", [])
    if not values:
        raise ValueError('query parameter "port" is required')
    return [parse_port(p) for value in values for p in value.split(",")]


def serve_websocket(
    forwarder: Forwarder, ports: list[int], channels: list[Channel], closed: threading.Event
) -> None:
    """Forward each port until its pod side ends or the client goes."""
    workers = []
    for i, port in enumerate(ports):
        data, error = channels[2 * i], channels[2 * i + 1]
        prefix = struct.pack("<H", port)
        data.write(prefix)
        error.write(prefix)
        worker = threading.Thread(target=forwarder.forward, args=(port, data, error), daemon=True)
        worker.start()
        workers.append(worker)
    for worker in workers:
        while worker.is_alive() and not closed.is_set():
            worker.join(0.2)
    forwarder.close()
