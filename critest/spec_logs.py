"""Container logs: the CRI log file, its format, and ReopenContainerLog (upstream
container.go "runtime should support log"; the format checks go beyond upstream)."""

from __future__ import annotations

import time
from pathlib import Path

from criapi import api_pb2 as pb
from critest.case import case, expect, expect_eq
from critest.fixture import RPC_TIMEOUT, Fixture, expect_rpc_error
from critest.logformat import messages, read_log

AREA = "logs"


def _log_pod(f: Fixture) -> tuple[str, pb.PodSandboxConfig, Path]:
    log_dir = f.host_dir("logs-")
    config = f.pod_config(log_directory=str(log_dir))
    return f.run_pod(config), config, log_dir


def _exited_log(f: Fixture, script: str) -> tuple[pb.ContainerStatus, Path]:
    """Runs ``script`` in a container logging to a fresh directory, until it exits."""
    pod_id, pod_config, log_dir = _log_pod(f)
    name = f.unique("log-")
    config = f.container_config(command=["sh", "-c", script], log_path=f"{name}.log")
    container_id = f.create_container(pod_id, pod_config, config)
    f.start(container_id)
    return f.wait_state(container_id, pb.CONTAINER_EXITED), log_dir / f"{name}.log"


@case(
    "container log is written",
    area=AREA,
    spec="runtime should support starting container with log [Conformance]",
)
def log(f: Fixture) -> None:
    status, path = _exited_log(f, "echo 'hello World'")
    expect_eq(status.log_path, str(path), "ContainerStatus.log_path")
    entries = read_log(path)
    expect_eq(messages(entries, "stdout"), [b"hello World"], "stdout lines of the log")


@case("log lines carry stream, tag and RFC 3339 nano timestamps in order", area=AREA, spec="")
def log_format(f: Fixture) -> None:
    _, path = _exited_log(f, "echo one; echo two >&2; echo three; printf 'no newline'")
    entries = read_log(path)
    expect_eq(messages(entries, "stdout"), [b"one", b"three", b"no newline"], "stdout lines")
    expect_eq(messages(entries, "stderr"), [b"two"], "stderr lines")
    # Order holds within a stream; runtimes read stdout and stderr independently, so an
    # entry of one stream may carry an earlier time than the entry of the other before it.
    for stream in ("stdout", "stderr"):
        stamps = [(e.timestamp, e.nanos) for e in entries if e.stream == stream]
        expect_eq(stamps, sorted(stamps), f"{stream} timestamps must not go backwards")
    expect(all(e.timestamp.year >= 2020 for e in entries), "timestamps are not wall-clock times")


@case("a long line is split into partial entries that join back", area=AREA, spec="")
def log_long_line(f: Fixture) -> None:
    _, path = _exited_log(f, "head -c 100000 /dev/zero | tr '\\0' x; echo")
    whole = messages(read_log(path), "stdout")
    expect_eq([len(m) for m in whole], [100000], "lengths of the joined stdout lines")
    expect(whole[0] == b"x" * 100000, "joined content differs from what was written")


@case(
    "reopen the container log",
    area=AREA,
    spec="runtime should support reopening container log [Conformance]",
)
def reopen(f: Fixture) -> None:
    pod_id, pod_config, log_dir = _log_pod(f)
    name = f.unique("reopen-")
    config = f.container_config(
        command=["sh", "-c", "while :; do echo 'hello World'; sleep 0.1; done"],
        log_path=f"{name}.log",
    )
    container_id = f.run_container(pod_id, pod_config, config)
    path = log_dir / f"{name}.log"
    f.wait_for(lambda: read_log(path), 30, "the first log lines")
    rotated = path.with_name(path.name + ".1")
    path.rename(rotated)
    f.rt.ReopenContainerLog(
        pb.ReopenContainerLogRequest(container_id=container_id), timeout=RPC_TIMEOUT
    )
    expect(path.exists(), "ReopenContainerLog did not create a new log file")
    f.wait_for(lambda: read_log(path), 30, "lines in the reopened log")
    time.sleep(0.5)  # anything still buffered for the old file lands now
    settled = len(read_log(rotated))
    time.sleep(2)
    expect_eq(len(read_log(rotated)), settled, "lines in the rotated log after reopening")


@case(
    "reopen the log of a stopped container fails",
    area=AREA,
    spec="runtime should support reopening container log [Conformance]",
)
def reopen_stopped(f: Fixture) -> None:
    status, _ = _exited_log(f, "true")
    expect_rpc_error(
        lambda: f.rt.ReopenContainerLog(
            pb.ReopenContainerLogRequest(container_id=status.id), timeout=RPC_TIMEOUT
        ),
        "ReopenContainerLog of an exited container",
    )
