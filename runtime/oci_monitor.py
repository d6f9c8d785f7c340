"""The monitor of a container an external OCI runtime (runc, crun) runs: the zygote entry
point "oci-monitor", in the way conmon serves CRI-O.

It is the embedded runtime's monitor (runtime/monitor.py) with the container's creation
and start handed to the binary: it runs `create` with the container's stdio pipes as the
binary's own stdio (or with a console socket, from which it takes the pty master of a
terminal container), and being a child subreaper it inherits the container's init when the
binary exits. Logging, attach, resize, reaping and the exit record are the embedded
monitor's, so the daemon treats both kinds of container alike and both survive its restart.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Any

from runtime import syscalls as sc
from runtime.cgroups import CgroupError
from runtime.monitor import CreateError, Monitor, serve
from runtime.monitor import _log as diagnostic
from runtime.oci_command import ConsoleError, OciBinary, failure, read_pid, receive_pty
from runtime.zygote import entry_point

_CONSOLE_WAIT_SECONDS = 5.0


# Paths in the container's state directory, as plain strings like the monitor's own
# (runtime/monitor.py: pathlib would cost each monitor memory).


def runtime_log(state_dir: str) -> str:
    """Where the binary writes its errors for this container's create, start and delete."""
    return f"{state_dir}/runtime.log"


def pid_file(state_dir: str) -> str:
    return f"{state_dir}/init.pid"


def console_socket(state_dir: str) -> str:
    return f"{state_dir}/console.sock"


class ExternalMonitor(Monitor):
    def __init__(self, args: dict[str, Any], state_dir: str, result_fd: int) -> None:
        self.binary = OciBinary(str(args["binary"]), str(args["root"]))
        self.container_id = str(args["id"])
        super().__init__(args, state_dir, result_fd, [])

    def create(self, stdin: bool) -> None:
        sc.set_child_subreaper()  # the init is ours once the binary's create has exited
        self._open_control()
        log = runtime_log(self.state_dir)
        argv = ["create", "--bundle", self.bundle, "--pid-file", pid_file(self.state_dir)]
        console: socket.socket | None = None
        if self.terminal:
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            console.bind(console_socket(self.state_dir))
            console.listen(1)
            argv += ["--console-socket", console_socket(self.state_dir)]
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            stdio, child_fds = (null, null, null), [null]
        else:
            stdio, child_fds = self._stdio(stdin)
        try:
            try:
                pid = self.binary.spawn(self.binary.argv(log, *argv, self.container_id), stdio)
            finally:
                for fd in set(child_fds):
                    os.close(fd)
            _, status = os.waitpid(pid, 0)
            error = failure(status, log, f"{os.path.basename(self.binary.path)} create")
            if error is not None:
                raise CreateError(error)
            # No OOM baseline is read: the binary makes the container's cgroup afresh, and
            # reading the cgroup's statistics here would cost the monitor half a MiB.
            self.init_pid = read_pid(pid_file(self.state_dir))
            if console is not None:
                self._take_console(console, stdin)
        except BaseException:
            self._abort()
            raise
        finally:
            if console is not None:
                console.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(console_socket(self.state_dir))

    def _take_console(self, console: socket.socket, stdin: bool) -> None:
        """The pty master the binary sent becomes the container's output, and its input
        when stdin is open."""
        try:
            master = receive_pty(console, _CONSOLE_WAIT_SECONDS)
        except ConsoleError as exc:
            raise CreateError(str(exc)) from None
        os.set_blocking(master, False)
        self.outputs[master] = "stdout"
        if stdin:
            self.stdin_fd = master

    def _abort(self) -> None:
        """Undo create: `delete --force` kills what the binary made and removes its state."""
        error = self.binary.run(runtime_log(self.state_dir), "delete", "--force", self.container_id)
        if error is not None:
            # The binary may have failed before it recorded anything: nothing to delete.
            diagnostic(f"deleting after a failed create: {error}")
        try:
            self.cgroup.destroy()
        except CgroupError as exc:
            diagnostic(f"removing cgroup after a failed create: {exc}")
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def _start(self) -> dict[str, Any]:
        self._reap(self.wake_r)  # an init killed while created must not count as started
        if self._status() != "created":
            raise ValueError(f"container is {self._status()}, not created")
        error = self.binary.run(runtime_log(self.state_dir), "start", self.container_id)
        if error is not None:
            self.start_error = error
            raise ValueError(error)
        self.started_at = time.time_ns()
        return {"ok": True, "started_at": self.started_at}


@entry_point("oci-monitor")
def main(args: dict[str, Any], fds: list[int]) -> int:
    """args: those of the embedded monitor ("monitor") that do not come from the spec
    (bundle, state_dir, cgroups_path, log_path, max_line, max_log_size, stdin,
    stdin_once, terminal), and binary, root (its --root) and id; fds[0]: where the
    answer goes."""
    return serve(args, fds[0], lambda state_dir: ExternalMonitor(args, state_dir, fds[0]))
