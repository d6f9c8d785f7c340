"""Fixtures for runtime tests: real processes and real cgroups, always cleaned up."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.namespaces import mounts_under
from tests.runtime.containers import Lab
from tests.runtime.processes import Spawn


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start child processes (default `sleep 600`); each is SIGKILLed and reaped by PID
    afterwards."""
    children: list[subprocess.Popen[str]] = []

    def start(*argv: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            list(argv) or ["sleep", "600"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@pytest.fixture
def test_parent() -> str:
    """A unique top-level cgroup name; tests remove it through `cgroup_cleanup`."""
    return f"crisp-test-{secrets.token_hex(4)}"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A state root, bundles, a cgroup parent and a driver daemon; nothing of them (no
    container, monitor, mount or cgroup) outlives the test."""
    world = Lab(tmp_path, f"crisp-test-{secrets.token_hex(4)}")
    try:
        yield world
    finally:
        world.cleanup()
    assert not mounts_under(tmp_path), "mounts left behind"
