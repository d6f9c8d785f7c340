"""The fork server, exercised in a fresh interpreter (it must start before any thread)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT_HEAD = """
import json, os, sys, threading, time
from runtime.zygote import Zygote, ZygoteError, entry_point

@entry_point("report")
def report(args, fds):
    with os.fdopen(fds[0], "w") as out:
        json.dump({"pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0),
                   "pgid": os.getpgid(0), "tag": args["tag"]}, out)
    return 0

@entry_point("sleeper")
def sleeper(args, fds):
    time.sleep(600)
    return 0

zygote = Zygote()
"""


def run_script(body: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT_HEAD + body],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).resolve().parents[2],
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def pids_to_kill() -> Iterator[list[int]]:
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_spawned_process_runs_away_from_the_callers_session_and_is_reaped() -> None:
    result = run_script(
        """
r, w = os.pipe()
pid = zygote.spawn("report", {"tag": "hello"}, [w])
os.close(w)
with os.fdopen(r) as f:
    seen = json.load(f)
deadline = time.monotonic() + 10
while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
    time.sleep(0.01)
print(json.dumps({"returned": pid, "zygote": zygote.pid, "seen": seen, "sid": os.getsid(0),
                  "reaped": not os.path.exists(f"/proc/{pid}")}))
zygote.close()
"""
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    seen = answer["seen"]
    assert seen["pid"] == answer["returned"]
    # the zygote's session, not the caller's; not its leader, so it can never grab a
    # controlling terminal; a process group of its own
    assert seen["sid"] == answer["zygote"] != answer["sid"]
    assert seen["pgid"] == seen["pid"]
    assert seen["ppid"] == answer["zygote"]
    assert answer["reaped"], "the spawned process stayed a zombie of the zygote"
    assert seen["tag"] == "hello"


def test_unknown_entry_point_is_an_error_and_the_server_keeps_serving() -> None:
    result = run_script(
        """
try:
    zygote.spawn("nope", {})
except ZygoteError as e:
    print("error:", e)
r, w = os.pipe()
zygote.spawn("report", {"tag": "after"}, [w])
os.close(w)
print(json.load(os.fdopen(r))["tag"])
zygote.close()
"""
    )
    assert result.returncode == 0, result.stderr
    assert "error: cannot spawn 'nope'" in result.stdout
    assert "unknown entry point" in result.stdout
    assert result.stdout.strip().endswith("after")


def test_concurrent_spawns_from_many_threads() -> None:
    result = run_script(
        """
seen = []
def one(i):
    r, w = os.pipe()
    zygote.spawn("report", {"tag": str(i)}, [w])
    os.close(w)
    seen.append(json.load(os.fdopen(r))["tag"])
threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
for t in threads: t.start()
for t in threads: t.join()
print(len(set(seen)))
zygote.close()
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "16"


def test_refuses_to_start_once_threads_exist() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import threading, time\n"
            "threading.Thread(target=time.sleep, args=(1,), daemon=True).start()\n"
            "from runtime.zygote import Zygote, ZygoteError\n"
            "try:\n    Zygote()\nexcept ZygoteError as e:\n    print(e)\n",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "before any thread" in result.stdout, result.stderr


def test_zygote_dies_with_the_daemon_but_spawned_processes_survive(
    pids_to_kill: list[int],
) -> None:
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SCRIPT_HEAD
            + """
pid = zygote.spawn("sleeper", {})
print(json.dumps({"zygote": zygote.pid, "sleeper": pid}), flush=True)
time.sleep(600)
""",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert daemon.stdout is not None
        pids = json.loads(daemon.stdout.readline())
        pids_to_kill.extend([pids["sleeper"], pids["zygote"]])
        assert _alive(pids["zygote"]) and _alive(pids["sleeper"])
    finally:
        daemon.kill()
        daemon.wait()
    deadline = time.monotonic() + 10
    while _alive(pids["zygote"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pids["zygote"]), "zygote outlived the daemon"
    assert _alive(pids["sleeper"]), "a spawned process died with the daemon"
