"""A scriptable registry on loopback for what a real one will not do on demand: stall in
the middle of a blob, fail with 503 a few times, redirect blobs to another host, speak TLS
with a certificate of the test's own."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from critest import images as ci


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Behaviour:
    """Hooks by request; each returns True when it answered the request itself."""

    blob: Callable[[BaseHTTPRequestHandler, ci.Blob], bool] | None = None
    any: Callable[[BaseHTTPRequestHandler], bool] | None = None
    seen: list[Seen] = field(default_factory=list)


class FakeRegistry:
    def __init__(
        self,
        repository: str = "",
        image: ci.Image | None = None,
        tag: str = "v1",
        tls: ssl.SSLContext | None = None,
    ):
        self._tls = tls
        self._repository = repository
        self._image = image
        self._tag = tag
        self.behaviour = Behaviour()
        self.release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake._answer(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self._tls is not None:
            self._server.socket = self._tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        self.behaviour.seen.append(Seen("GET", request.path, dict(request.headers.items())))
        if self.behaviour.any is not None and self.behaviour.any(request):
            return
        image = self._image
        prefix = f"/v2/{self._repository}/"
        if image is None or not request.path.startswith(prefix):
            return send(request, 404, b"{}")
        rest = request.path[len(prefix) :]
        if rest in (f"manifests/{self._tag}", f"manifests/{image.digest}"):
            return send(request, 200, image.manifest.data, image.manifest.media_type)
        for blob in (image.config, *image.layers):
            if rest == f"blobs/{blob.digest}":
                if self.behaviour.blob is not None and self.behaviour.blob(request, blob):
                    return None
                return send(request, 200, blob.data)
        return send(request, 404, b"{}")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def send(
    request: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str = "application/octet-stream",
    headers: dict[str, str] | None = None,
) -> None:
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        request.send_header(key, value)
    request.end_headers()
    request.wfile.write(body)
