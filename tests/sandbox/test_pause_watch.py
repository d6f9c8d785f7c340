"""PauseWatch: a pause process's liveness from a kept pidfd, the same answers as /proc."""

from __future__ import annotations

import os
import subprocess

from runtime.procfs import start_time
from sandbox.pause_watch import PauseWatch


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_alive_until_it_exits_and_never_for_another_start_time() -> None:
    watch = PauseWatch()
    process = subprocess.Popen(["sleep", "60"])
    try:
        started = start_time(process.pid)
        assert started is not None
        before = _open_fds()
        assert watch.alive(process.pid, started) and watch.alive(process.pid, started)
        assert _open_fds() == before + 1  # one pidfd, kept
        assert not watch.alive(process.pid, started + 1)  # a later process with that pid
        assert _open_fds() == before + 1
        process.kill()
        process.wait()
        assert not watch.alive(process.pid, started)
        assert _open_fds() == before  # an exited process is no longer watched
    finally:
        process.kill()
        process.wait()


def test_forget_closes_the_descriptor() -> None:
    watch = PauseWatch()
    process = subprocess.Popen(["sleep", "60"])
    try:
        started = start_time(process.pid)
        assert started is not None
        before = _open_fds()
        assert watch.alive(process.pid, started)
        watch.forget(process.pid, started)
        watch.forget(process.pid, started)  # idempotent
        assert _open_fds() == before
    finally:
        process.kill()
        process.wait()
