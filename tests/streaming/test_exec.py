"""Exec end to end over SPDY/3.1 and WebSocket, against real local processes."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from cri.streaming import ExecRequest, StreamingServer
from tests.streaming.backends import EXEC_CONTAINER, LocalBackend
from tests.streaming.clients import (
    WsClient,
    exit_code,
    read_all,
    resize_message,
    spdy_remotecommand,
)

OUT_ERR_3 = ("sh", "-c", "echo out; echo err >&2; exit 3")


def _exec(cmd: tuple[str, ...], **flags: bool) -> ExecRequest:
    return ExecRequest(EXEC_CONTAINER, cmd, **flags)


def test_spdy_exec_separates_streams_and_reports_exit_code(server: StreamingServer) -> None:
    s = spdy_remotecommand(server.url_for(_exec(OUT_ERR_3)))
    assert s.client.protocol == "v4.channel.k8s.io"
    assert s.stdout and s.stderr
    assert read_all(s.stdout) == b"out\n"
    assert read_all(s.stderr) == b"err\n"
    status = read_all(s.error)
    assert exit_code(status) == 3
    assert json.loads(status) == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: exit status 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
    s.client.close()


def test_spdy_exec_success_status(server: StreamingServer) -> None:
    s = spdy_remotecommand(server.url_for(_exec(("true",))))
    assert s.stdout and s.stderr
    assert read_all(s.stdout) == read_all(s.stderr) == b""
    assert json.loads(read_all(s.error)) == {"metadata": {}, "status": "Success"}
    s.client.close()


@pytest.mark.parametrize("protocol", ["v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"])
def test_older_protocols_report_failures_as_text(server: StreamingServer, protocol: str) -> None:
    s = spdy_remotecommand(server.url_for(_exec(OUT_ERR_3)), protocols=(protocol,))
    assert s.client.protocol == protocol
    assert s.stdout and read_all(s.stdout) == b"out\n"
    assert read_all(s.error) == b"command terminated with non-zero exit code: exit status 3"
    s.client.close()


def test_client_protocol_order_wins(server: StreamingServer) -> None:
    protocols = ("v2.channel.k8s.io", "v4.channel.k8s.io")
    s = spdy_remotecommand(server.url_for(_exec(("true",))), protocols=protocols)
    assert s.client.protocol == "v2.channel.k8s.io"
    s.client.close()


def test_stdin_is_piped_and_closed(server: StreamingServer) -> None:
    request = _exec(("sh", "-c", "tr a-z A-Z; echo done"), stdin=True, stderr=False)
    s = spdy_remotecommand(server.url_for(request), stdin=True, stderr=False)
    assert s.stdin and s.stdout
    payload = b"hello streaming\n" * 20000  # well past the 64 KiB windows, both ways

    def feed() -> None:
        assert s.stdin
        s.stdin.write(payload)
        s.stdin.close()

    # Like kubectl, write stdin while reading stdout: tr blocks when nobody reads.
    feeder = threading.Thread(target=feed)
    feeder.start()
    assert read_all(s.stdout) == payload.upper() + b"done\n"
    feeder.join()
    assert exit_code(read_all(s.error)) == 0
    s.client.close()


def test_large_output_to_a_client_without_flow_control(server: StreamingServer) -> None:
    # spdystream never sends WINDOW_UPDATE; the server must not wait for one.
    request = _exec(("head", "-c", "3000000", "/dev/zero"), stderr=False)
    s = spdy_remotecommand(server.url_for(request), stderr=False, flow_control=False)
    assert s.stdout and len(read_all(s.stdout)) == 3_000_000
    assert exit_code(read_all(s.error)) == 0
    s.client.close()


def test_backend_error_is_an_internal_error_status(server: StreamingServer) -> None:
    request = ExecRequest("no-such-container", ("true",))
    s = spdy_remotecommand(server.url_for(request))
    status = json.loads(read_all(s.error))
    assert status["status"] == "Failure"
    assert status["reason"] == "InternalError"
    assert "container no-such-container not found" in status["message"]
    s.client.close()


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def test_client_going_away_kills_the_process(
    server: StreamingServer, backend: LocalBackend
) -> None:
    s = spdy_remotecommand(server.url_for(_exec(("sleep", "600"), stderr=False)), stderr=False)
    deadline = time.monotonic() + 5
    while not backend.exec_pids and time.monotonic() < deadline:
        time.sleep(0.01)
    (pid,) = backend.exec_pids
    s.client.drop()
    assert _wait_gone(pid)


def test_websocket_client_going_away_kills_the_process(
    server: StreamingServer, backend: LocalBackend
) -> None:
    request = _exec(("sleep", "600"), stdin=True, stderr=False)
    ws = WsClient(server.url_for(request), ["v5.channel.k8s.io"], channels=5)
    deadline = time.monotonic() + 5
    while not backend.exec_pids and time.monotonic() < deadline:
        time.sleep(0.01)
    (pid,) = backend.exec_pids
    ws.drop()
    assert _wait_gone(pid)


def test_tty_session_runs_a_shell_and_applies_resizes(server: StreamingServer) -> None:
    request = _exec(("sh", "-i"), tty=True, stdin=True, stderr=False)
    s = spdy_remotecommand(server.url_for(request), stdin=True, tty=True, stderr=False)
    assert s.stdin and s.stdout and s.resize and s.stderr is None
    output = bytearray()

    def collect() -> None:
        assert s.stdout
        while data := s.stdout.read():
            output.extend(data)

    collector = threading.Thread(target=collect)
    collector.start()

    def until(marker: bytes, command: bytes) -> None:
        assert s.stdin
        for _ in range(50):
            start = len(output)
            s.stdin.write(command)
            end = time.monotonic() + 0.5
            while marker not in output[start:] and time.monotonic() < end:
                time.sleep(0.01)
            if marker in output[start:]:
                return
        raise AssertionError(f"{marker!r} never appeared in {bytes(output)!r}")

    s.resize.write(resize_message(80, 24))
    until(b"24 80", b"stty size\n")
    # The resize stream and stdin are separate streams, so retry until the new size shows.
    s.resize.write(resize_message(123, 45))
    until(b"45 123", b"stty size\n")
    # The terminal echoes input, so the marker is one only the command's output holds.
    until(b"tty-2", b"test -t 0 && echo tty-$((1+1))\n")
    assert b"# " in output or b"$ " in output  # the shell's prompt
    s.stdin.write(b"exit 7\n")
    collector.join(10)
    assert exit_code(read_all(s.error)) == 7
    s.client.close()


def test_websocket_exec_v5_with_stdin_close_signal(server: StreamingServer) -> None:
    request = _exec(("sh", "-c", "cat; echo err >&2; exit 4"), stdin=True)
    ws = WsClient(server.url_for(request), ["v5.channel.k8s.io"], channels=5)
    assert ws.subprotocol == "v5.channel.k8s.io"
    ws.send(0, b"from stdin\n")
    ws.send(255, bytes([0]))  # v5: close stdin
    assert ws.collect(1) == b"from stdin\n"
    assert ws.channels[2].read() == b"err\n"
    assert exit_code(ws.channels[3].read()) == 4
    assert ws.empty_messages[:1] == [1]  # the "session is up" message on stdout
    ws.closed.wait(5)
    assert ws.close_code == 1000


@pytest.mark.parametrize(
    "protocol", ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", "base64.channel.k8s.io"]
)
def test_websocket_exec_protocols(server: StreamingServer, protocol: str) -> None:
    ws = WsClient(server.url_for(_exec(OUT_ERR_3)), [protocol], channels=5)
    assert ws.subprotocol == protocol
    stdout = ws.collect(1)
    assert stdout == b"out\n"
    assert ws.channels[2].read() == b"err\n"
    error = ws.channels[3].read()
    if protocol.startswith("v4."):
        assert exit_code(error) == 3
    else:
        assert error == b"command terminated with non-zero exit code: exit status 3"


def test_websocket_tty_resize(server: StreamingServer) -> None:
    script = "while read x; do stty size; done"
    request = _exec(("sh", "-c", script), tty=True, stdin=True, stderr=False)
    ws = WsClient(server.url_for(request), ["v4.channel.k8s.io"], channels=5)
    ws.send(4, resize_message(100, 30))
    output = b""
    # The resize travels apart from stdin; ask again until the new size shows.
    for _ in range(50):
        ws.send(0, b"\n")
        output += ws.channels[1].read()
        if b"30 100" in output:
            break
    assert b"30 100" in output
    ws.drop()
