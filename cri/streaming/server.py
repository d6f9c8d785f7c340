"""The streaming HTTP server: one-time URLs for Exec, Attach and PortForward, upgraded to SPDY/3.1
or WebSocket, served by a thread per connection.

Timeouts follow kubelet's streaming server: a connection with no traffic for 4 hours is
closed, and a client gets 30 seconds (from connecting) to finish the TLS handshake, send its
request and open the streams the request needs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import queue
import socket
import ssl
import threading
import time
from http import HTTPStatus

from cri.streaming import http1, portforward, remotecommand
from cri.streaming.backend import (
    AttachRequest,
    ExecRequest,
    PortForwardRequest,
    StreamingBackend,
    StreamRequest,
)
from cri.streaming.spdy_connection import SpdyConnection, SpdyStream
from cri.streaming.tokens import TokenRegistry
from cri.streaming.transport import SocketTransport, TlsTransport, Transport

# The WebSocket side (wsproto, h11) is imported by the first WebSocket session: kubelet
# and the API server speak SPDY to the streaming server, and the daemon's start-up should
# not pay for a protocol most nodes never see.

log = logging.getLogger("crisp.streaming")

IDLE_TIMEOUT = 4 * 60 * 60.0
STREAM_CREATION_TIMEOUT = 30.0


def split_address(address: str) -> tuple[str, int]:
    """ "host:port" or "[v6]:port" → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"streaming address {address!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


