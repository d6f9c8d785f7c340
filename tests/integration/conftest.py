from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from critest.registry import Registry
from tests.crisp_daemon import DaemonPaths, RunningDaemon, assert_nothing_left, start_daemon


@pytest.fixture
def daemon_paths(tmp_path: Path) -> DaemonPaths:
    return DaemonPaths(tmp_path / "crisp")


@pytest.fixture
def crisp(daemon_paths: DaemonPaths) -> Iterator[RunningDaemon]:
    """A real crisp daemon on temporary paths; stopped and checked for leftovers afterwards."""
    daemon = start_daemon(daemon_paths)
    try:
        yield daemon
    finally:
        code = daemon.stop()
    assert code == 0, f"crisp exited with {code}; log:\n{daemon.log()}"
    assert_nothing_left(daemon)


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    """A registry on loopback, one per test module (its images are pushed per module)."""
    with Registry() as r:
        yield r
