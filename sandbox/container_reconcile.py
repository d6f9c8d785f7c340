"""After a restart: finish what a crash interrupted; while serving: notice exits.

A container whose CreateContainer was interrupted (record still CREATING) is removed; one
whose runtime create was (CREATED, with the worker gone: see sandbox.runtime_creates) loses
what the runtime had made of it and reports as exited; a removed one (REMOVING) goes to the
collector. Exits
are found by the monitors' exit records: the watcher only looks for the file, so it costs
one stat per running container per round.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from runtime.container import ContainerNotFoundError
from sandbox.container_context import ContainerContext
from sandbox.container_record import CREATED, CREATING, REMOVING, RUNNING, Container
from sandbox.container_remove import dismantle
from sandbox.container_status import exit_recorded, observe

log = logging.getLogger(__name__)

WATCH_SECONDS = 0.5


def reconcile(ctx: ContainerContext) -> None:
    for container in ctx.store.all(removing=True):
        if container.state == CREATING:
            try:
                dismantle(ctx, container)
                log.info("container %s: removed what an interrupted create left", container.id)
            except Exception:
                log.exception("container %s: cleanup of an interrupted create failed", container.id)
        elif container.state == REMOVING:
            ctx.removed.put(container.id)  # for the collector, once it runs
        elif container.state == CREATED:
            try:
                _settle_runtime_create(ctx, container)
            except Exception:
                log.exception("container %s: cleanup of an interrupted create failed", container.id)


def _settle_runtime_create(ctx: ContainerContext, container: Container) -> None:
    runtime = ctx.runtime_of(container)
    try:
        runtime.state(container.id)
        return  # its create had finished
    except ContainerNotFoundError:
        pass
    with contextlib.suppress(ContainerNotFoundError):
        runtime.delete(container.id, force=True)  # a monitor may wait for an answer
    observe(ctx, container)  # exited: its runtime state is gone
    log.info("container %s: removed what an interrupted runtime create left", container.id)


def notice_exits(ctx: ContainerContext) -> None:
    """Record (and announce) every exit that happened since the last call."""
    for container in ctx.store.all():
        if container.state not in (CREATED, RUNNING):
            continue
        if exit_recorded(ctx, container):
            observe(ctx, container)


def watch_exits(ctx: ContainerContext, stop: threading.Event) -> None:
    while not stop.wait(WATCH_SECONDS):
        try:
            notice_exits(ctx)
        except Exception:
            log.exception("watching for container exits failed; retrying")
