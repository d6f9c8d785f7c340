"""The `crisp-runtime` command (runtime/cli.py) driven as runc would be: the installed
binary run as a subprocess on busybox bundles, containers really created and run. The
`lab` fixture's state root is the CLI's --root, so its clean-up removes what a failed
test leaves behind."""

from __future__ import annotations

import array
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from runtime.cli import UsageError, parse_signal
from runtime.procfs import start_time
from tests.runtime.containers import Lab, mounts_under, needs_busybox
from tests.runtime.processes import needs_root

# The console script next to this interpreter (a pyenv shim on PATH would only add a hop).
CLI = next(
    (str(p) for p in [Path(sys.executable).parent / "crisp-runtime"] if p.exists()),
    shutil.which("crisp-runtime"),
)
needs_cli = pytest.mark.skipif(
    CLI is None, reason="crisp-runtime is not installed (pip install -e .)"
)
pytestmark = [needs_root, needs_busybox, needs_cli]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """For unix sockets, whose paths must stay short."""
    path = Path(tempfile.mkdtemp(prefix="crt", dir="/tmp"))
    yield path
    shutil.rmtree(path)


def cli(
    lab: Lab, *args: str, stdout: IO[Any] | int = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    """Run crisp-runtime on the lab's state root. A container it creates inherits its stdout
    and stderr, so those must not be pipes the test would wait on until the container
    ends: stderr goes through a file, and stdout too for commands that create."""
    assert CLI is not None
    with tempfile.TemporaryFile("w+") as stderr:
        result = subprocess.run(
            [CLI, "--root", str(lab.state_root), *args],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            text=True,
            timeout=60,
            check=False,
        )
        stderr.seek(0)
        result.stderr = stderr.read()
    return result


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def failure(result: subprocess.CompletedProcess[str]) -> str:
    """The one-line error of a failed command."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def state(lab: Lab, container_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(ok(cli(lab, "state", container_id)))
    return answer


def wait_status(lab: Lab, container_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while (current := state(lab, container_id))["status"] != status:
        assert time.monotonic() < deadline, current
        time.sleep(0.05)
    return current


def wait_for_text(path: Path, text: str) -> str:
    deadline = time.monotonic() + 20
    while text not in (content := path.read_text()):
        assert time.monotonic() < deadline, content
        time.sleep(0.02)
    return content


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_signal_names_numbers_and_errors() -> None:
    assert parse_signal("TERM") == parse_signal("sigterm") == signal.SIGTERM
    assert parse_signal("SIGKILL") == parse_signal("9") == signal.SIGKILL
    for bad in ("NOPE", "0", "999"):
        with pytest.raises(UsageError):
            parse_signal(bad)


def test_lifecycle_from_create_to_delete(lab: Lab) -> None:
    bundle = lab.bundle(["sh", "-c", "echo started; exec sleep 600"], annotations={"k": "v"})
    pid_file = lab.base / "c1.pid"
    out = lab.base / "c1.out"
    with out.open("w") as stdout:
        ok(
            cli(
                lab,
                "create",
                "--bundle",
                str(bundle),
                "--pid-file",
                str(pid_file),
                "--no-new-keyring",  # as containerd passes it
                "c1",
                stdout=stdout,
            )
        )

    created = state(lab, "c1")
    pid = int(pid_file.read_text())
    assert created["pid"] == pid
    assert created["status"] == "created"
    assert created["ociVersion"] == "1.1.0" and created["bundle"] == str(bundle)  # the bundle's
    assert created["annotations"] == {"k": "v"}
    assert out.read_text() == ""  # blocked before execve
    monitor = parent_of(pid)  # alive although the command that created it has exited
    assert Path(f"/proc/{monitor}/comm").read_text().strip() == "crisp-monitor"

    ok(cli(lab, "start", "c1"))
    assert wait_for_text(out, "started\n") == "started\n"  # the container wrote to our file
    assert state(lab, "c1")["status"] == "running"

    result = cli(lab, "exec", "c1", "sh", "-c", "echo in-exec $0; echo to-err >&2; exit 3", "x")
    assert (result.returncode, result.stdout, result.stderr) == (3, "in-exec x\n", "to-err\n")
    result = cli(lab, "exec", "--env", "EXTRA=1", "--cwd", "/tmp", "--user", "1000:2000", "c1",
                 "sh", "-c", "echo $EXTRA $(pwd) $(id -u):$(id -g)")  # fmt: skip
    assert ok(result) == "1 /tmp 1000:2000\n"
    process_file = lab.base / "process.json"  # how containerd asks for an exec
    process_file.write_text(json.dumps({"args": ["sh", "-c", "echo json $V"], "env": ["V=1"]}))
    assert ok(cli(lab, "exec", "--process", str(process_file), "c1")) == "json 1\n"

    assert json.loads(ok(cli(lab, "ps", "--format", "json", "c1"))) == [pid]
    header, *rows = ok(cli(lab, "ps", "c1")).splitlines()
    assert "PID" in header.split() and len(rows) == 1 and str(pid) in rows[0].split()
    listed = json.loads(ok(cli(lab, "list", "--format", "json")))
    assert [(c["id"], c["status"], c["pid"]) for c in listed] == [("c1", "running", pid)]
    assert ok(cli(lab, "list", "-q")) == "c1\n"
    table = ok(cli(lab, "list")).splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"] and table[1].split()[:3] == [
        "c1",
        str(pid),
        "running",
    ]

    ok(cli(lab, "kill", "c1", "KILL"))
    stopped = wait_status(lab, "c1", "stopped")
    assert stopped["pid"] == 0
    assert "stopped" in failure(cli(lab, "kill", "c1"))

    ok(cli(lab, "delete", "c1"))
    assert "does not exist" in failure(cli(lab, "state", "c1"))
    assert not (lab.state_root / "c1").exists()
    assert start_time(pid) is None and start_time(monitor) is None
    assert ok(cli(lab, "list", "-q")) == ""


def test_errors_are_one_line_and_leave_nothing(lab: Lab) -> None:
    no_rootfs = lab.bundle()
    shutil.rmtree(no_rootfs / "rootfs")
    assert "root.path" in failure(cli(lab, "create", "-b", str(no_rootfs), "bad"))
    no_config = lab.base / "empty"
    no_config.mkdir()
    assert "config.json" in failure(cli(lab, "create", "-b", str(no_config), "bad"))
    missing_binary = lab.bundle(["/nonexistent"])
    assert "/nonexistent" in failure(cli(lab, "create", "-b", str(missing_binary), "bad"))
    assert not (lab.state_root / "bad").exists()
    assert not mounts_under(lab.base)
    assert ok(cli(lab, "list", "-q")) == ""

    for command in (["state"], ["start"], ["kill"], ["delete"], ["ps"], ["exec", "-p", "x"]):
        assert "does not exist" in failure(cli(lab, *command, "nosuch")), command
    ok(cli(lab, "delete", "--force", "nosuch"))  # as runc: nothing to delete is fine
    assert "signal" in failure(cli(lab, "kill", "nosuch", "NOPE"))

    bundle = lab.bundle(["sleep", "600"])
    ok(cli(lab, "create", "-b", str(bundle), "c1", stdout=subprocess.DEVNULL))
    assert "already exists" in failure(cli(lab, "create", "-b", str(bundle), "c1"))
    assert "created" in failure(cli(lab, "exec", "c1", "true"))
    ok(cli(lab, "start", "c1"))
    assert "not created" in failure(cli(lab, "start", "c1"))
    assert "stop it first" in failure(cli(lab, "delete", "c1"))
    assert "executable file not found" in failure(cli(lab, "exec", "c1", "nosuch"))
    terminal = lab.bundle(None, **{"process.terminal": True})
    assert "console-socket" in failure(cli(lab, "create", "-b", str(terminal), "t1"))
    log = lab.base / "errors.log"
    assert "does not exist" in failure(
        cli(lab, "--log", str(log), "--log-format", "json", "start", "nosuch")
    )
    entry = json.loads(log.read_text())
    assert entry["level"] == "error" and "nosuch" in entry["msg"]


def test_delete_force_kills_a_running_container_and_its_cgroup(lab: Lab) -> None:
    bundle = lab.bundle(["sh", "-c", "sleep 600 & exec sleep 600"])
    ok(cli(lab, "run", "--detach", "-b", str(bundle), "c1", stdout=subprocess.DEVNULL))
    pid = state(lab, "c1")["pid"]
    monitor = parent_of(pid)
    deadline = time.monotonic() + 10
    while len(pids := json.loads(ok(cli(lab, "ps", "-f", "json", "c1")))) < 2:
        assert time.monotonic() < deadline, pids
        time.sleep(0.02)
    ok(cli(lab, "delete", "--force", "c1"))
    assert all(start_time(p) is None for p in [*pids, monitor])
    assert not (lab.state_root / "c1").exists()
    cgroup = json.loads((bundle / "config.json").read_text())["linux"]["cgroupsPath"]
    assert not Path("/sys/fs/cgroup/memory", cgroup.lstrip("/")).exists()


def test_run_waits_and_exits_with_the_process_code(lab: Lab) -> None:
    out = lab.base / "run.out"
    bundle = lab.bundle(["sh", "-c", "echo ran; exit 5"])
    with out.open("w") as stdout:
        result = cli(lab, "run", "-b", str(bundle), "c1", stdout=stdout)
    assert result.returncode == 5, result.stderr
    assert out.read_text() == "ran\n"
    assert not (lab.state_root / "c1").exists()  # a foreground run deletes what it ran


def test_run_passes_signals_on_to_the_container(lab: Lab) -> None:
    out = lab.base / "run.out"
    script = "trap 'echo got-term; exit 9' TERM; echo ready; while :; do sleep 0.05; done"
    bundle = lab.bundle(["sh", "-c", script])
    assert CLI is not None
    with out.open("w") as stdout:
        foreground = subprocess.Popen(
            [CLI, "--root", str(lab.state_root), "run", "-b", str(bundle), "c1"],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
        )
    try:
        wait_for_text(out, "ready\n")
        foreground.send_signal(signal.SIGTERM)
        assert foreground.wait(timeout=30) == 9
    finally:
        if foreground.poll() is None:
            foreground.kill()
            foreground.wait()
    assert out.read_text() == "ready\ngot-term\n"
    assert not (lab.state_root / "c1").exists()


def test_exec_detach_writes_the_pid_file(lab: Lab) -> None:
    bundle = lab.bundle(["sleep", "600"])
    ok(cli(lab, "run", "-d", "-b", str(bundle), "c1", stdout=subprocess.DEVNULL))
    pid_file = lab.base / "exec.pid"
    started = time.monotonic()
    detached = cli(
        lab, "exec", "-d", "--pid-file", str(pid_file), "c1", "sleep", "500",
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    ok(detached)
    assert time.monotonic() - started < 30  # returned while the process still runs
    pid = int(pid_file.read_text())
    assert pid in json.loads(ok(cli(lab, "ps", "-f", "json", "c1")))
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00500\x00"
    assert "/nosuch" in failure(cli(lab, "exec", "-d", "c1", "/nosuch", stdout=subprocess.DEVNULL))
    ok(cli(lab, "delete", "--force", "c1"))
    assert start_time(pid) is None


def receive_pty(listener: socket.socket) -> int:
    conn, _ = listener.accept()
    with conn:
        fds = array.array("i")
        _, ancillary, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in ancillary:
        if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
            fds.frombytes(data[: fds.itemsize])
    assert len(fds) == 1, ancillary
    return fds[0]


def read_until(master: int, text: bytes) -> bytes:
    seen = b""
    deadline = time.monotonic() + 20
    while text not in seen:
        assert time.monotonic() < deadline, seen
        with contextlib.suppress(BlockingIOError):
            seen += os.read(master, 4096)
        time.sleep(0.01)
    return seen


def test_console_socket_receives_a_working_pty(lab: Lab, short_dir: Path) -> None:
    bundle = lab.bundle(["sh"], **{"process.terminal": True})
    sock_path = short_dir / "console.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(sock_path))
        listener.listen(1)
        ok(cli(lab, "create", "-b", str(bundle), "--console-socket", str(sock_path), "c1"))
        master = receive_pty(listener)
        try:
            os.set_blocking(master, False)
            ok(cli(lab, "start", "c1"))
            os.write(master, b"echo sum=$((40+2)); tty\n")
            # `tty` prints a /dev/ path, not "not a tty": the shell's stdin is the terminal.
            output = read_until(master, b"/dev/")
            assert b"sum=42" in output

            exec_run = subprocess.Popen(
                [str(CLI), "--root", str(lab.state_root), "exec", "-t", "--console-socket",
                 str(sock_path), "c1", "sh", "-c", "tty && echo exec-ok"],
                stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            exec_master = receive_pty(listener)
            try:
                os.set_blocking(exec_master, False)
                read_until(exec_master, b"exec-ok")
                _, err = exec_run.communicate(timeout=30)
                assert exec_run.returncode == 0, err
            finally:
                os.close(exec_master)

            os.write(master, b"exit 7\n")
            stopped = wait_status(lab, "c1", "stopped")
            assert stopped["pid"] == 0, output
        finally:
            os.close(master)
    ok(cli(lab, "delete", "c1"))
