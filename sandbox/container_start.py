"""StartContainer: let the created container's process execve."""

from __future__ import annotations

import time

from runtime.container import ContainerError, InvalidStateError, Status
from runtime.spec import SpecError
from sandbox.container_context import ContainerContext
from sandbox.container_events import ContainerEvent, EventType
from sandbox.container_record import CREATED, EXITED, RUNNING
from sandbox.container_status import existing
from sandbox.errors import FailedPrecondition


def start(ctx: ContainerContext, container_id: str) -> None:
    container = existing(ctx, container_id)
    failure = ctx.creates.wait(container.id)
    with ctx.locks.hold(container.id):
        container = existing(ctx, container.id)
        if container.start_error:
            raise _start_failure(failure, container.start_error) from None
        if container.state != CREATED:
            raise FailedPrecondition(
                f"container {container.id} is {container.state}, not created: "
                "only a created container can be started"
            )
        state = ctx.runtime_of(container).state(container.id)
        if state.status is not Status.CREATED:
            raise FailedPrecondition(
                f"container {container.id} is {state.status.value}, not created: "
                "only a created container can be started"
            )
        try:
            ctx.runtime_of(container).start(container.id)
        except InvalidStateError as e:
            # The process died before it could be started (killed, or the pod went away).
            ctx.store.set_state(container.id, EXITED)
            raise FailedPrecondition(str(e)) from e
        except BaseException:
            # A process that cannot be executed has exited: the container is done.
            ctx.store.set_state(container.id, EXITED)
            raise
        ctx.store.set_state(container.id, RUNNING)
    ctx.events.publish(
        ContainerEvent(container.id, container.pod_id, EventType.STARTED, time.time_ns())
    )


def _start_failure(failure: BaseException | None, message: str) -> Exception:
    """The runtime create's error, raised anew for each StartContainer (one exception object
    would collect every raise's traceback): of its own class where that is one of the
    runtime's, which take the message alone, so that the gRPC code stays; a plain
    ContainerError otherwise, and after a daemon restart, when only the message is left."""
    if isinstance(failure, ContainerError | SpecError):
        return type(failure)(message)
    return ContainerError(message)
