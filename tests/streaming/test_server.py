"""The HTTP side: URLs, token refusal, upgrade and protocol negotiation, TLS, timeouts,
concurrency and shutdown."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri.streaming import ExecRequest, PortForwardRequest, StreamingServer, TokenRegistry
from tests.streaming.backends import EXEC_CONTAINER, LocalBackend
from tests.streaming.clients import (
    SpdyClient,
    UpgradeRefused,
    WsClient,
    exit_code,
    http_request,
    read_all,
    spdy_remotecommand,
)

ECHO = ExecRequest(EXEC_CONTAINER, ("echo", "hi"), stderr=False)
SPDY_HEADERS = [
    ("Connection", "Upgrade"),
    ("Upgrade", "SPDY/3.1"),
    ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
]


def test_url_names_the_bound_port_and_the_verb(server: StreamingServer) -> None:
    host, port = server.address.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    assert server.url_for(ECHO).startswith(f"http://127.0.0.1:{port}/exec/")
    assert "/portforward/" in server.url_for(PortForwardRequest("p"))


def test_reused_token_is_refused(server: StreamingServer) -> None:
    url = server.url_for(ECHO)
    s = spdy_remotecommand(url, stderr=False)
    assert s.stdout and read_all(s.stdout) == b"hi\n"
    s.client.close()
    assert http_request(url, SPDY_HEADERS).status == 404


def test_expired_token_is_refused(backend: LocalBackend) -> None:
    server = StreamingServer(backend, tokens=TokenRegistry(ttl=0.1))
    server.start()
    try:
        url = server.url_for(ECHO)
        time.sleep(0.2)
        response = http_request(url, SPDY_HEADERS)
        assert response.status == 404
        assert response.body == b"unknown or expired token"
    finally:
        server.close()


def test_token_of_another_verb_is_refused(server: StreamingServer) -> None:
    url = server.url_for(ECHO).replace("/exec/", "/attach/")
    assert http_request(url, SPDY_HEADERS).status == 404


def test_unknown_path_is_not_found(server: StreamingServer) -> None:
    assert http_request(f"{server.base_url}/metrics", []).status == 404


def test_plain_http_without_upgrade_is_a_bad_request(server: StreamingServer) -> None:
    response = http_request(server.url_for(ECHO), [])
    assert response.status == 400
    assert b"missing upgrade headers" in response.body


def test_unsupported_spdy_protocol_is_forbidden(server: StreamingServer) -> None:
    with pytest.raises(UpgradeRefused) as refused:
        SpdyClient(server.url_for(ECHO), ["v9.channel.k8s.io"])
    assert refused.value.status == 403
    assert "unable to negotiate protocol" in refused.value.body


def test_portforward_negotiation(server: StreamingServer) -> None:
    with pytest.raises(UpgradeRefused):
        SpdyClient(server.url_for(PortForwardRequest("p")), ["v4.channel.k8s.io"])
    response = http_request(
        server.url_for(PortForwardRequest("p")),
        [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", "x")],
    )
    assert response.status == 400
    assert b'"port" is required' in response.body


def test_malformed_websocket_handshake_is_a_bad_request(server: StreamingServer) -> None:
    headers = [("Connection", "Upgrade"), ("Upgrade", "websocket")]  # no key, no version
    response = http_request(server.url_for(ECHO), headers)
    assert response.status == 400
    assert b"bad WebSocket handshake" in response.body


def test_unsupported_websocket_protocol_is_forbidden(server: StreamingServer) -> None:
    with pytest.raises(UpgradeRefused) as refused:
        WsClient(server.url_for(ECHO), ["v9.channel.k8s.io"], channels=5)
    assert refused.value.status == 403


def test_streams_not_created_in_time_close_the_connection(server: StreamingServer) -> None:
    client = SpdyClient(server.url_for(ECHO), ["v4.channel.k8s.io"])
    client.open({"streamtype": "error"})  # but never stdout
    start = time.monotonic()
    client.conn.closed.wait(10)
    assert client.conn.closed.is_set()
    assert 2.5 < time.monotonic() - start < 8  # the fixture's 3 s creation timeout


def test_idle_connection_is_closed(backend: LocalBackend) -> None:
    server = StreamingServer(backend, idle_timeout=0.5, stream_creation_timeout=5)
    server.start()
    try:
        request = ExecRequest(EXEC_CONTAINER, ("sleep", "600"), stderr=False)
        s = spdy_remotecommand(server.url_for(request), stderr=False)
        assert s.client.conn.closed.wait(5)
    finally:
        server.close()


def test_many_concurrent_exec_sessions(server: StreamingServer) -> None:
    failures: list[BaseException] = []

    def one(i: int) -> None:
        try:
            request = ExecRequest(EXEC_CONTAINER, ("sh", "-c", f"echo {i}; exit {i % 5}"))
            s = spdy_remotecommand(server.url_for(request))
            assert s.stdout and read_all(s.stdout) == f"{i}\n".encode()
            assert exit_code(read_all(s.error)) == i % 5
            s.client.close()
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures


def test_close_ends_live_sessions(backend: LocalBackend) -> None:
    server = StreamingServer(backend)
    server.start()
    request = ExecRequest(EXEC_CONTAINER, ("sleep", "600"), stderr=False)
    s = spdy_remotecommand(server.url_for(request), stderr=False)
    deadline = time.monotonic() + 5
    while not backend.exec_pids and time.monotonic() < deadline:
        time.sleep(0.01)
    server.close()
    assert s.client.conn.closed.wait(5)
    with pytest.raises(ProcessLookupError):
        for _ in range(100):
            os.kill(backend.exec_pids[0], 0)
            time.sleep(0.05)
    with pytest.raises(OSError):
        http_request(server.url_for(ECHO), SPDY_HEADERS)


@pytest.fixture
def certificate(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    yield cert, key


def test_tls(backend: LocalBackend, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server = StreamingServer(backend, tls_cert_file=str(cert), tls_key_file=str(key))
    server.start()
    try:
        url = server.url_for(ECHO)
        assert url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        s = spdy_remotecommand(url, stderr=False, tls=context)
        assert s.stdout and read_all(s.stdout) == b"hi\n"
        assert exit_code(read_all(s.error)) == 0
        s.client.close()
        big = ExecRequest(EXEC_CONTAINER, ("head", "-c", "2000000", "/dev/zero"), stderr=False)
        ws = WsClient(server.url_for(big), ["v4.channel.k8s.io"], channels=5, tls=context)
        assert len(ws.collect(1)) == 2_000_000
    finally:
        server.close()


def test_ipv6_loopback(backend: LocalBackend) -> None:
    if not socket.has_ipv6 or not os.path.exists("/proc/net/if_inet6"):
        pytest.skip("no IPv6 on this host")
    server = StreamingServer(backend, "[::1]:0")
    server.start()
    try:
        url = server.url_for(ECHO)
        assert url.startswith("http://[::1]:")
        s = spdy_remotecommand(url, stderr=False)
        assert s.stdout and read_all(s.stdout) == b"hi\n"
        s.client.close()
    finally:
        server.close()


def test_bad_address_fails_at_construction(backend: LocalBackend) -> None:
    with pytest.raises(ValueError, match="host:port"):
        StreamingServer(backend, "localhost")
    with pytest.raises(OSError):
        StreamingServer(backend, "192.0.2.1:0")  # not an address of this host
