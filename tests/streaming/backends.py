"""A real StreamingBackend for the tests: exec runs local processes (on pipes, or on a pty
from os.openpty), attach joins long-running local processes, port-forward connects into a
network namespace the test made. No containers, but every byte goes through real fds."""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import signal
import socket
import struct
import subprocess
import termios
import threading
from collections.abc import Sequence

from cri.streaming import ProcessIO, StreamingError, TerminalSize
from tests.streaming.netns import dial

EXEC_CONTAINER = "exec-target"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy(src: int, dst: int, close_dst: bool = False) -> None:
    """src → dst until EOF (or EIO: a pty whose other side closed); closes src."""
    try:
        while data := os.read(src, 65536):
            _write_all(dst, data)
    except OSError:
        pass
    finally:
        os.close(src)
        if close_dst:
            os.close(dst)


def _set_size(master: int, size: TerminalSize) -> None:
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))


def _kill_on_cancel(proc: subprocess.Popen[bytes], io: ProcessIO) -> None:
    # cancelled is the connection's "closed" event, so this thread always ends.
    io.cancelled.wait()
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _exit_code(proc: subprocess.Popen[bytes]) -> int:
    code = proc.wait()
    return 128 - code if code < 0 else code


class AttachTarget:
    """A long-running process whose output fans out to every attached client."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._lock = threading.Lock()
        self._attached: list[ProcessIO] = []
        self._open_outputs = 2
        self.exited = threading.Event()
        assert self.proc.stdout and self.proc.stderr
        self._readers = [
            threading.Thread(target=self._fan_out, args=(self.proc.stdout.fileno(), False)),
            threading.Thread(target=self._fan_out, args=(self.proc.stderr.fileno(), True)),
        ]
        for reader in self._readers:
            reader.start()

    def _fan_out(self, fd: int, is_stderr: bool) -> None:
        while data := os.read(fd, 65536):
            with self._lock:
                for io in self._attached:
                    target = io.stderr if is_stderr else io.stdout
                    if target is not None:
                        with contextlib.suppress(OSError):
                            _write_all(target, data)
        # Attachers stay until both outputs are drained, or the last stderr bytes are lost.
        with self._lock:
            self._open_outputs -= 1
            if self._open_outputs == 0:
                self.exited.set()

    def attach(self, io: ProcessIO) -> None:
        with self._lock:
            self._attached.append(io)
        if io.stdin is not None:
            threading.Thread(target=self._feed, args=(os.dup(io.stdin),), daemon=True).start()
        while not self.exited.wait(0.05) and not io.cancelled.is_set():
            pass
        with self._lock:
            self._attached.remove(io)

    def _feed(self, fd: int) -> None:
        assert self.proc.stdin
        try:
            while data := os.read(fd, 65536):
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
        except OSError:
            pass
        finally:
            os.close(fd)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for reader in self._readers:
            reader.join()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class LocalBackend:
    def __init__(self) -> None:
        self.containers: dict[str, AttachTarget] = {}
        self.pods: dict[str, int | None] = {}  # pod ID → netns fd, None for host network
        self.exec_pids: list[int] = []

    def exec(self, container_id: str, cmd: Sequence[str], io: ProcessIO) -> int:
        if container_id != EXEC_CONTAINER and container_id not in self.containers:
            raise StreamingError(f"container {container_id} not found")
        if io.tty:
            return self._exec_tty(cmd, io)
        proc = subprocess.Popen(
            list(cmd),
            stdin=io.stdin if io.stdin is not None else subprocess.DEVNULL,
            stdout=io.stdout if io.stdout is not None else subprocess.DEVNULL,
            stderr=io.stderr if io.stderr is not None else subprocess.DEVNULL,
            start_new_session=True,
        )
        self.exec_pids.append(proc.pid)
        threading.Thread(target=_kill_on_cancel, args=(proc, io), daemon=True).start()
        return _exit_code(proc)

    def _exec_tty(self, cmd: Sequence[str], io: ProcessIO) -> int:
        master, slave = os.openpty()
        # Sizes that came before the process: the last one is the terminal's from the start.
        with contextlib.suppress(queue.Empty):
            while True:
                size = io.resizes.get_nowait()
                if size is None:
                    io.resizes.put(None)  # leave the end marker for the resize thread
                    break
                _set_size(master, size)
        try:
            proc = subprocess.Popen(
                list(cmd), stdin=slave, stdout=slave, stderr=slave, start_new_session=True
            )
        finally:
            os.close(slave)
        self.exec_pids.append(proc.pid)
        threading.Thread(target=_kill_on_cancel, args=(proc, io), daemon=True).start()
        resizer = threading.Thread(target=self._apply_resizes, args=(master, io))
        resizer.start()
        if io.stdin is not None:
            # Our own copies: the server closes its fds as soon as we return.
            threading.Thread(
                target=_copy, args=(os.dup(io.stdin), os.dup(master), True), daemon=True
            ).start()
        output = None
        if io.stdout is not None:
            output = threading.Thread(target=_copy, args=(os.dup(master), io.stdout))
            output.start()
        code = _exit_code(proc)
        if output is not None:
            output.join()
        io.resizes.put(None)
        resizer.join()
        os.close(master)
        return code

    @staticmethod
    def _apply_resizes(master: int, io: ProcessIO) -> None:
        while (size := io.resizes.get()) is not None:
            _set_size(master, size)

    def attach(self, container_id: str, io: ProcessIO) -> None:
        target = self.containers.get(container_id)
        if target is None:
            raise StreamingError(f"container {container_id} not found")
        target.attach(io)

    def port_forward(self, pod_sandbox_id: str, port: int) -> socket.socket:
        if pod_sandbox_id not in self.pods:
            raise StreamingError(f"pod sandbox {pod_sandbox_id} not found")
        return dial(self.pods[pod_sandbox_id], port)
