"""Streaming: Exec, Attach and PortForward answer with a URL on the runtime's streaming
server, and the protocols served there (WebSocket and SPDY/3.1) carry exec, attach and
port-forward traffic (upstream streaming.go). Every case runs over both transports."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from collections.abc import Callable
from typing import Literal, Protocol

from criapi import api_pb2 as pb
from critest.case import CaseFunc, case, expect, expect_eq
from critest.fixture import RPC_TIMEOUT, Fixture
from critest.spdy import SpdyStream
from critest.websocket import (
    EXEC_PROTOCOLS,
    PORT_FORWARD_PROTOCOLS,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    Received,
    Stream,
    StreamError,
    port_forward_data,
)

AREA = "streaming"
PAGE = "critest forwarded page"
Transport = Literal["WebSocket", "SPDY"]
_TRANSPORTS: tuple[Transport, ...] = ("WebSocket", "SPDY")


class Channel(Protocol):
    def send(self, channel: int, data: bytes) -> None: ...

    def until(
        self, done: Callable[[Received], bool] | None = None, timeout: float = 30
    ) -> Received: ...

    def close(self) -> None: ...


def _url(url: str, what: str) -> str:
    parts = urllib.parse.urlsplit(url)
    expect(parts.scheme in ("http", "https"), f"{what} URL {url!r} is not http(s)")
    expect(parts.hostname and parts.port, f"{what} URL {url!r} names no host and port")
    return url


def _exec_stream(f: Fixture, transport: Transport, url: str, *, tty: bool, stdin: bool) -> Channel:
    stream: Channel
    if transport == "SPDY":
        stream = SpdyStream.exec(url, stdin=stdin, stdout=True, stderr=not tty, tty=tty)
    else:
        stream = Stream(url, EXEC_PROTOCOLS)
    f.defer(f"close the {transport} stream", stream.close)
    return stream


def _exec(f: Fixture, transport: Transport, cmd: list[str], *, tty: bool, stdin: bool) -> Channel:
    _, container_id = f.pod_with_container()
    request = pb.ExecRequest(
        container_id=container_id, cmd=cmd, tty=tty, stdin=stdin, stdout=True, stderr=not tty
    )
    url = _url(f.rt.Exec(request, timeout=RPC_TIMEOUT).url, "Exec")
    return _exec_stream(f, transport, url, tty=tty, stdin=stdin)


def exec_plain(f: Fixture, transport: Transport) -> None:
    stream = _exec(f, transport, ["sh", "-c", "echo hello; echo oops >&2"], tty=False, stdin=False)
    received = stream.until()
    expect_eq(received.text(STDOUT), "hello\n", "stdout")
    expect_eq(received.text(STDERR), "oops\n", "stderr")
    expect_eq(received.exit_code(), 0, "exit status")


def exec_exit_code(f: Fixture, transport: Transport) -> None:
    received = _exec(f, transport, ["sh", "-c", "exit 7"], tty=False, stdin=False).until()
    expect_eq(received.exit_code(), 7, "exit code in the stream status")


def exec_tty(f: Fixture, transport: Transport) -> None:
    stream = _exec(f, transport, ["sh"], tty=True, stdin=True)
    stream.send(STDIN, b"echo $((6*7)) tty:$(tty >/dev/null && echo yes)\nexit\n")
    received = stream.until()
    expect("42 tty:yes" in received.text(STDOUT), f"tty output: {received.text(STDOUT)!r}")
    expect_eq(received.exit_code(), 0, "exit status")


def exec_tty_resize(f: Fixture, transport: Transport) -> None:
    stream = _exec(f, transport, ["sh"], tty=True, stdin=True)
    stream.send(RESIZE, json.dumps({"Width": 100, "Height": 30}).encode())
    stream.send(STDIN, b"stty size\n")
    first = stream.until(lambda r: b"30 100" in r.channels[STDOUT])
    expect("30 100" in first.text(STDOUT), f"first size: {first.text(STDOUT)!r}")
    stream.send(RESIZE, json.dumps({"Width": 120, "Height": 40}).encode())
    # A resize reaches the terminal asynchronously in every runtime: ask until it shows.
    deadline = time.monotonic() + 10
    while True:
        stream.send(STDIN, b"stty size\n")
        try:
            stream.until(lambda r: b"40 120" in r.channels[STDOUT], timeout=0.5)
            break
        except StreamError:
            if time.monotonic() > deadline:
                raise
    stream.send(STDIN, b"exit\n")
    received = stream.until()
    expect("40 120" in received.text(STDOUT), f"size after resize: {received.text(STDOUT)!r}")
    expect_eq(received.exit_code(), 0, "exit status")


def exec_stdin(f: Fixture, transport: Transport) -> None:
    stream = _exec(f, transport, ["sh", "-c", "read line; echo got:$line"], tty=False, stdin=True)
    stream.send(STDIN, b"ping\n")
    expect_eq(stream.until().text(STDOUT), "got:ping\n", "stdout")


def attach(f: Fixture, transport: Transport) -> None:
    config = f.container_config(command=["sh"], stdin=True)
    _, container_id = f.pod_with_container(config)
    request = pb.AttachRequest(container_id=container_id, stdin=True, stdout=True, stderr=True)
    url = _url(f.rt.Attach(request, timeout=RPC_TIMEOUT).url, "Attach")
    stream = _exec_stream(f, transport, url, tty=False, stdin=True)
    stream.send(STDIN, b"echo attached-$((1+1))\n")
    received = stream.until(lambda r: b"attached-2" in r.channels[STDOUT])
    expect_eq(received.text(STDOUT), "attached-2\n", "output of the attached shell")


def _forward_page(f: Fixture, transport: Transport, pod_id: str, port: int) -> bytes:
    request = pb.PortForwardRequest(pod_sandbox_id=pod_id, port=[port])

    def fetch() -> bytes | None:
        # A URL serves one connection, so every attempt (the server may not listen yet)
        # asks for a new one.
        url = _url(f.rt.PortForward(request, timeout=RPC_TIMEOUT).url, "PortForward")
        stream: Channel
        if transport == "SPDY":
            stream = SpdyStream.port_forward(url, port)
        else:
            stream = Stream(url, PORT_FORWARD_PROTOCOLS, {"port": str(port)})
        try:
            stream.send(0, b"GET / HTTP/1.0\r\n\r\n")
            received = stream.until(lambda r: PAGE.encode() in r.channels[0])
        finally:
            stream.close()
        data = received.channels[0] if transport == "SPDY" else port_forward_data(received)
        return data or None

    return f.wait_for(fetch, 30, f"a page forwarded from port {port}")


def _server_config(f: Fixture, port: int) -> pb.ContainerConfig:
    script = f"mkdir -p /www && echo '{PAGE}' > /www/index.html && exec httpd -f -p {port} -h /www"
    return f.container_config(command=["sh", "-c", script])


def port_forward(f: Fixture, transport: Transport) -> None:
    pod_config = f.pod_config()
    pod_id = f.run_pod(pod_config)
    f.run_container(pod_id, pod_config, _server_config(f, 80))
    data = _forward_page(f, transport, pod_id, 80)
    expect(data.startswith(b"HTTP/1.") and PAGE.encode() in data, f"answer: {data[:200]!r}")


def port_forward_host_network(f: Fixture, transport: Transport) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    pod_config = f.pod_config()
    pod_config.linux.security_context.namespace_options.network = pb.NODE
    pod_id = f.run_pod(pod_config)
    f.run_container(pod_id, pod_config, _server_config(f, port))
    data = _forward_page(f, transport, pod_id, port)
    expect(data.startswith(b"HTTP/1.") and PAGE.encode() in data, f"answer: {data[:200]!r}")


_PLAIN = "runtime should support exec with tty=false and stdin=false [Conformance]"
_CASES: list[tuple[str, str, Callable[[Fixture, Transport], None]]] = [
    ("exec without tty or stdin", _PLAIN, exec_plain),
    ("exec reports a non-zero exit", _PLAIN, exec_exit_code),
    ("exec with stdin and no tty", _PLAIN, exec_stdin),
    (
        "exec with tty and stdin",
        "runtime should support exec with tty=true and stdin=true [Conformance]",
        exec_tty,
    ),
    ("exec with tty follows terminal resizes", "", exec_tty_resize),
    ("attach to a container", "runtime should support attach [Conformance]", attach),
    ("port-forward into a pod", "runtime should support portforward [Conformance]", port_forward),
    (
        "port-forward into a host-network pod",
        "runtime should support portforward in host network",
        port_forward_host_network,
    ),
]


def _over(body: Callable[[Fixture, Transport], None], transport: Transport) -> CaseFunc:
    return lambda f: body(f, transport)


for _name, _spec, _body in _CASES:
    for _transport in _TRANSPORTS:
        _title = f"{_name} ({_transport})"
        case(_title, area=AREA, spec=_spec, tags=[_transport.lower()])(_over(_body, _transport))