class StreamingServer:
    def __init__(
        self,
        backend: StreamingBackend,
        address: str = "127.0.0.1:0",
        *,
        tls_cert_file: str = "",
        tls_key_file: str = "",
        idle_timeout: float = IDLE_TIMEOUT,
        stream_creation_timeout: float = STREAM_CREATION_TIMEOUT,
        tokens: TokenRegistry | None = None,
    ) -> None:
        """Binds at once, so that a bad address or certificate fails the caller's start-up;
        serving begins with start()."""
        self.backend = backend
        self.idle_timeout = idle_timeout
        self.stream_creation_timeout = stream_creation_timeout
        self.tokens = tokens if tokens is not None else TokenRegistry()
        self._tls: ssl.SSLContext | None = None
        if tls_cert_file:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(tls_cert_file, tls_key_file or None)
        host, port = split_address(address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(128)
        except OSError:
            self._listener.close()
            raise
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = False
        self._acceptor = threading.Thread(
            target=self._accept_loop, daemon=True, name="crisp-streaming-accept"
        )

    @property
    def address(self) -> str:
        """The bound "host:port" (the real port when the configured one was 0)."""
        host, port = self._listener.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def base_url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        ip = ipaddress.ip_address(host)
        # A wildcard bind is reachable on loopback; a URL cannot name "any address".
        if ip.is_unspecified:
            host = "::1" if ip.version == 6 else "127.0.0.1"
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return f"{'https' if self._tls else 'http'}://{netloc}"

    def url_for(self, request: StreamRequest) -> str:
        """Park `request` under a fresh one-time token and return the URL to give the client.
        Raises sandbox.errors.InvalidArgument for an impossible request."""
        kind, token = self.tokens.insert(request)
        return f"{self.base_url}/{kind}/{token}"

    def start(self) -> None:
        self._acceptor.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, drop every connection (backends see `cancelled`), and wait up to
        `timeout` seconds for the connection threads."""
        with self._lock:
            self._stopping = True
            sockets = list(self._sockets)
            threads = list(self._threads)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        if self._acceptor.is_alive():
            self._acceptor.join(timeout)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError as e:
                with self._lock:
                    if self._stopping:
                        return
                log.warning("streaming server: accept failed: %s", e)
                continue
            thread = threading.Thread(
                target=self._serve_connection, args=(sock,), daemon=True, name="crisp-stream"
            )
            with self._lock:
                if self._stopping:
                    sock.close()
                    return
                self._sockets.add(sock)
                self._threads.add(thread)
            thread.start()

    def _serve_connection(self, sock: socket.socket) -> None:
        try:
            # Frames are small and interactive (keystrokes, stream set-up); Nagle would hold
            # each behind the peer's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.stream_creation_timeout)
            transport: Transport = (
                TlsTransport(sock, self._tls, server_side=True)
                if self._tls
                else SocketTransport(sock)
            )
            try:
                request = http1.read_request(transport)
                if request is not None:
                    self._route(transport, request)
            except http1.BadRequest as e:
                transport.sendall(http1.response(HTTPStatus.BAD_REQUEST, body=str(e)))
        except OSError as e:  # ssl.SSLError included
            log.debug("streaming connection ended: %s", e)
        except Exception:
            log.exception("streaming connection failed")
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                self._sockets.discard(sock)
                self._threads.discard(threading.current_thread())

    def _route(self, transport: Transport, req: http1.Request) -> None:
        parts = req.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("exec", "attach", "portforward"):
            transport.sendall(http1.response(HTTPStatus.NOT_FOUND, body="not found"))
            return
        if req.method not in ("GET", "POST"):
            transport.sendall(http1.response(HTTPStatus.METHOD_NOT_ALLOWED, {"Allow": "GET, POST"}))
            return
        stream_request = self.tokens.take(parts[0], parts[1])
        if stream_request is None:
            body = "unknown or expired token"
            transport.sendall(http1.response(HTTPStatus.NOT_FOUND, body=body))
            return
        upgrade = req.has_token("Connection", "upgrade")
        if upgrade and req.has_token("Upgrade", "websocket"):
            if isinstance(stream_request, PortForwardRequest):
                self._portforward_websocket(transport, req, stream_request)
            else:
                self._remotecommand_websocket(transport, req, stream_request)
        elif upgrade and req.has_token("Upgrade", "SPDY/3.1"):
            if isinstance(stream_request, PortForwardRequest):
                self._portforward_spdy(transport, req, stream_request)
            else:
                self._remotecommand_spdy(transport, req, stream_request)
        else:
            body = "unable to upgrade: missing upgrade headers in request"
            transport.sendall(http1.response(HTTPStatus.BAD_REQUEST, body=body))

    def _negotiate_spdy(
        self, transport: Transport, req: http1.Request, supported: tuple[str, ...]
    ) -> str | None:
        """Answer the upgrade; the client's order of X-Stream-Protocol-Version wins, as in
        k8s httpstream. A client naming none gets the oldest protocol."""
        offered = req.header_values("X-Stream-Protocol-Version")
        chosen = next((p for p in offered if p in supported), None)
        if offered and chosen is None:
            body = (
                "unable to upgrade: unable to negotiate protocol: "
                f"client supports {offered}, server accepts {list(supported)}"
            )
            headers = {"X-Accepted-Stream-Protocol-Versions": ", ".join(supported)}
            transport.sendall(http1.response(HTTPStatus.FORBIDDEN, headers, body))
            return None
        headers = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}
        if chosen:
            headers["X-Stream-Protocol-Version"] = chosen
        transport.sendall(http1.response(HTTPStatus.SWITCHING_PROTOCOLS, headers))
        return chosen or ""

    def _negotiate_websocket(
        self, transport: Transport, req: http1.Request, supported: tuple[str, ...]
    ) -> str | None:
        offered = req.header_values("Sec-WebSocket-Protocol")
        if not offered:
            return ""
        chosen = next((p for p in offered if p and p in supported), None)
        if chosen is None:
            body = f"requested protocol(s) are not supported: {offered}; supports {supported}"
            transport.sendall(http1.response(HTTPStatus.FORBIDDEN, body=body))
        return chosen

    @staticmethod
    def _spdy_session(
        handler: threading.Thread,
        incoming: queue.Queue[SpdyStream | None],
        conn: SpdyConnection,
    ) -> None:
        """Read the connection in this thread while `handler` runs the session."""
        handler.start()
        try:
            conn.serve()
        finally:
            incoming.put(None)
            handler.join()

    def _remotecommand_spdy(
        self, transport: Transport, req: http1.Request, request: ExecRequest | AttachRequest
    ) -> None:
        protocol = self._negotiate_spdy(transport, req, remotecommand.SPDY_PROTOCOLS)
        if protocol is None:
            return
        incoming: queue.Queue[SpdyStream | None] = queue.Queue()
        accepting = threading.Event()
        accepting.set()

        def on_stream(stream: SpdyStream) -> bool:
            if not accepting.is_set():
                return False
            incoming.put(stream)
            return True

        conn = SpdyConnection(
            transport,
            server=True,
            idle_timeout=self.idle_timeout,
            on_stream=on_stream,
            initial_bytes=req.rest,
        )
        expected = remotecommand.expected_stream_types(
            request, remotecommand.spdy_resize_supported(protocol)
        )

        def run() -> None:
            try:
                streams = self._collect_streams(incoming, expected)
                accepting.clear()
                if streams is None:
                    return
                channels = remotecommand.Channels(
                    stdin=streams.get("stdin"),
                    stdout=streams.get("stdout"),
                    stderr=streams.get("stderr"),
                    error=streams.get("error"),
                    resize=streams.get("resize"),
                )
                remotecommand.run_session(self.backend, request, channels, protocol, conn.closed)
            finally:
                conn.close()

        handler = threading.Thread(target=run, daemon=True, name="crisp-remotecommand")
        self._spdy_session(handler, incoming, conn)

    def _collect_streams(
        self, incoming: queue.Queue[SpdyStream | None], expected: set[str]
    ) -> dict[str, SpdyStream] | None:
        """The streams of `expected` types, or None if the client did not open them all in
        time or went away first."""
        streams: dict[str, SpdyStream] = {}
        end = time.monotonic() + self.stream_creation_timeout
        while set(streams) != expected:
            remaining = end - time.monotonic()
            if remaining <= 0:
                log.info("client did not create streams %s in time", expected - set(streams))
                return None
            try:
                stream = incoming.get(timeout=remaining)
            except queue.Empty:
                continue
            if stream is None:
                return None
            kind = stream.headers.get("streamtype", "")
            if kind in expected and kind not in streams:
                streams[kind] = stream
            else:
                stream.reset()
        return streams

    def _remotecommand_websocket(
        self, transport: Transport, req: http1.Request, request: ExecRequest | AttachRequest
    ) -> None:
        protocol = self._negotiate_websocket(transport, req, remotecommand.WEBSOCKET_PROTOCOLS)
        if protocol is None:
            return
        from cri.streaming.websocket import ChannelWebSocket

        ws = ChannelWebSocket(transport, req, protocol, 5, self.idle_timeout)
        ws.accept()
        ch = ws.channels
        channels = remotecommand.Channels(
            stdin=ch[remotecommand.STDIN] if request.stdin else None,
            stdout=ch[remotecommand.STDOUT] if request.stdout else None,
            stderr=ch[remotecommand.STDERR] if request.stderr and not request.tty else None,
            error=ch[remotecommand.ERROR],
            resize=ch[remotecommand.RESIZE] if request.tty else None,
        )
        # An empty message on the first writable channel tells the client the session is up.
        first = next(c for c in (channels.stdout, channels.stderr, channels.error) if c)
        first.write(b"")

        def run() -> None:
            try:
                remotecommand.run_session(self.backend, request, channels, protocol, ws.closed)
            finally:
                ws.close()

        handler = threading.Thread(target=run, daemon=True, name="crisp-remotecommand")
        handler.start()
        try:
            ws.serve()
        finally:
            handler.join()

    def _portforward_spdy(
        self, transport: Transport, req: http1.Request, request: PortForwardRequest
    ) -> None:
        if self._negotiate_spdy(transport, req, (portforward.SPDY_PROTOCOL,)) is None:
            return
        incoming: queue.Queue[SpdyStream | None] = queue.Queue()

        def on_stream(stream: SpdyStream) -> bool:
            incoming.put(stream)
            return True

        conn = SpdyConnection(
            transport,
            server=True,
            idle_timeout=self.idle_timeout,
            on_stream=on_stream,
            initial_bytes=req.rest,
        )
        forwarder = portforward.Forwarder(self.backend, request.pod_sandbox_id)

        def run() -> None:
            try:
                portforward.serve_spdy(forwarder, incoming, self.stream_creation_timeout)
            finally:
                conn.close()

        handler = threading.Thread(target=run, daemon=True, name="crisp-portforward")
        self._spdy_session(handler, incoming, conn)

    def _portforward_websocket(
        self, transport: Transport, req: http1.Request, request: PortForwardRequest
    ) -> None:
        try:
            ports = portforward.websocket_ports(req.query)
        except ValueError as e:
            transport.sendall(http1.response(HTTPStatus.BAD_REQUEST, body=str(e)))
            return
        protocol = self._negotiate_websocket(transport, req, portforward.WEBSOCKET_PROTOCOLS)
        if protocol is None:
            return
        from cri.streaming.websocket import ChannelWebSocket

        ws = ChannelWebSocket(transport, req, protocol, 2 * len(ports), self.idle_timeout)
        ws.accept()
        forwarder = portforward.Forwarder(self.backend, request.pod_sandbox_id)

        def run() -> None:
            try:
                portforward.serve_websocket(forwarder, ports, list(ws.channels), ws.closed)
            finally:
                ws.close()

        handler = threading.Thread(target=run, daemon=True, name="crisp-portforward")
        handler.start()
        try:
            ws.serve()
        finally:
            handler.join()
