"""What a container keeps under state_root/<id>/, shared by the monitor and `Runtime`:

    container.json  what create decided (bundle, log, cgroup, pids), written by the runtime
    monitor.sock    the monitor's control socket, present while the monitor runs
    exit.json       how the container ended, written once by the monitor before it exits
    monitor.log     the monitor's own diagnostics

Files are replaced atomically (write a temporary, rename), so a reader sees the old or the
new content, never half of it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ExitRecord:
    exit_code: int  # 128 + signal number when a signal ended the process
    signal: int | None
    started_at: int  # ns since the epoch; 0 if it never started
    finished_at: int
    oom_killed: bool
    error: str = ""  # why it failed to start, if it did


# The monitor's files by name: a monitor builds its paths as plain strings, since pathlib
# would cost each monitor some 190 KiB of the memory monitors share (runtime/monitor.py).
SOCKET_NAME = "monitor.sock"
MONITOR_LOG_NAME = "monitor.log"


@dataclass(frozen=True)
class StateDir:
    path: Path

    @property
    def record(self) -> Path:
        return self.path / "container.json"

    @property
    def socket(self) -> Path:
        return self.path / SOCKET_NAME

    @property
    def exit(self) -> Path:
        return self.path / "exit.json"

    @property
    def monitor_log(self) -> Path:
        return self.path / MONITOR_LOG_NAME

    def read_exit(self) -> ExitRecord | None:
        data = read_json(self.exit)
        return None if data is None else ExitRecord(**data)

    def write_exit(self, record: ExitRecord) -> None:
        write_json(self.exit, asdict(record))


def write_json(path: Path, data: dict[str, Any]) -> None:
    # No fsync: the state root lies in the volatile run directory (tmpfs, gone with the
    # host and its containers); a daemon crash leaves the page cache, so a reader after
    # a restart sees what was written.
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(data).encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    return data
