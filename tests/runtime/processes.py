"""Helpers for tests that touch the kernel: child interpreters and processes, the
root-only marker, and last-resort cgroup removal."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def run_python(code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter: namespace syscalls must not touch the
    (possibly threaded) pytest process."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        check=False,
    )


Spawn = Callable[..., "subprocess.Popen[str]"]

# Waits for a line on stdin, then allocates and touches MiB given as argv[1] (so the memory
# is charged to whatever cgroup it was moved into meanwhile), reports, and sleeps.
ALLOCATOR = (
    "import sys, time\n"
    "sys.stdin.readline()\n"
    "block = bytearray(int(sys.argv[1]) << 20)\n"
    "for i in range(0, len(block), 4096): block[i] = 1\n"
    "print('allocated', flush=True)\n"
    "time.sleep(600)\n"
)


def remove_cgroup_dirs(top: Path) -> None:
    """Last-resort cleanup: move stragglers out, then rmdir deepest first."""
    if not top.is_dir():
        return
    for directory in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
        _evacuate(directory)
        directory.rmdir()
    _evacuate(top)
    top.rmdir()


def _evacuate(directory: Path) -> None:
    procs = directory / "cgroup.procs"
    for pid in procs.read_text().split() if procs.exists() else []:
        with contextlib.suppress(OSError):
            (directory.parent / "cgroup.procs").write_text(pid)
