"""ListContainers and StreamContainers: the containers matching a filter, oldest first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sandbox.container_context import ContainerContext
from sandbox.container_record import CREATING, Container, Observed
from sandbox.container_status import glance


@dataclass(frozen=True)
class ContainerFilter:
    id: str = ""  # the full id or a prefix of it
    state: str | None = None  # CREATED, RUNNING or EXITED
    pod_id: str = ""  # the full pod id or a prefix of it
    labels: Mapping[str, str] = field(default_factory=dict)  # every pair must match


@dataclass(frozen=True)
class ListedContainer:
    container: Container
    observed: Observed


def list_containers(ctx: ContainerContext, wanted: ContainerFilter) -> list[ListedContainer]:
    listed = []
    for container in ctx.store.all():
        if container.state == CREATING:
            continue  # not a container yet: it appears once CreateContainer has answered
        if wanted.id and not container.id.startswith(wanted.id):
            continue
        if wanted.pod_id and not container.pod_id.startswith(wanted.pod_id):
            continue
        if any(container.labels.get(k) != v for k, v in wanted.labels.items()):
            continue
        observed = glance(ctx, container)
        if wanted.state is None or observed.state == wanted.state:
            listed.append(ListedContainer(container, observed))
    return listed
