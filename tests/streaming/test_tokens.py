"""One-time tokens: single use, one-minute expiry, bounded, kind-checked, validated."""

from __future__ import annotations

import pytest

from cri.streaming import AttachRequest, ExecRequest, PortForwardRequest, TokenRegistry
from sandbox.errors import InvalidArgument


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


EXEC = ExecRequest("c1", ("ls",))


def test_token_is_single_use() -> None:
    tokens = TokenRegistry()
    kind, token = tokens.insert(EXEC)
    assert kind == "exec"
    assert tokens.take("exec", token) == EXEC
    assert tokens.take("exec", token) is None


def test_tokens_are_random_and_url_safe() -> None:
    tokens = TokenRegistry()
    seen = {tokens.insert(EXEC)[1] for _ in range(200)}
    assert len(seen) == 200
    assert all(len(t) >= 20 and t.replace("-", "").replace("_", "").isalnum() for t in seen)


def test_token_expires_after_a_minute() -> None:
    clock = Clock()
    tokens = TokenRegistry(clock=clock)
    _, fresh = tokens.insert(EXEC)
    _, stale = tokens.insert(EXEC)
    clock.now += 59.9
    assert tokens.take("exec", fresh) == EXEC
    clock.now += 0.2
    assert tokens.take("exec", stale) is None
    assert len(tokens) == 0


def test_wrong_kind_burns_the_token() -> None:
    tokens = TokenRegistry()
    _, token = tokens.insert(AttachRequest("c1", stdout=True))
    assert tokens.take("exec", token) is None
    assert tokens.take("attach", token) is None


def test_bounded_with_oldest_evicted() -> None:
    clock = Clock()
    tokens = TokenRegistry(max_tokens=3, clock=clock)
    first = tokens.insert(EXEC)[1]
    clock.now += 1
    rest = [tokens.insert(EXEC)[1] for _ in range(3)]
    assert len(tokens) == 3
    assert tokens.take("exec", first) is None
    assert all(tokens.take("exec", t) == EXEC for t in rest)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (ExecRequest("", ("ls",)), "container ID is required"),
        (ExecRequest("c1", ()), "command is required"),
        (ExecRequest("c1", ("ls",), stdout=False, stderr=False), "one of stdin"),
        (ExecRequest("c1", ("sh",), tty=True, stderr=True), "tty and stderr"),
        (AttachRequest("c1", stdout=False, stderr=False), "one of stdin"),
        (PortForwardRequest(""), "pod sandbox ID is required"),
        (PortForwardRequest("p1", (80, 70000)), "invalid port"),
    ],
)
def test_impossible_requests_are_invalid_arguments(
    request_: ExecRequest | AttachRequest | PortForwardRequest, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        TokenRegistry().insert(request_)
