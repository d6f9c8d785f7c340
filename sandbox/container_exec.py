"""ExecSync: run a command in a running container and collect its output and exit code.

The process runs through the container's monitor machinery (runtime.Runtime.exec: the
container's namespaces, cgroup, user and seccomp profile) and is reaped there; crisp only
reads its two pipes. A process left in the background that keeps them open does not hold
the call: reading stops shortly after the command has exited.
"""

from __future__ import annotations

import dataclasses
import os
import selectors
import threading
import time
from dataclasses import dataclass

from runtime.container import ExecTimeoutError, InvalidStateError
from sandbox.container_context import ContainerContext
from sandbox.container_status import existing
from sandbox.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument

MAX_OUTPUT = 16 << 20  # per stream: what kubelet accepts in one gRPC message
_DRAIN_SECONDS = 0.2  # how long output is still read after the command exited


@dataclass(frozen=True)
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


def exec_sync(
    ctx: ContainerContext, container_id: str, command: list[str], timeout: int
) -> ExecResult:
    if not command:
        raise InvalidArgument("ExecSync: cmd is required")
    container = existing(ctx, container_id)
    ctx.creates.wait(container.id)
    if existing(ctx, container.id).start_error:
        raise FailedPrecondition(f"container {container.id} is not running: it never started")
    base = ctx.runtime_of(container).process(container.id)
    process = dataclasses.replace(base, args=tuple(command), terminal=False)
    out_read, out_write = os.pipe2(os.O_CLOEXEC)
    err_read, err_write = os.pipe2(os.O_CLOEXEC)
    collector = _Collector({out_read: bytearray(), err_read: bytearray()})
    reader = threading.Thread(target=collector.run, name=f"exec-{container.id[:12]}")
    reader.start()
    try:
        try:
            exit_code = ctx.runtime_of(container).exec(
                container.id,
                process,
                stdout=out_write,
                stderr=err_write,
                timeout=float(timeout) if timeout > 0 else None,
            )
        finally:
            os.close(out_write)
            os.close(err_write)
            collector.finish()
            reader.join()
    except ExecTimeoutError as e:
        raise DeadlineExceeded(
            f"command {command!r} in container {container.id} timed out after {timeout}s"
        ) from e
    except InvalidStateError as e:
        raise FailedPrecondition(f"cannot exec in container {container.id}: {e}") from e
    finally:
        os.close(out_read)
        os.close(err_read)
    return ExecResult(
        bytes(collector.output[out_read]), bytes(collector.output[err_read]), exit_code
    )


class _Collector:
    """Reads both pipes until they close, or until a short while after finish()."""

    def __init__(self, output: dict[int, bytearray]) -> None:
        self.output = output
        self._finished = threading.Event()

    def finish(self) -> None:
        self._finished.set()

    def run(self) -> None:
        with selectors.DefaultSelector() as selector:
            for fd in self.output:
                selector.register(fd, selectors.EVENT_READ)
            deadline: float | None = None
            while selector.get_map():
                if deadline is None and self._finished.is_set():
                    deadline = time.monotonic() + _DRAIN_SECONDS
                if deadline is not None and time.monotonic() > deadline:
                    return
                for key, _ in selector.select(0.05):
                    fd = int(key.fd)
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        selector.unregister(fd)
                        continue
                    buffer = self.output[fd]
                    buffer += chunk[: max(0, MAX_OUTPUT - len(buffer))]
