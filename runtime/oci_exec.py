"""Running another process in a container an external OCI runtime runs: the zygote entry
point "oci-exec".

The helper becomes a child subreaper and runs the binary's `exec --detach`, which starts
the process and exits; the process is then the helper's child, so the helper can wait for
it and report how it ended. It speaks the report protocol of the embedded runtime's exec
helper (runtime/exec_process.py): JSON lines {"pid": …} and {"started": true} once the
process runs, then {"exit_code": …}; or {"error": …}. A process.terminal exec gets its pty
from the binary (made inside the container, sent to a console socket), which the helper
relays to the caller's pty as the embedded helper does.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import termios
import tty
from pathlib import Path
from typing import Any

from runtime import syscalls as sc
from runtime.exec_process import ContainerConsole
from runtime.exec_process import _report as report_line
from runtime.oci_command import OciBinary, failure, read_pid, receive_pty
from runtime.zygote import entry_point


def _wait_for(pid: int) -> int:
    """Reap children (the binary's leftovers are ours too) until `pid` has ended."""
    while True:
        reaped, status = os.waitpid(-1, 0)
        if reaped == pid:
            return status


class ReceivedConsole(ContainerConsole):
    """The embedded exec's relay (runtime/exec_process.py) around the pty the binary made
    inside the container and sent to the console socket, in place of one opened here."""

    def __init__(self, outside: int, master: int) -> None:
        self.outside = outside
        self.master = master
        # The relay closes the slave it expects this side to hold; here there never was one.
        self.slave = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        tty.setraw(outside, termios.TCSANOW)  # TCSAFLUSH would drop input already typed
        self._size = b""
        self._copy_size()


@entry_point("oci-exec")
def main(args: dict[str, Any], fds: list[int]) -> int:
    """args: binary, root, id, state_dir (for the process file, pid file, log and console
    socket), process (OCI JSON); fds: stdin, stdout, stderr for the process (with
    process.terminal, stdin is the caller's pty the relay uses), then the report pipe."""
    stdin, stdout, stderr, report = fds
    os.set_inheritable(report, False)
    binary = OciBinary(str(args["binary"]), str(args["root"]))
    state_dir = Path(args["state_dir"])
    # os.urandom, not secrets: that module would load OpenSSL into the fork server, whose
    # memory every monitor shares.
    name = f"exec-{os.urandom(6).hex()}"
    process_file, pid_file, log = (state_dir / f"{name}{end}" for end in (".json", ".pid", ".log"))
    console: socket.socket | None = None
    process = dict(args["process"])
    try:
        sc.set_child_subreaper()
        if process.get("terminal"):
            # The process runs before the relay has its pty: it must start with the size.
            rows, columns = struct.unpack("HHHH", fcntl.ioctl(stdin, termios.TIOCGWINSZ, bytes(8)))[
                :2
            ]
            process["consoleSize"] = {"height": rows, "width": columns}
        process_file.write_text(json.dumps(process))
        options = ["--detach", "--process", str(process_file), "--pid-file", str(pid_file)]
        stdio = (stdin, stdout, stderr)
        if process.get("terminal"):
            # A relative name: the state directory's path is close to sun_path's limit.
            os.chdir(state_dir)
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            console.bind(f"{name}.sock")
            console.listen(1)
            options += ["--tty", "--console-socket", f"{name}.sock"]
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            stdio = (null, null, null)
        try:
            started = binary.spawn(binary.argv(log, "exec", *options, str(args["id"])), stdio)
        finally:
            # End-of-file for the caller must depend on the process alone.
            for fd in {*stdio, stdout, stderr} - {stdin if console else -1}:
                os.close(fd)
        _, status = os.waitpid(started, 0)
        error = failure(status, log, f"{os.path.basename(binary.path)} exec")
        if error is not None:
            report_line(report, error=error)
            return 1
        pid = read_pid(pid_file)
        relay = None if console is None else ReceivedConsole(stdin, receive_pty(console, 5.0))
        report_line(report, pid=pid)
        report_line(report, started=True)  # the binary's exec returns once it has executed
        if relay is not None:
            status = relay.relay_until_exit(pid)
            os.close(stdin)
        else:
            status = _wait_for(pid)
    except Exception as exc:
        report_line(report, error=str(exc) or type(exc).__name__)
        return 1
    finally:
        for path in (process_file, pid_file, log, state_dir / f"{name}.sock"):
            path.unlink(missing_ok=True)
        if console is not None:
            console.close()
    if os.WIFSIGNALED(status):
        report_line(report, exit_code=128 + os.WTERMSIG(status), signal=os.WTERMSIG(status))
    else:
        report_line(report, exit_code=os.WEXITSTATUS(status))
    return 0
