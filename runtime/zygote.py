"""The fork server: the only process that forks monitors, pause processes and containers.

The daemon is multi-threaded (gRPC), and a forked copy of a threaded process can deadlock on
a lock some other thread held at fork time. So before any thread exists the daemon starts
this zygote, a single-threaded child that only ever forks itself. Forking a warm interpreter
costs about a millisecond, where exec'ing a fresh one costs over 100 ms.

The zygote leads a session of its own, away from the daemon's (and its terminal); each
spawned process gets a process group of its own in that session, without leading the
session, so it can never acquire a controlling terminal. What it spawned is reaped as it
exits (the zygote ignores SIGCHLD). The zygote dies with the daemon (PR_SET_PDEATHSIG); what
it spawned is then reparented to init and keeps running (monitors must survive a daemon
restart). A double fork would give each its own session and reparent it at once, but the
second fork and the intermediate's exit cost every spawn milliseconds (the heap is large),
on the path of each container create.

What a spawned process runs is an *entry point*: a function registered by name with
`entry_point`, imported before the zygote starts, called with JSON arguments and the file
descriptors the caller passed. Its return value is the process's exit status.
"""

from __future__ import annotations

import array
import contextlib
import gc
import json
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from runtime import syscalls

EntryPoint = Callable[[dict[str, Any], list[int]], int]

_ENTRY_POINTS: dict[str, EntryPoint] = {}

_MAX_MESSAGE = 1 << 20
_MAX_FDS = 16


class ZygoteError(RuntimeError):
    """The fork server failed to spawn a process, or is gone."""


def entry_point(name: str) -> Callable[[EntryPoint], EntryPoint]:
    """Register `function` as what a process spawned with `name` runs."""

    def register(function: EntryPoint) -> EntryPoint:
        if name in _ENTRY_POINTS and _ENTRY_POINTS[name] is not function:
            raise ValueError(f"zygote entry point {name!r} registered twice")
        _ENTRY_POINTS[name] = function
        return function

    return register


def _send(sock: socket.socket, payload: dict[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(payload).encode()
    ancillary = []
    if fds:
        ancillary.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds)))
    sock.sendmsg([data], ancillary)


def _receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    fd_bytes = socket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)
    data, ancillary, _flags, _address = sock.recvmsg(_MAX_MESSAGE, fd_bytes)
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
            fds.extend(received)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(data), fds


class Zygote:
    """The daemon's handle on its fork server. `spawn` is safe to call from any thread."""

    def __init__(self) -> None:
        if threading.active_count() > 1:
            raise ZygoteError("the zygote must be started before any thread exists")
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Objects alive now are shared copy-on-write with every spawned process; keep the
        # collector from touching (and so copying) them in the children.
        gc.collect()
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # the zygote
            parent_end.close()
            status = 1
            try:
                status = _serve(child_end)
            finally:
                os._exit(status)
        gc.unfreeze()
        child_end.close()
        self.pid = pid
        self._socket = parent_end
        self._lock = threading.Lock()

    def spawn(self, entry: str, args: dict[str, Any], fds: Sequence[int] = ()) -> int:
        """Start a process running entry point `entry`; returns its pid once it runs."""
        with self._lock:
            try:
                _send(self._socket, {"entry": entry, "args": args}, fds)
                reply, extra = _receive(self._socket)
            except OSError as e:
                raise ZygoteError(f"fork server (pid {self.pid}) is gone: {e}") from e
        for fd in extra:
            os.close(fd)
        if reply is None:
            raise ZygoteError(f"fork server (pid {self.pid}) closed its socket")
        if "error" in reply:
            raise ZygoteError(f"cannot spawn {entry!r}: {reply['error']}")
        return int(reply["pid"])

    def close(self) -> None:
        """Stop the fork server. Processes it spawned keep running."""
        self._socket.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _serve(control: socket.socket) -> int:
    syscalls.set_pdeathsig(signal.SIGKILL)
    if os.getppid() == 1:  # the daemon died before the line above took effect
        return 0
    syscalls.set_name("crisp-zygote")
    os.setsid()
    # Terminal signals belong to the daemon; the zygote only goes when its socket closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The kernel reaps what the zygote spawned (no zombies), with no Python handler: a
    # spawned process resets SIGCHLD first, and signal.signal() would try to make a
    # Handlers member of such a function, which costs each process ~100 KiB of memory it
    # shares with the zygote (bench/monitor_memory.py).
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            request, fds = _receive(control)
        except OSError:
            return 0
        if request is None:
            return 0
        try:
            pid = _fork_entry(control, request, fds)
            reply: dict[str, Any] = {"pid": pid}
        except Exception as e:  # one bad request must not take the fork server down
            reply = {"error": f"{type(e).__name__}: {e}"}
        finally:
            for fd in fds:
                os.close(fd)
        _send(control, reply)


def _fork_entry(control: socket.socket, request: dict[str, Any], fds: list[int]) -> int:
    name = request.get("entry")
    function = _ENTRY_POINTS.get(str(name))
    if function is None:
        raise ZygoteError(f"unknown entry point {name!r}")
    args = request.get("args") or {}
    # The zygote and its children are single-threaded, and the interpreter's fork hooks
    # would cost every spawned process memory (see fork_single_threaded). Skipping them
    # leaves siblings with one `random` state: nothing spawned here may rely on it.
    pid = syscalls.fork_single_threaded()
    if pid == 0:
        status = 1
        try:
            # First: this process's own children must not be reaped by the kernel unseen.
            for signum in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            os.setpgid(0, 0)
            control.close()
            status = function(args, fds)
        finally:
            os._exit(status)
    return pid
