"""Running an external runc-compatible binary (runc, crun) from the processes the zygote
spawns: the monitor of such a container and its exec helper.

Those are small forks of the zygote, so nothing here uses subprocess (its machinery would
dirty pages they share with the zygote): the binary is started with posix_spawn and waited
for by pid. Its stdio is the container's, so it reports errors to a log file instead
(`--log FILE --log-format json`, which runc and crun both understand).
"""

from __future__ import annotations

import array
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

# The binaries' environment: the daemon's, taken once as the zygote imports this. Copying
# os.environ at each spawn would decode every variable in the monitor, some 250 KiB of the
# memory it shares with the zygote (the zygote and its children never change it).
_ENVIRONMENT = dict(os.environ)


@dataclass(frozen=True)
class OciBinary:
    path: str
    root: str  # the binary's own state directory (--root)

    def argv(self, log: str | os.PathLike[str] | None, *args: str) -> list[str]:
        """The command line for one subcommand; with `log`, errors are written there."""
        logging = [] if log is None else ["--log", os.fspath(log), "--log-format", "json"]
        return [self.path, "--root", self.root, *logging, *args]

    def spawn(self, argv: list[str], stdio: tuple[int, int, int]) -> int:
        """Start `argv` with `stdio` as its fds 0-2 (nothing else is inherited: Python's
        fds are close-on-exec); returns its pid."""
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)]
        return os.posix_spawn(self.path, argv, _ENVIRONMENT, file_actions=actions)

    def run(self, log: str | os.PathLike[str], *args: str) -> str | None:
        """Run a subcommand with its stdio on /dev/null and wait; None when it succeeded,
        else its error message."""
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        try:
            pid = self.spawn(self.argv(log, *args), (null, null, null))
        finally:
            os.close(null)
        _, status = os.waitpid(pid, 0)
        return failure(status, log, f"{os.path.basename(self.path)} {args[0]}")


def read_pid(path: str | os.PathLike[str]) -> int:
    """The pid the binary wrote to its --pid-file (read raw: no text I/O objects to make
    in a monitor that should stay small)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return int(os.read(fd, 64).strip())
    finally:
        os.close(fd)


def failure(status: int, log: str | os.PathLike[str], what: str) -> str | None:
    """None for a zero exit status, else what went wrong: the last error `log` holds."""
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return None
    return f"{what} failed (exit status {code}): {last_error(log)}"


def last_error(log: str | os.PathLike[str]) -> str:
    """The message of the last error (or, lacking one, the last line) in a runtime log."""
    try:
        lines = Path(log).read_text(errors="replace").splitlines()
    except OSError:
        return "no error message"
    fallback = lines[-1].strip() if lines else "no error message"
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            return str(entry.get("msg", "")).strip() or fallback
    return fallback


class ConsoleError(Exception):
    """No terminal arrived on the console socket."""


def receive_pty(console: socket.socket, timeout: float) -> int:
    """The pty master the binary sends to a console socket (SCM_RIGHTS, as runc and crun
    do with --console-socket), once it has exited: the message waits in the socket."""
    console.settimeout(timeout)
    try:
        conn, _ = console.accept()
    except TimeoutError:
        raise ConsoleError("the runtime sent no terminal to the console socket") from None
    fds = array.array("i")
    with conn:
        _, ancillary, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(4 * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if not fds:
        raise ConsoleError("the runtime's console message carried no terminal")
    for extra in fds[1:]:
        os.close(extra)
    os.set_inheritable(fds[0], False)
    return fds[0]
