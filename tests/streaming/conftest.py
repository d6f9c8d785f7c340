"""Fixtures: a streaming server on loopback with a real local backend, and a network
namespace serving echo and HTTP on its loopback. Everything is stopped and closed after."""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from cri.streaming import StreamingServer
from tests.streaming.backends import LocalBackend
from tests.streaming.netns import NetNs, run_in


def _children() -> set[int]:
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/children") as f:
            found.update(int(pid) for pid in f.read().split())
    return found


def _settled(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """A test leaves no child process, thread or file descriptor behind."""
    threads, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))
    yield
    assert _settled(lambda: not _children()), f"child processes left: {_children()}"
    assert _settled(lambda: threading.active_count() <= threads), threading.enumerate()
    assert _settled(lambda: len(os.listdir("/proc/self/fd")) <= fds), os.listdir("/proc/self/fd")


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    backend = LocalBackend()
    yield backend
    for target in backend.containers.values():
        target.stop()


@pytest.fixture
def server(backend: LocalBackend) -> Iterator[StreamingServer]:
    server = StreamingServer(backend, "127.0.0.1:0", idle_timeout=60.0, stream_creation_timeout=3.0)
    server.start()
    yield server
    server.close()


class EchoServer:
    """Echoes every connection's bytes back until the client half-closes."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.port: int = listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve)
        self._accept.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._echo, args=(conn,))
            thread.start()
            self._threads.append(thread)

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._accept.join()
        for thread in self._threads:
            thread.join(5)


class PageHandler(http.server.BaseHTTPRequestHandler):
    page = b"<html>hello from the pod</html>\n"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.page)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Pod:
    netns: NetNs | None
    echo: EchoServer
    web: http.server.ThreadingHTTPServer
    web_thread: threading.Thread

    @property
    def web_port(self) -> int:
        return int(self.web.server_address[1])


def _start_pod(netns: NetNs | None) -> Pod:
    fd = netns.fd if netns else None
    echo = EchoServer(netns.listen() if netns else _host_listener())
    web = run_in(fd, lambda: http.server.ThreadingHTTPServer(("127.0.0.1", 0), PageHandler))
    web_thread = threading.Thread(target=web.serve_forever, kwargs={"poll_interval": 0.05})
    web_thread.start()
    return Pod(netns, echo, web, web_thread)


def _host_listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def _stop_pod(pod: Pod) -> None:
    pod.echo.close()
    pod.web.shutdown()
    pod.web.server_close()
    pod.web_thread.join()
    if pod.netns:
        pod.netns.close()


@pytest.fixture
def pod(backend: LocalBackend) -> Iterator[Pod]:
    """A pod with its own network namespace; pod sandbox ID "pod-netns"."""
    started = _start_pod(NetNs())
    backend.pods["pod-netns"] = started.netns.fd if started.netns else None
    yield started
    _stop_pod(started)


@pytest.fixture
def host_pod(backend: LocalBackend) -> Iterator[Pod]:
    """A host-network pod: its servers listen on the host's loopback; ID "pod-host"."""
    started = _start_pod(None)
    backend.pods["pod-host"] = None
    yield started
    _stop_pod(started)
