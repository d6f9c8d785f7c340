"""RunPodSandbox: validate, reserve the name, then make the pod step by step. A failure at
any step undoes every earlier one, so a bad request leaves nothing behind."""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from runtime import namespaces
from sandbox import pod_cgroups, pod_files, pod_network
from sandbox.errors import FailedPrecondition, InvalidArgument, Unimplemented
from sandbox.pod import CREATING, NOTREADY, READY, PodConfig, PodSandbox
from sandbox.pod_cgroups import Managers
from sandbox.pod_context import PodContext
from sandbox.pod_remove import dismantle
from sandbox.pod_stop import halt
from sandbox.pod_validate import validate

log = logging.getLogger(__name__)


def run(ctx: PodContext, config: PodConfig, runtime_handler: str) -> str:
    validate(config)
    pod_network.bandwidth(config.annotations)  # a bad annotation fails before anything is made
    handler = runtime_handler or ctx.default_handler
    if handler not in ctx.handlers:
        raise InvalidArgument(
            f"runtime handler {handler!r} is not configured (known: {', '.join(ctx.handlers)})"
        )
    problem = ctx.handlers[handler].problem()
    if problem is not None:
        raise FailedPrecondition(problem)
    if config.own_user_namespace and not ctx.handlers[handler].user_namespaces:
        raise Unimplemented(
            f"runtime handler {handler!r} cannot run pods in user namespaces on this node "
            "(Status reports user_namespaces false for it; the daemon's log says why)"
        )
    pod_id = secrets.token_hex(32)
    pod = PodSandbox(
        id=pod_id,
        config=config,
        runtime_handler=handler,
        state=CREATING,
        created_ns=time.time_ns(),
        dir=str(ctx.settings.pods_dir / pod_id),
        hostname=_hostname(config, pod_id),
    )
    pod_cgroups.plan(pod, ctx.settings)
    if not config.host_ipc:
        pod.shm_path = f"{pod.dir}/shm"
    ctx.store.reserve(pod)
    with ctx.locks.hold(pod_id):
        try:
            _build(ctx, pod)
        except BaseException:
            _roll_back(ctx, pod)
            raise
    return pod_id


def _hostname(config: PodConfig, pod_id: str) -> str:
    if config.hostname:
        return config.hostname
    # Host-network pods share the node's UTS namespace, and so its name.
    return socket.gethostname() if config.host_network else pod_id[:12]


def _build(ctx: PodContext, pod: PodSandbox) -> None:
    config = pod.config
    ctx.pin_root.make_pod_dir(Path(pod.dir))
    pod_cgroups.create(ctx.cgroups, pod)
    new = tuple(
        kind
        for kind, private in (
            ("net", not config.host_network),
            ("ipc", not config.host_ipc),
            ("uts", not config.host_network),
        )
        if private
    )
    spec = namespaces.NamespaceSpec(
        new=new,
        new_pid=config.shares_pid,
        hostname=pod.hostname if "uts" in new else "",
        sysctls=config.sysctls,
        keep_process=config.shares_pid or not ctx.settings.drop_infra,
        uid_mappings=config.uid_mappings if config.own_user_namespace else (),
        gid_mappings=config.gid_mappings if config.own_user_namespace else (),
    )
    if spec.new or spec.keep_process or spec.new_user:
        try:
            pinned = namespaces.create(ctx.zygote, spec, Path(pod.dir) / "ns")
        except namespaces.SysctlError as e:
            raise InvalidArgument(f"pod sandbox config: linux.sysctls: {e}") from e
        pod.pins = pinned.pins
        pod.pause_pid, pod.pause_start_time = pinned.pid, pinned.start_time
        ctx.store.save(pod)  # from here a crash still finds (and stops) the pause process
    with _alongside(pod_cgroups.place, ctx.cgroups, pod):  # moving a process takes ms on v1
        if pod.shm_path:
            namespaces.mount_shm(Path(pod.shm_path), ctx.settings.shm_size)
        if not config.host_network:
            pod_network.attach(ctx.network, pod)
    pod_files.write(pod.hostname_path, pod.hostname + "\n")
    pod_files.write(
        pod.hosts_path,
        pod_files.hosts(pod.ips, pod.hostname, config.host_network, ctx.settings.host_hosts),
    )
    pod_files.write(
        pod.resolv_conf_path, pod_files.resolv_conf(config.dns, ctx.settings.host_resolv_conf)
    )
    pod.state = READY
    ctx.store.save(pod)


@contextlib.contextmanager
def _alongside(
    function: Callable[[Managers, PodSandbox], None], new: Managers, pod: PodSandbox
) -> Iterator[None]:
    """Run `function` on a thread while the block runs; its failure fails the block."""
    failures: list[BaseException] = []

    def call() -> None:
        try:
            function(new, pod)
        except BaseException as e:
            failures.append(e)

    worker = threading.Thread(target=call, name=f"pod-{pod.id[:12]}")
    worker.start()
    try:
        yield
    finally:
        worker.join()
    if failures:
        raise failures[0]


def _roll_back(ctx: PodContext, pod: PodSandbox) -> None:
    try:
        halt(ctx, pod)
        dismantle(ctx, pod)
    except Exception:
        # Keep the record, NOTREADY: kubelet removes it (retrying the cleanup) and runs the
        # next attempt under a new name.
        log.exception("pod sandbox %s: cleanup after a failed start is incomplete", pod.id)
        pod.state = NOTREADY
        ctx.store.save(pod)
        return
    ctx.store.delete(pod.id)
