"""The stream status a WebSocket exec or attach ends with (a v4 metav1.Status)."""

from __future__ import annotations

import json

import pytest

from critest.websocket import ERROR, Received, StreamError, port_forward_data


def _received(status: object) -> Received:
    received = Received()
    received.channels[ERROR] = json.dumps(status).encode()
    return received


def test_success_is_exit_0() -> None:
    assert _received({"metadata": {}, "status": "Success"}).exit_code() == 0


def test_non_zero_exit_code_comes_from_the_causes() -> None:
    status = {
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "7"}]},
    }
    assert _received(status).exit_code() == 7


def test_a_failure_without_exit_code_is_an_error() -> None:
    with pytest.raises(StreamError, match="no exit code"):
        _received({"status": "Failure", "message": "container not found"}).exit_code()


def test_port_forward_data_drops_the_port_prefix() -> None:
    received = Received()
    received.channels[0] += b"P\x00"
    received.channels[0] += b"HTTP/1.1 200 OK"
    assert port_forward_data(received) == b"HTTP/1.1 200 OK"
