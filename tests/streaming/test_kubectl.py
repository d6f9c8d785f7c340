"""Interop with the real client: kubectl (client-go, moby/spdystream, gorilla websocket)
against the streaming server, through a stand-in API server that does what kubelet does with
an exec or port-forward: ask for a URL, then proxy the upgraded connection unchanged.

Skipped where kubectl is not installed. All traffic stays on loopback.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import termios
import threading
from collections.abc import Iterator
from http import HTTPStatus
from urllib.parse import urlsplit

import pytest

from cri.streaming import (
    AttachRequest,
    ExecRequest,
    PortForwardRequest,
    StreamingServer,
    http1,
)
from cri.streaming.transport import SocketTransport
from tests.streaming.backends import EXEC_CONTAINER, AttachTarget, LocalBackend
from tests.streaming.conftest import PageHandler, Pod

KUBECTL = shutil.which("kubectl")
ATTACH_CONTAINER = "attached"
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
    "spec": {"containers": [{"name": "c", "image": "busybox", "stdin": True}]},
    "status": {"phase": "Running"},
}
# Just enough discovery for kubectl to map "p" to a pod.
DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "pods",
                "singularName": "pod",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get", "list"],
                "shortNames": ["po"],
            }
        ],
    },
    "/api/v1/namespaces/default/pods/p": POD,
}


def _splice(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


class FakeApiServer:
    """Serves GET pod, and turns exec/portforward into a streaming URL it proxies to."""

    def __init__(self, streaming: StreamingServer, pod_sandbox_id: str) -> None:
        self.streaming = streaming
        self.pod_sandbox_id = pod_sandbox_id
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.upgrades: list[str] = []
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accept = threading.Thread(target=self._serve)
        self._accept.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._sockets.append(conn)
            thread = threading.Thread(target=self._handle, args=(conn,))
            thread.start()
            self._threads.append(thread)

    def _handle(self, conn: socket.socket) -> None:
        transport = SocketTransport(conn)
        request = http1.read_request(transport)
        if request is None:
            return
        verb = request.path.rsplit("/", 1)[-1]
        if request.method == "GET" and request.path in DISCOVERY:
            body = json.dumps(DISCOVERY[request.path])
            headers = {"Content-Type": "application/json"}
            transport.sendall(http1.response(HTTPStatus.OK, headers, body))
        elif verb in ("exec", "attach", "portforward"):
            self.upgrades.append(request.header_values("Upgrade")[0])
            self._proxy(conn, request, verb)
        else:
            body = json.dumps({"kind": "Status", "status": "Failure", "code": 404})
            transport.sendall(http1.response(HTTPStatus.NOT_FOUND, body=body))
        conn.close()

    def _proxy(self, conn: socket.socket, request: http1.Request, verb: str) -> None:
        q = request.query
        streaming_request: ExecRequest | AttachRequest | PortForwardRequest
        if verb == "attach":
            streaming_request = AttachRequest(
                ATTACH_CONTAINER,
                stdin=q.get("stdin") == ["true"],
                stdout=q.get("stdout") == ["true"],
                stderr=q.get("stderr") == ["true"],
            )
        elif verb == "exec":
            tty = q.get("tty") == ["true"]
            streaming_request = ExecRequest(
                EXEC_CONTAINER,
                tuple(q["command"]),
                tty=tty,
                stdin=q.get("stdin") == ["true"],
                stdout=q.get("stdout") == ["true"],
                stderr=q.get("stderr") == ["true"] and not tty,
            )
        else:
            streaming_request = PortForwardRequest(self.pod_sandbox_id)
        url = urlsplit(self.streaming.url_for(streaming_request))
        head = request.raw_head.split(b"\r\n", 1)[1]
        assert url.hostname and url.port
        upstream = socket.create_connection((url.hostname, url.port))
        upstream.sendall(f"{request.method} {url.path} HTTP/1.1\r\n".encode() + head + request.rest)
        back = threading.Thread(target=_splice, args=(upstream, conn))
        back.start()
        _splice(conn, upstream)
        back.join()
        upstream.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._accept.join()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(10)


@pytest.fixture
def apiserver(server: StreamingServer) -> Iterator[FakeApiServer]:
    api = FakeApiServer(server, "pod-netns")
    yield api
    api.close()


@pytest.mark.parametrize("websockets", [False, True], ids=["spdy", "websocket"])
def test_kubectl_exec(apiserver: FakeApiServer, websockets: bool) -> None:
    env = dict(os.environ, KUBECONFIG="/dev/null")
    env["KUBECTL_REMOTE_COMMAND_WEBSOCKETS"] = "true" if websockets else "false"
    argv = [KUBECTL or "kubectl", "--server", apiserver.url, "exec", "-i", "p", "--"]
    result = subprocess.run(
        [*argv, "sh", "-c", "tr a-z A-Z; echo err >&2; exit 3"],
        input=b"big input\n" * 50000,
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert result.stdout == b"BIG INPUT\n" * 50000
    assert result.stderr.startswith(b"err\n"), result.stderr
    assert result.returncode == 3
    assert apiserver.upgrades[-1].lower() == ("websocket" if websockets else "spdy/3.1")


def test_kubectl_port_forward(apiserver: FakeApiServer, pod: Pod) -> None:
    env = dict(os.environ, KUBECONFIG="/dev/null", KUBECTL_PORT_FORWARD_WEBSOCKETS="false")
    argv = [KUBECTL or "kubectl", "--server", apiserver.url, "port-forward", "p"]
    proc = subprocess.Popen(
        [*argv, f":{pod.web_port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout
        line = proc.stdout.readline().decode()
        match = re.search(r"127\.0\.0\.1:(\d+) ->", line)
        assert match, line + (proc.stderr.read().decode() if proc.stderr else "")
        local = int(match.group(1))
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", local), timeout=10) as conn:
                conn.sendall(b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")
                response = b""
                while data := conn.recv(65536):
                    response += data
            assert response.endswith(PageHandler.page)
        assert apiserver.upgrades == ["SPDY/3.1"]
    finally:
        proc.terminate()
        proc.wait(10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe:
                pipe.close()


def test_kubectl_attach(apiserver: FakeApiServer, backend: LocalBackend) -> None:
    script = 'read line; echo "got $line"; echo bye >&2'
    backend.containers[ATTACH_CONTAINER] = AttachTarget(("sh", "-c", script))
    env = dict(os.environ, KUBECONFIG="/dev/null", KUBECTL_REMOTE_COMMAND_WEBSOCKETS="false")
    result = subprocess.run(
        [KUBECTL or "kubectl", "--server", apiserver.url, "attach", "-i", "p", "-c", "c"],
        input=b"hello\n",
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert b"got hello\n" in result.stdout, result.stderr
    assert b"bye" in result.stderr
    assert result.returncode == 0


def test_kubectl_exec_tty_starts_with_the_terminal_size(apiserver: FakeApiServer) -> None:
    # kubectl needs a terminal on stdin for -t; give it a pty of a known size.
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    env = dict(os.environ, KUBECONFIG="/dev/null", KUBECTL_REMOTE_COMMAND_WEBSOCKETS="false")
    argv = [KUBECTL or "kubectl", "--server", apiserver.url, "exec", "-it", "p", "--"]
    try:
        proc = subprocess.Popen(
            [*argv, "stty", "size"], stdin=slave, stdout=slave, stderr=slave, env=env
        )
        os.close(slave)
        slave = -1
        output = b""
        with contextlib.suppress(OSError):  # EIO once kubectl is gone
            while data := os.read(master, 4096):
                output += data
        assert proc.wait(30) == 0
        assert b"33 111" in output, output
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
