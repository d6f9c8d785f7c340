"""Interactive exec and attach for the streaming server: the container side of
`kubectl exec -it` and `kubectl attach`.

The transport (cri/streaming) hands over plain file descriptors; here they are joined to a
process in the container (exec) or to the container's own stdio through its monitor (attach).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import select
import struct
import termios
import threading
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from runtime.container import ExecCancelledError, InvalidStateError
from runtime.control import STDERR
from runtime.handler import ContainerRuntime
from runtime.spec import Process
from sandbox.container_context import ContainerContext
from sandbox.container_status import existing
from sandbox.errors import FailedPrecondition, InvalidArgument

_CHUNK = 1 << 16


class TerminalSize(Protocol):
    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...


class Resizes(Protocol):
    """Terminal sizes as the client sends them; None ends the stream (a queue.Queue)."""

    def get(self) -> TerminalSize | None: ...

    def put(self, item: None) -> None: ...


@dataclass
class StreamIO:
    """The client's side of one session; fds are owned by the caller."""

    tty: bool
    stdin: int | None
    stdout: int | None
    stderr: int | None
    resizes: Resizes
    cancelled: threading.Event


def _set_size(fd: int, size: TerminalSize) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))


def _copy(source: int, target: int | None, done: threading.Event) -> None:
    """Copy until end of file (or EIO: a pty whose other side has closed)."""
    try:
        while not done.is_set():
            readable, _, _ = select.select([source], [], [], 0.1)
            if not readable:
                continue
            data = os.read(source, _CHUNK)
            if not data:
                return
            if target is not None:
                os.write(target, data)
    except OSError:
        return


def _follow_resizes(io: StreamIO, apply: Callable[[TerminalSize], None]) -> threading.Thread:
    def run() -> None:
        while True:
            size = io.resizes.get()
            if size is None:
                return
            apply(size)

    thread = threading.Thread(target=run, name="resize", daemon=True)
    thread.start()
    return thread


def exec_stream(ctx: ContainerContext, container_id: str, cmd: Sequence[str], io: StreamIO) -> int:
    """Run `cmd` in the container wired to the client's stdio; returns its exit code."""
    if not cmd:
        raise InvalidArgument("Exec: cmd is required")
    container = existing(ctx, container_id)
    runtime = ctx.runtime_of(container)
    base = runtime.process(container.id)
    process = dataclasses.replace(base, args=tuple(cmd), terminal=io.tty)
    try:
        if io.tty:
            return _exec_tty(runtime, container.id, process, io)
        return runtime.exec(
            container.id,
            process,
            stdin=io.stdin,
            stdout=io.stdout,
            stderr=io.stderr,
            cancel=io.cancelled,
        )
    except ExecCancelledError:
        return 137  # killed because the client went away
    except InvalidStateError as e:
        raise FailedPrecondition(f"cannot exec in container {container.id}: {e}") from e


def _exec_tty(runtime: ContainerRuntime, container_id: str, process: Process, io: StreamIO) -> int:
    master, slave = os.openpty()
    # Only a carrier: the runtime gives the process a pty of the container's own, whose line
    # discipline echoes and edits; this one must pass bytes through untouched.
    tty.setraw(slave, termios.TCSANOW)
    done = threading.Event()
    pumps = [threading.Thread(target=_copy, args=(master, io.stdout, done), name="tty-out")]
    if io.stdin is not None:
        pumps.append(threading.Thread(target=_copy, args=(io.stdin, master, done), name="tty-in"))
    resizer = _follow_resizes(io, lambda size: _set_size(master, size))
    for pump in pumps:
        pump.start()
    try:
        return runtime.exec(
            container_id,
            process,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cancel=io.cancelled,
        )
    finally:
        os.close(slave)
        pumps[0].join(timeout=1)  # what the process wrote last is still in the pty
        done.set()
        for pump in pumps:
            pump.join()
        os.close(master)
        io.resizes.put(None)
        resizer.join(timeout=1)


def attach_stream(ctx: ContainerContext, container_id: str, io: StreamIO) -> None:
    """Join the client to the container's stdio until the container's output ends or the
    client goes away."""
    container = existing(ctx, container_id)
    try:
        runtime = ctx.runtime_of(container)
        attachment = runtime.attach(container.id, stdin=io.stdin is not None)
    except InvalidStateError as e:
        raise FailedPrecondition(f"cannot attach to container {container.id}: {e}") from e
    done = threading.Event()
    feeder: threading.Thread | None = None
    if io.stdin is not None:
        stdin = io.stdin

        def feed() -> None:
            try:
                while not done.is_set():
                    readable, _, _ = select.select([stdin], [], [], 0.1)
                    if not readable:
                        continue
                    data = os.read(stdin, _CHUNK)
                    if not data:
                        attachment.close_stdin()
                        return
                    attachment.write(data)
            except OSError:
                return

        feeder = threading.Thread(target=feed, name="attach-in", daemon=True)
        feeder.start()
    resizer = _follow_resizes(io, lambda size: _resize(runtime, container.id, size))

    def hang_up_when_cancelled() -> None:
        # Closing the attachment ends the read loop below: the client has gone.
        while not done.wait(0.1):
            if io.cancelled.is_set():
                with contextlib.suppress(OSError):
                    attachment.close()
                return

    watcher = threading.Thread(target=hang_up_when_cancelled, name="attach-cancel", daemon=True)
    watcher.start()
    try:
        while True:
            try:
                chunk = attachment.read()
            except OSError:
                return
            if chunk is None:
                return
            kind, data = chunk
            target = io.stderr if kind == STDERR and io.stderr is not None else io.stdout
            if target is not None:
                with contextlib.suppress(OSError):
                    os.write(target, data)
    finally:
        done.set()
        with contextlib.suppress(OSError):
            attachment.close()
        io.resizes.put(None)
        resizer.join(timeout=1)
        if feeder is not None:
            feeder.join(timeout=1)


def _resize(runtime: ContainerRuntime, container_id: str, size: TerminalSize) -> None:
    with contextlib.suppress(Exception):  # a resize racing the exit is harmless
        runtime.resize(container_id, size.width, size.height)
