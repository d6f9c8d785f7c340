"""CreateContainer: validate, reserve the name, then make the container step by step (overlay
rootfs, user, OCI spec, bundle). A failure at any step undoes every earlier one, so a bad
request leaves nothing behind. The runtime's part (cgroup, monitor, the process waiting to
execve) follows in a worker once the RPC has answered (see sandbox.runtime_creates)."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import secrets
import shutil
import time
from pathlib import Path

from imagesvc.imageconfig import ImageConfig
from runtime.container import ContainerNotFoundError, Status
from runtime.spec import IdMapping
from sandbox import image_volumes, rootfs
from sandbox.container_config import ContainerRequest, NamespaceMode
from sandbox.container_context import ContainerContext
from sandbox.container_events import ContainerEvent, EventType
from sandbox.container_pod import log_base, pod_context, ready_pod
from sandbox.container_record import (
    CREATED,
    EXITED,
    Container,
    mount_doc,
    resources_doc,
)
from sandbox.container_user import ProcessUser, resolve_user
from sandbox.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    Unimplemented,
)
from sandbox.oci_spec import ImageFacts, build_spec, stop_signal
from sandbox.pod import PodSandbox
from sandbox.runtime_creates import RuntimeCreatesClosed

log = logging.getLogger(__name__)


def create(ctx: ContainerContext, pod_id: str, request: ContainerRequest) -> str:
    if not request.name:
        raise InvalidArgument("container config: metadata.name is required")
    if not request.image:
        raise InvalidArgument(f"container {request.name!r}: image is required")
    pod = ready_pod(ctx, pod_id)
    _check_user_namespace(request, pod)
    problem = ctx.runtime_for(pod.runtime_handler).problem()
    if problem is not None:
        raise FailedPrecondition(f"pod sandbox {pod.id}: {problem}")
    image = ctx.images.find(request.image)
    if image is None:
        raise NotFound(f"image {request.image!r} not found: pull it first")
    config = ctx.images.config_of(image)
    facts = image_facts(request.image, config)
    volume_images = image_volumes.find_images(ctx.images, request.mounts)
    log_path = _log_path(log_base(ctx, pod), request.log_path)
    container_id = secrets.token_hex(32)
    container = Container(
        id=container_id,
        pod_id=pod.id,
        name=request.name,
        attempt=request.attempt,
        state="",
        created_ns=time.time_ns(),
        image=request.image,
        image_id=str(image.id),
        layers=[
            str(layer) for record in (image, *volume_images.values()) for layer in record.layers
        ],
        bundle=str(ctx.settings.containers_dir / container_id),
        cgroup="",
        log_path=str(log_path) if log_path else "",
        labels=dict(request.labels),
        annotations=dict(request.annotations),
        mounts=[
            mount_doc(m, str(volume_images[i].id) if i in volume_images else "")
            for i, m in enumerate(request.mounts)
        ],
        resources=resources_doc(request.resources),
        stop_signal=stop_signal(request, facts),
        tty=request.tty,
        stdin=request.stdin,
        stdin_once=request.stdin_once,
        pid_namespace=request.security.namespaces.pid.value,
        runtime_handler=pod.runtime_handler,
    )
    ctx.creates.expect(container_id)  # before anyone can see it: they wait for the worker
    try:
        ctx.store.reserve(container)
    except BaseException:
        ctx.creates.abandon(container_id)
        raise
    with ctx.locks.hold(container_id):
        made_dirs: list[Path] = []
        try:
            lowers = ctx.images.lower_dirs(image)
            root = rootfs.make(Path(container.bundle), lowers, _rootfs_owner(pod))
            mounts = image_volumes.mount(
                Path(container.bundle),
                request.mounts,
                {i: ctx.images.lower_dirs(record) for i, record in volume_images.items()},
            )
            user = _user(root, request, config)
            spec = build_spec(
                container_id=container_id,
                request=dataclasses.replace(request, mounts=mounts),
                image=facts,
                pod=pod_context(ctx, pod),
                user=user,
                target_pid_ns=_target_pid_ns(ctx, request),
            )
            container.cgroup = spec["linux"]["cgroupsPath"]
            container.user = {
                "uid": user.uid,
                "gid": user.gid,
                "additional_gids": list(user.additional_gids),
                "username": user.username,
            }
            _write_private(Path(container.bundle) / "config.json", json.dumps(spec))
            if log_path is not None:
                made_dirs = _make_parents(log_path)
            container.state = CREATED
            ctx.store.save(container)
            # Announced before the worker begins, whose failure is announced as a stop.
            ctx.events.publish(
                ContainerEvent(container_id, pod.id, EventType.CREATED, time.time_ns())
            )
            ctx.creates.begin(container_id, functools.partial(_create_in_runtime, ctx, container))
        except RuntimeCreatesClosed as e:
            _roll_back(ctx, container, made_dirs)
            raise Unavailable(str(e)) from None
        except BaseException:
            _roll_back(ctx, container, made_dirs)
            raise
    return container_id


def _create_in_runtime(ctx: ContainerContext, container: Container) -> None:
    """The worker's half of CreateContainer. A failure (the runtime has undone its part)
    leaves the container exited with the error, recorded, which StartContainer raises; its
    rootfs and record stay until RemoveContainer, as those of any exited container."""
    try:
        ctx.runtime_for(container.runtime_handler).create(
            container.id,
            Path(container.bundle),
            log_path=Path(container.log_path) if container.log_path else None,
            stdin=container.stdin,
            stdin_once=container.stdin_once,
        )
    except BaseException as exc:
        log.warning("container %s: the runtime could not create it: %s", container.id, exc)
        if ctx.store.set_state(container.id, EXITED, start_error=str(exc)) is not None:
            ctx.events.publish(
                ContainerEvent(container.id, container.pod_id, EventType.STOPPED, time.time_ns())
            )
        raise


def image_facts(name: str, config: ImageConfig) -> ImageFacts:
    return ImageFacts(
        name=name,
        env=config.env,
        entrypoint=config.entrypoint or (),
        cmd=config.cmd or (),
        working_dir=config.working_dir,
        user=config.user,
        volumes=config.volumes,
        stop_signal=config.stop_signal,
    )


def _log_path(base: Path, relative: str) -> Path | None:
    """The container's log file: inside the pod's log directory, or refused."""
    if not relative:
        return None
    joined = Path(os.path.normpath(base / relative))
    if not joined.is_relative_to(base) or joined == base:
        raise InvalidArgument(f"log_path {relative!r} is outside the pod's log directory {base}")
    # A symlink on the way must not lead out of the directory either.
    existing = joined.parent
    while not existing.exists():
        existing = existing.parent
    if existing.is_relative_to(base) and not Path(os.path.realpath(existing)).is_relative_to(
        os.path.realpath(base)
    ):
        raise InvalidArgument(
            f"log_path {relative!r} leads outside the pod's log directory {base} by a symlink"
        )
    return joined


def _make_parents(path: Path) -> list[Path]:
    """Create the log file's missing parent directories; return the topmost one made."""
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    return missing[-1:]


