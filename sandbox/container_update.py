"""UpdateContainerResources (the live cgroup limits) and ReopenContainerLog."""

from __future__ import annotations

from runtime.cgroups import InvalidResourcesError, from_oci
from runtime.container import ContainerError, InvalidStateError, Status
from sandbox.container_config import Resources
from sandbox.container_context import ContainerContext
from sandbox.container_record import resources_doc
from sandbox.container_status import existing
from sandbox.errors import FailedPrecondition, InvalidArgument
from sandbox.oci_spec import linux_resources


def update_resources(ctx: ContainerContext, container_id: str, resources: Resources) -> None:
    container = existing(ctx, container_id)
    ctx.creates.wait(container.id)
    with ctx.locks.hold(container.id):
        container = existing(ctx, container.id)
        if (
            container.start_error
            or ctx.runtime_of(container).state(container.id).status is Status.STOPPED
        ):
            raise FailedPrecondition(f"container {container.id} is stopped: nothing to update")
        try:
            limits = from_oci(linux_resources(resources))
        except InvalidResourcesError as e:
            raise InvalidArgument(f"container {container.id}: resources: {e}") from e
        try:
            ctx.runtime_of(container).update(container.id, limits)
        except ContainerError as e:
            raise InvalidArgument(f"container {container.id}: resources: {e}") from e
        ctx.store.update(container.id, resources=resources_doc(resources))


def reopen_log(ctx: ContainerContext, container_id: str) -> None:
    container = existing(ctx, container_id)
    if not container.log_path:
        return  # nothing is logged, so nothing to reopen
    ctx.creates.wait(container.id)
    if existing(ctx, container.id).start_error:
        raise FailedPrecondition(f"container {container.id} is not running: it never started")
    try:
        ctx.runtime_of(container).reopen_log(container.id)
    except InvalidStateError as e:
        raise FailedPrecondition(f"container {container.id} is not running: {e}") from e
