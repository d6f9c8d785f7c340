"""Running another process in a live container (OCI `exec`): the zygote entry point "exec".

The spawned helper joins the container's cgroup and namespaces (those of its init, found
by pid and checked by start time so a recycled pid is never entered), forks the process
into the pid namespace, and waits for it, so no zombie is left behind. It reports on a
pipe, one JSON object per line: {"pid": …} once the process is forked, {"started": true}
once it has executed, then {"exit_code": …}; or {"error": …} in place of the last two (the
process could not be executed, e.g. no such executable).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import struct
import termios
import tty
from typing import Any, NoReturn

from runtime import process as process_setup
from runtime import syscalls as sc
from runtime.cgroups import CgroupError, new_manager
from runtime.procfs import start_time
from runtime.spec import parse_process
from runtime.zygote import entry_point

# Joined in this order: the user namespace decides what may be joined after it, and the
# mount namespace goes last because the other /proc paths must still resolve on the host.
NAMESPACES = (
    ("user", sc.CLONE_NEWUSER),
    ("ipc", sc.CLONE_NEWIPC),
    ("uts", sc.CLONE_NEWUTS),
    ("net", sc.CLONE_NEWNET),
    ("pid", sc.CLONE_NEWPID),
    ("cgroup", sc.CLONE_NEWCGROUP),
    ("mnt", sc.CLONE_NEWNS),
)


class ExecError(Exception):
    pass


def _report(fd: int, **message: Any) -> None:
    # A detached caller stops reading once the process has started.
    with contextlib.suppress(BrokenPipeError):
        os.write(fd, json.dumps(message).encode() + b"\n")


def _open_namespaces(pid: int, started: int) -> list[tuple[int, int]]:
    opened: list[tuple[int, int]] = []
    try:
        for name, flag in NAMESPACES:
            target = os.stat(f"/proc/{pid}/ns/{name}")
            own = os.stat(f"/proc/self/ns/{name}")
            if (target.st_dev, target.st_ino) != (own.st_dev, own.st_ino):
                opened.append((os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), flag))
        if start_time(pid) != started:
            raise ExecError("container is not running")
    except FileNotFoundError:
        for fd, _ in opened:
            os.close(fd)
        raise ExecError("container is not running") from None
    except BaseException:
        for fd, _ in opened:
            os.close(fd)
        raise
    return opened


def _child(args: dict[str, Any], stdio: tuple[int, int, int], errors: int, report: int) -> NoReturn:
    try:
        os.close(report)
        process = parse_process(args["process"])
        process_setup.reset_signals()
        process_setup.attach_stdio(stdio, process.terminal)
        encoded = args.get("seccomp_bpf")
        program = base64.b64decode(encoded) if encoded else None
        executable, seccomp = process_setup.prepare(process, program)
        process_setup.execute(process, executable, seccomp)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(errors, str(exc).encode())
    os._exit(127)


_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431
_RELAY_POLL_SECONDS = 0.05


class ContainerConsole:
    """A pty from the container's own devpts, relayed to the caller's terminal.

    The caller's pty belongs to the host's devpts, which the container cannot see: with it
    `tty` and ttyname() fail inside. So the exec gets a pty of the container's, and this
    helper copies bytes both ways and passes window size changes on."""

    def __init__(self, outside: int) -> None:
        self.outside = outside
        self.master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        fcntl.ioctl(self.master, _TIOCSPTLCK, struct.pack("i", 0))
        (number,) = struct.unpack("I", fcntl.ioctl(self.master, _TIOCGPTN, b"\0" * 4))
        self.slave = os.open(f"/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        # The outside pty only carries bytes; the inside one does the line discipline.
        tty.setraw(outside, termios.TCSANOW)  # TCSAFLUSH would drop input already typed
        self._size = b""
        self._copy_size()

    def _copy_size(self) -> None:
        size = fcntl.ioctl(self.outside, termios.TIOCGWINSZ, b"\0" * 8)
        if size != self._size:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
            self._size = size

    def relay_until_exit(self, child: int) -> int:
        """Copy until the process exits and its last output is out; returns its status."""
        os.close(self.slave)
        status: int | None = None
        while True:
            readable, _, _ = select.select([self.outside, self.master], [], [], _RELAY_POLL_SECONDS)
            # Sizes first: input typed after a resize must find the new size in place.
            with contextlib.suppress(OSError):
                self._copy_size()
            for source, target in ((self.master, self.outside), (self.outside, self.master)):
                if source in readable:
                    try:
                        data = os.read(source, 1 << 16)
                    except OSError:  # EIO: the other side of the pty is closed
                        data = b""
                    if data:
                        with contextlib.suppress(OSError):
                            os.write(target, data)
                    elif source == self.master and status is not None:
                        os.close(self.master)
                        return status
            if status is None:
                pid, waited = os.waitpid(child, os.WNOHANG)
                if pid:
                    status = waited
            elif self.master not in readable:
                os.close(self.master)
                return status


@entry_point("exec")
def main(args: dict[str, Any], fds: list[int]) -> int:
    """args: process (OCI JSON), pid and start_time of the container init, cgroups_path,
    seccomp_bpf (base64 of the compiled profile, or None); fds: stdin, stdout, stderr
    for the process, then the report pipe."""
    stdin, stdout, stderr, report = fds
    os.set_inheritable(report, False)
    try:
        namespaces = _open_namespaces(int(args["pid"]), int(args["start_time"]))
        try:
            new_manager(str(args["cgroups_path"])).enter()
        except CgroupError as exc:
            raise ExecError(f"joining the container's cgroup: {exc}") from None
        for fd, flag in namespaces:
            sc.setns(fd, flag)
            os.close(fd)
        console: ContainerConsole | None = None
        stdio = (stdin, stdout, stderr)
        if args["process"].get("terminal"):
            # Inside the container's mount namespace now: the pty comes from its devpts.
            console = ContainerConsole(outside=stdin)
            stdio = (console.slave, console.slave, console.slave)
        errors_r, errors_w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(errors_r)
            _child(args, stdio, errors_w, report)
        os.close(errors_w)
        for fd in {stdin, stdout, stderr} - {stdin if console else -1}:
            os.close(fd)
        _report(report, pid=child)
        # End-of-file means execve happened. Until then the process writes nothing to its
        # terminal, so the relay can start afterwards.
        with os.fdopen(errors_r, "rb") as errors:
            error = errors.read().decode(errors="replace")
        if not error:
            _report(report, started=True)
        if console is not None:
            status = console.relay_until_exit(child)
            os.close(stdin)
        else:
            _, status = os.waitpid(child, 0)
    except Exception as exc:
        _report(report, error=str(exc) or type(exc).__name__)
        return 1
    if error:
        _report(report, error=error)
    elif os.WIFSIGNALED(status):
        _report(report, exit_code=128 + os.WTERMSIG(status), signal=os.WTERMSIG(status))
    else:
        _report(report, exit_code=os.WEXITSTATUS(status))
    return 0
