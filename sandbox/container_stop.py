"""StopContainer: the stop signal, then SIGKILL to every process of the container when the
timeout runs out. Idempotent: a stopped, removed or unknown container is stopped enough."""

from __future__ import annotations

import contextlib
import signal

from runtime.cgroups import CgroupError
from runtime.container import ContainerError, ContainerNotFoundError, InvalidStateError, Status
from runtime.procfs import start_time, wait_exit
from sandbox.container_context import ContainerContext
from sandbox.container_record import CREATING, EXITED, Container
from sandbox.container_status import observe
from sandbox.errors import DeadlineExceeded

_KILL_WAIT_SECONDS = 10.0


def stop(ctx: ContainerContext, container_id: str, timeout: int) -> None:
    container = ctx.store.find(container_id)
    if container is None or container.state == CREATING:
        return
    ctx.creates.wait(container.id)
    with ctx.locks.hold(container.id):
        halt(ctx, container, timeout)


def halt(ctx: ContainerContext, container: Container, timeout: int) -> None:
    """Stop the container's process (the caller has waited for its create and holds its
    lock)."""
    if container.state == EXITED and container.id in ctx.exited:
        return  # its exit is recorded: nothing of it runs (RemoveContainer after a stop)
    try:
        state = ctx.runtime_of(container).state(container.id)
    except ContainerNotFoundError:
        return
    if state.status is not Status.STOPPED:
        if state.status is Status.RUNNING and timeout > 0:
            started = start_time(state.pid)
            with contextlib.suppress(InvalidStateError):
                ctx.runtime_of(container).kill(container.id, _signal_number(container.stop_signal))
            wait_exit(state.pid, started, timeout)
        # What is left: a main process that ignored the signal, or, in a PID namespace
        # shared with the pod, its children (they would hold its output open).
        if _has_processes(ctx, container):
            try:
                ctx.runtime_of(container).kill(container.id, signal.SIGKILL, all=True)
            except ContainerError:
                # The main process is gone and its monitor takes no more signals: the
                # strays are killed through the cgroup.
                with contextlib.suppress(CgroupError, OSError):
                    ctx.cgroups(container.cgroup).kill()
        try:
            ctx.runtime_of(container).wait(container.id, _KILL_WAIT_SECONDS)
        except ContainerError as e:
            raise DeadlineExceeded(f"container {container.id}: {e}") from e
    observe(ctx, container)


def _has_processes(ctx: ContainerContext, container: Container) -> bool:
    """Whether anything still runs in the container's cgroup: a process that has exited
    with nothing left behind needs no killing (which freezes the cgroup, a few ms)."""
    try:
        return bool(ctx.cgroups(container.cgroup).pids())
    except (CgroupError, OSError):
        return True


def _signal_number(name: str) -> int:
    if name.isdigit():
        return int(name)
    if name.startswith("SIGRTMIN+"):
        return int(signal.SIGRTMIN) + int(name.removeprefix("SIGRTMIN+"))
    if name.startswith("SIGRTMAX-"):
        return int(signal.SIGRTMAX) - int(name.removeprefix("SIGRTMAX-"))
    try:
        return int(signal.Signals[name])
    except KeyError:
        return int(signal.SIGTERM)
