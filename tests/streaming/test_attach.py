"""Attach end to end: to a running process, with stdin, several attachers at once."""

from __future__ import annotations

import json
import time

from cri.streaming import AttachRequest, StreamingServer
from tests.streaming.backends import AttachTarget, LocalBackend
from tests.streaming.clients import WsClient, read_all, spdy_remotecommand

# Answers each stdin line on stdout; the ticker keeps printing.
ECHO_LOOP = ("sh", "-c", 'while read line; do echo "got $line"; done')
TICKER = ("sh", "-c", "while true; do echo tick; sleep 0.05; done")


def test_attach_reads_output_and_writes_stdin(
    server: StreamingServer, backend: LocalBackend
) -> None:
    backend.containers["c1"] = AttachTarget(ECHO_LOOP)
    request = AttachRequest("c1", stdin=True, stdout=True, stderr=True)
    s = spdy_remotecommand(server.url_for(request), stdin=True)
    assert s.stdin and s.stdout
    s.stdin.write(b"one\n")
    assert s.stdout.read() == b"got one\n"
    s.stdin.write(b"two\n")
    assert s.stdout.read() == b"got two\n"
    # Detaching leaves the process running.
    s.client.close()
    time.sleep(0.1)
    assert backend.containers["c1"].proc.poll() is None


def test_attach_ends_with_the_process(server: StreamingServer, backend: LocalBackend) -> None:
    backend.containers["c2"] = AttachTarget(("sh", "-c", "read x; echo bye; exit 0"))
    s = spdy_remotecommand(server.url_for(AttachRequest("c2", stdin=True)), stdin=True)
    assert s.stdin and s.stdout
    s.stdin.write(b"\n")
    assert read_all(s.stdout) == b"bye\n"
    assert json.loads(read_all(s.error)) == {"metadata": {}, "status": "Success"}
    s.client.close()


def test_several_attachers_see_the_same_output(
    server: StreamingServer, backend: LocalBackend
) -> None:
    backend.containers["c3"] = AttachTarget(TICKER)
    request = AttachRequest("c3", stdout=True, stderr=False)
    spdy = spdy_remotecommand(server.url_for(request), stderr=False)
    ws = WsClient(server.url_for(request), ["v4.channel.k8s.io"], channels=5)
    assert spdy.stdout
    assert b"tick" in spdy.stdout.read()
    assert b"tick" in ws.channels[1].read()
    spdy.client.close()
    ws.drop()


def test_attach_to_unknown_container_fails_on_the_error_stream(server: StreamingServer) -> None:
    s = spdy_remotecommand(server.url_for(AttachRequest("nope", stderr=False)), stderr=False)
    status = json.loads(read_all(s.error))
    assert status["reason"] == "InternalError"
    assert "error attaching to container: container nope not found" in status["message"]
    s.client.close()
