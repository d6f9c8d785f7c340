from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(prefix) or p == str(root)]


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    """Layers hold device nodes and setuid files: remove each test's directory as soon
    as it ends instead of leaving it to pytest's rotation, and fail on a leaked mount."""
    yield
    leaked = _mounts_under(tmp_path)
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert not leaked, f"test left mounts behind: {leaked}"
