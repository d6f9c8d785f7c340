"""Freezing and thawing every task of a cgroup (v1 freezer controller, v2 core)."""

from __future__ import annotations

import time
from pathlib import Path

from runtime.cgroups import files


def _wait(check: str, done: bool, directory: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        if _state(directory, check) == done:
            return
        if time.monotonic() > deadline:
            raise files.CgroupError(
                f"{directory}: still not {'frozen' if done else 'thawed'} after {timeout}s"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _state(directory: Path, check: str) -> bool:
    if check == "v1":
        return files.read(directory, "freezer.state") == "FROZEN"
    return files.read_keyed(directory, "cgroup.events").get("frozen") == 1


def freeze_v1(directory: Path, timeout: float = 5.0) -> None:
    files.write(directory, "freezer.state", "FROZEN")
    _wait("v1", True, directory, timeout)


def thaw_v1(directory: Path, timeout: float = 5.0) -> None:
    files.write(directory, "freezer.state", "THAWED")
    _wait("v1", False, directory, timeout)


def is_frozen_v1(directory: Path) -> bool:
    return _state(directory, "v1")


def freeze_v2(directory: Path, timeout: float = 5.0) -> None:
    files.write(directory, "cgroup.freeze", 1)
    _wait("v2", True, directory, timeout)


def thaw_v2(directory: Path, timeout: float = 5.0) -> None:
    files.write(directory, "cgroup.freeze", 0)
    _wait("v2", False, directory, timeout)


def is_frozen_v2(directory: Path) -> bool:
    return _state(directory, "v2")
