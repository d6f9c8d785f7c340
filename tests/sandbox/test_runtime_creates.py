"""RuntimeCreates: a create is waited for from the moment it is expected, not only once its
worker has begun (a container must never be seen without its create being known)."""

from __future__ import annotations

import threading
import time

import pytest

from sandbox.runtime_creates import RuntimeCreates, RuntimeCreatesClosed


def _waiter(creates: RuntimeCreates, container_id: str) -> tuple[threading.Thread, list[object]]:
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(creates.wait(container_id)))
    thread.start()
    return thread, seen


def test_an_expected_create_is_waited_for_until_its_work_is_done() -> None:
    creates = RuntimeCreates()
    try:
        creates.expect("c")
        assert creates.under_way("c")
        waiter, seen = _waiter(creates, "c")
        time.sleep(0.05)
        assert seen == []  # begin has not even been called
        release = threading.Event()

        def work() -> None:
            release.wait(10)

        creates.begin("c", work)
        time.sleep(0.05)
        assert seen == [] and creates.under_way("c")
        release.set()
        waiter.join(5)
        assert seen == [None] and not creates.under_way("c")
    finally:
        creates.close()


def test_a_failed_create_is_the_answer_of_every_wait_until_discarded() -> None:
    creates = RuntimeCreates()
    try:
        creates.expect("c")
        boom = RuntimeError("no such binary")

        def fail() -> None:
            raise boom

        creates.begin("c", fail)
        assert creates.wait("c") is boom
        assert creates.wait("c") is boom
        creates.discard("c")
        assert creates.wait("c") is None
    finally:
        creates.close()


def test_an_abandoned_create_releases_its_waiters() -> None:
    creates = RuntimeCreates()
    try:
        creates.expect("c")
        waiter, seen = _waiter(creates, "c")
        creates.abandon("c")
        waiter.join(5)
        assert seen == [None] and not creates.under_way("c")
    finally:
        creates.close()


def test_no_create_begins_once_closed() -> None:
    creates = RuntimeCreates()
    creates.expect("c")
    creates.close()
    with pytest.raises(RuntimeCreatesClosed):
        creates.begin("c", lambda: None)
    creates.abandon("c")
    assert creates.wait("c") is None
