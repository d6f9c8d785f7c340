"""ContainerStatus: a container's state as kubelet reads it (state, timestamps, exit code,
reason Completed / Error / OOMKilled), and the verbose info crictl inspect shows."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.container import ContainerNotFoundError, ContainerState, Status
from runtime.statedir import StateDir
from sandbox.container_context import ContainerContext
from sandbox.container_events import ContainerEvent, EventType
from sandbox.container_record import CREATED, CREATING, EXITED, RUNNING, Container, Observed
from sandbox.errors import NotFound

# What kubelet shows for containers that ended (as containerd and CRI-O name them).
COMPLETED = "Completed"
ERROR = "Error"
OOM_KILLED = "OOMKilled"
# A container the runtime could not create (its StartContainer fails), as containerd.
START_ERROR = "StartError"
_START_ERROR_EXIT = 128
# The exit code reported when crisp lost track of a container (e.g. after a reboot).
_UNKNOWN_EXIT = 255


@dataclass(frozen=True)
class ContainerStatus:
    container: Container
    observed: Observed
    info: dict[str, Any] | None  # with verbose only


def existing(ctx: ContainerContext, container_id: str) -> Container:
    container = ctx.store.find(container_id)
    if container is None or container.state == CREATING:
        raise NotFound(f"container {container_id} not found")
    return container


def observe(ctx: ContainerContext, container: Container) -> Observed:
    """The runtime's view; a container found exited is recorded (and announced) once."""
    if container.state == EXITED and container.id in ctx.exited:
        return ctx.exited[container.id]
    if container.start_error:
        return Observed(
            EXITED, exit_code=_START_ERROR_EXIT, reason=START_ERROR, message=container.start_error
        )
    if ctx.creates.under_way(container.id):
        return _AS_RECORDED[CREATED]  # its monitor is on the way: no pid to tell yet
    try:
        state = ctx.runtime_of(container).state(container.id)
    except ContainerNotFoundError:
        observed = Observed(
            EXITED,
            exit_code=_UNKNOWN_EXIT,
            reason=ERROR,
            message="the container's runtime state is gone (was the host rebooted?)",
        )
    else:
        observed = _from_runtime(state)
    if observed.state == EXITED:
        if container.state == EXITED:
            ctx.exited[container.id] = observed
        # Kept and announced only while the record is there (not once it is being removed).
        elif ctx.store.set_state(container.id, EXITED) is not None:
            ctx.exited[container.id] = observed
            if container.state == RUNNING:
                ctx.events.publish(
                    ContainerEvent(
                        container.id, container.pod_id, EventType.STOPPED, time.time_ns()
                    )
                )
    return observed


def exit_recorded(ctx: ContainerContext, container: Container) -> bool:
    """Whether the container's monitor has written its exit record. One syscall, no Path
    objects and no exception when it is absent: lists and the exit watcher ask this of every
    container."""
    path = f"{ctx.runtime_of(container).state_root}/{container.id}/{_EXIT_FILE}"
    return os.access(path, os.F_OK)


_EXIT_FILE = StateDir(Path()).exit.name
# What a list reports of a container that has not exited: its recorded state, no details.
_AS_RECORDED = {state: Observed(state) for state in (CREATING, CREATED, RUNNING)}


def glance(ctx: ContainerContext, container: Container) -> Observed:
    """The state without asking the monitor, for lists: a container is CREATED or RUNNING
    as recorded (only StartContainer moves it on) until its monitor writes the exit record.
    Timestamps and pid are left out unless it has exited."""
    if container.state != EXITED and not exit_recorded(ctx, container):
        return _AS_RECORDED[container.state]
    return observe(ctx, container)


def _from_runtime(state: ContainerState) -> Observed:
    if state.status is Status.CREATED:
        return Observed(CREATED, pid=state.pid)
    if state.status is Status.RUNNING:
        return Observed(RUNNING, pid=state.pid, started_ns=state.started_at)
    exit_code = state.exit_code if state.exit_code is not None else _UNKNOWN_EXIT
    if state.oom_killed:
        reason = OOM_KILLED
    elif exit_code == 0:
        reason = COMPLETED
    else:
        reason = ERROR
    return Observed(
        EXITED,
        started_ns=state.started_at,
        finished_ns=state.finished_at,
        exit_code=exit_code,
        reason=reason,
        message=state.error,
    )


def status(ctx: ContainerContext, container_id: str, verbose: bool) -> ContainerStatus:
    container = existing(ctx, container_id)
    observed = observe(ctx, container)
    info = verbose_info(container, observed) if verbose else None
    return ContainerStatus(container, observed, info)


def pod_statuses(ctx: ContainerContext, pod_id: str) -> list[ContainerStatus]:
    """Full statuses of a pod's containers (what an event carries for kubelet's cache)."""
    return [
        ContainerStatus(c, observe(ctx, c), None)
        for c in ctx.store.in_pod(pod_id)
        if c.state != CREATING
    ]


def verbose_info(container: Container, observed: Observed) -> dict[str, Any]:
    try:
        spec = json.loads((Path(container.bundle) / "config.json").read_text())
    except (OSError, ValueError):
        spec = {}
    return {
        "sandboxID": container.pod_id,
        "pid": observed.pid,
        "removing": False,
        "imageRef": container.image_id,
        "snapshotKey": container.id,
        "snapshotter": "overlayfs",
        "runtimeType": "crisp",
        "config": {
            "metadata": {"name": container.name, "attempt": container.attempt},
            "image": {"image": container.image},
            "labels": container.labels,
            "annotations": container.annotations,
            "log_path": container.log_path,
            "tty": container.tty,
            "stdin": container.stdin,
        },
        "runtimeSpec": spec,
        "bundle": container.bundle,
        "cgroupsPath": container.cgroup,
    }
