"""After a restart: finish what a crash interrupted; while serving: notice exits.

A CreateContainer that was interrupted leaves a bundle no record names (or, from older
versions, a CREATING record): either is removed. A container whose runtime create was
interrupted (CREATED, its worker gone: see sandbox.runtime_creates) loses what the runtime
had made of it and reports as exited; a removed one (REMOVING) goes to the collector. Exits
are found by the monitors' exit records: the watcher only looks for the file, so it costs
one stat per running container per round.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from runtime.container import ContainerNotFoundError
from sandbox import image_volumes, rootfs
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


def remove_unrecorded_bundles(ctx: ContainerContext) -> None:
    """Bundles no record names: CreateContainer writes its record once the bundle is
    complete, so a crash before that leaves one (its overlay and image volumes perhaps
    mounted) and nothing else."""
    recorded = {c.id for c in ctx.store.all(removing=True)}
    for bundle in ctx.settings.containers_dir.iterdir():
        if bundle.name in recorded:
            continue
        try:
            image_volumes.unmount(bundle)
            rootfs.remove(bundle)
            log.info(
                "container bundle %s: removed (a create interrupted before its record)", bundle
            )
        except OSError:
            log.exception("container bundle %s: removing it failed", bundle)


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