def _user(root: Path, request: ContainerRequest, config: ImageConfig) -> ProcessUser:
    security = request.security
    return resolve_user(
        root,
        image_user=config.user,
        run_as_user=security.run_as_user,
        run_as_group=security.run_as_group,
        run_as_username=security.run_as_username,
        supplemental_groups=security.supplemental_groups,
        policy=security.supplemental_groups_policy,
    )


def _check_user_namespace(request: ContainerRequest, pod: PodSandbox) -> None:
    """A pod's containers share its user namespace: a container may restate the pod's
    (kubelet does) but not ask for another one, nor for node namespaces outside it."""
    config = pod.config
    options = request.security.namespaces
    asked = options.user
    where = f"container {request.name!r}: namespace_options.userns_options"
    if asked is not None:
        pods = (config.user_namespace.value, config.uid_mappings, config.gid_mappings)
        if (asked.mode.value, asked.uid_mappings, asked.gid_mappings) != pods:
            raise InvalidArgument(
                f"{where} (mode {asked.mode.name}, uids {_mappings_text(asked.uid_mappings)}, "
                f"gids {_mappings_text(asked.gid_mappings)}) differ from pod sandbox {pod.id}'s "
                f"(mode {config.user_namespace.name}, uids "
                f"{_mappings_text(config.uid_mappings)}, gids "
                f"{_mappings_text(config.gid_mappings)}): containers share their pod's user "
                "namespace"
            )
    if not config.own_user_namespace:
        return
    for mount in request.mounts:
        if mount.image:
            # Their overlay cannot be idmapped as a whole (overlayfs refuses it).
            raise Unimplemented(
                f"container {request.name!r}: mount {mount.container_path}: image volumes are "
                f"not supported in pod sandbox {pod.id}, which has its own user namespace"
            )
    for kind, mode in (("network", options.network), ("pid", options.pid), ("ipc", options.ipc)):
        if mode is NamespaceMode.NODE:
            raise InvalidArgument(
                f"container {request.name!r}: namespace_options.{kind} NODE is not possible in "
                f"pod sandbox {pod.id}, which has its own user namespace"
            )


def _mappings_text(mappings: tuple[IdMapping, ...]) -> str:
    return "[" + ", ".join(f"{m.container_id}:{m.host_id}:{m.size}" for m in mappings) + "]"


def _rootfs_owner(pod: PodSandbox) -> rootfs.UserNamespace | None:
    if not pod.config.own_user_namespace:
        return None
    uid, gid = pod.config.host_root()
    return rootfs.UserNamespace(pod.pins["user"], uid, gid)


def _target_pid_ns(ctx: ContainerContext, request: ContainerRequest) -> str | None:
    options = request.security.namespaces
    if options.pid is not NamespaceMode.TARGET:
        return None
    target = ctx.store.find(options.target_id) if options.target_id else None
    if target is None:
        raise NotFound(f"target container {options.target_id!r} for the PID namespace not found")
    try:
        state = ctx.runtime_of(target).state(target.id)
    except ContainerNotFoundError:
        state = None
    if state is None or state.status is not Status.RUNNING:
        raise FailedPrecondition(
            f"target container {target.id} for the PID namespace is not running"
        )
    return f"/proc/{state.pid}/ns/pid"


def _roll_back(ctx: ContainerContext, container: Container, made_dirs: list[Path]) -> None:
    try:
        image_volumes.unmount(Path(container.bundle))
        rootfs.remove(Path(container.bundle))
        for directory in made_dirs:
            shutil.rmtree(directory, ignore_errors=True)
    except OSError:
        # Keep the record: RemoveContainer (or the next start) finishes the cleanup.
        log.exception("container %s: cleanup after a failed create is incomplete", container.id)
        return
    finally:
        ctx.creates.abandon(container.id)
    ctx.store.delete(container.id)


def _write_private(path: Path, text: str) -> None:
    # Only root reads the spec (it carries the container's env, which may hold secrets);
    # a user-namespaced pod's bundle is 0711, so the file itself must not be world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with open(fd, "w") as f:
        f.write(text)
