"""External OCI runtimes (runc, crun from Debian) as runtime handlers, through the real
daemon: a pod naming the handler gets its containers run by that binary under crisp's own
monitor, and everything the embedded runtime offers (CRI logs, ExecSync, exit codes,
restarts of the daemon, clean removal) holds for them too."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from criapi import api_pb2 as pb
from critest import images as ci
from critest.registry import Registry
from runtime.namespaces import mounts_under
from runtime.procfs import start_time
from tests.crisp_daemon import DaemonPaths, assert_nothing_left, start_daemon, write_config
from tests.integration.test_containers import (
    RPC_TIMEOUT,
    Crisp,
    assert_no_container_left,
    code_of,
    set_recorded_state,
    wait_for,
    with_cleanup_errors_ignored,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

BINARIES = {"runc": "/usr/sbin/runc", "crun": "/usr/bin/crun"}
MISSING_BINARY = "/nonexistent/runc"


def _crun_refuses_this_host() -> bool:
    """crun 1.8 refuses hybrid cgroup hosts whose cgroup2 hierarchy has controllers."""
    controllers = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    return controllers.exists() and controllers.read_text().strip() != ""


def handler_config(extra: str = "") -> str:
    tables = "".join(
        f'[runtime.handlers.{name}]\nkind = "oci"\npath = "{path}"\n\n'
        for name, path in BINARIES.items()
    )
    return f'[runtime.handlers.crisp]\nkind = "embedded"\n\n{tables}{extra}'


@pytest.fixture(scope="module")
def image_ref(registry: Registry) -> str:
    image = ci.busybox_image(ci.RunConfig(cmd=("sh",)), [[ci.file("etc/app.conf", "app\n")]])
    ci.Pusher(registry.host).push_image("cri/handlers", image, "v1")
    return f"{registry.host}/cri/handlers:v1"


@pytest.fixture
def crisp(image_ref: str) -> Iterator[Crisp]:
    base = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
    paths = DaemonPaths(base)
    ghost = base / "ghost-runc"
    os.symlink(BINARIES["runc"], ghost)  # a handler whose binary a test takes away
    write_config(
        paths, handler_config(f'[runtime.handlers.ghost]\nkind = "oci"\npath = "{ghost}"\n')
    )
    env = Crisp(paths, image_ref)
    try:
        env.pull()
        yield env
        env.cleanup()
        assert env.daemon.stop() == 0, env.daemon.log()
        assert_nothing_left(env.daemon)
    finally:
        if env.daemon.process.poll() is None:
            with_cleanup_errors_ignored(env.cleanup)
            env.daemon.stop()
        for mount in sorted(mounts_under(base), reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(base, ignore_errors=True)


def run_pod(crisp: Crisp, handler: str, name: str = "pod") -> str:
    request = pb.RunPodSandboxRequest(config=crisp.pod_config(name), runtime_handler=handler)
    pod_id: str = crisp.daemon.runtime.RunPodSandbox(request, timeout=RPC_TIMEOUT).pod_sandbox_id
    crisp.pods.append(pod_id)
    return pod_id


def binary_list(crisp: Crisp, handler: str) -> list[dict[str, object]]:
    """What the binary itself knows of its containers (`list --format json`)."""
    root = crisp.paths.run / f"runtime-{handler}"
    done = subprocess.run(
        [BINARIES[handler], "--root", str(root), "list", "--format", "json"],
        capture_output=True,
        check=True,
    )
    listed: list[dict[str, object]] = json.loads(done.stdout or b"null") or []
    return listed


def monitor_of(crisp: Crisp, container_id: str) -> tuple[int, int | None]:
    """The monitor's pid and start time, once the runtime's create (which finishes after
    CreateContainer has answered) has recorded them."""
    path = crisp.paths.run / "c" / container_id / "container.json"
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(path.read_text())
            if "pid" in record:
                return int(record["monitor_pid"]), record.get("monitor_start")
        assert time.monotonic() < deadline, f"{path} never got the create's result"
        time.sleep(0.01)


@pytest.mark.parametrize("handler", sorted(BINARIES))
def test_container_lifecycle_through_the_handler(crisp: Crisp, handler: str) -> None:
    if handler == "crun" and _crun_refuses_this_host():
        pytest.skip("crun refuses this hybrid cgroup host (see the test that it fails clearly)")
    pod_id = run_pod(crisp, handler)
    script = "trap 'exit 42' TERM; echo started; echo warning >&2; while :; do sleep 0.1; done"
    seccomp = pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault)
    linux = pb.LinuxContainerConfig(
        security_context=pb.LinuxContainerSecurityContext(seccomp=seccomp)
    )
    container_id = crisp.run(pod_id, crisp.config(command=["sh", "-c", script], linux=linux))
    assert [c["id"] for c in binary_list(crisp, handler)] == [container_id]
    log_path = crisp.log_dir / "pod" / "app" / "0.log"
    wait_for(lambda: log_path.exists() and "warning" in log_path.read_text())
    lines = log_path.read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["stdout F started", "stderr F warning"]

    answer = crisp.exec(container_id, "sh", "-c", "cat /etc/app.conf; echo oops >&2; exit 3")
    assert (answer.stdout, answer.stderr, answer.exit_code) == (b"app\n", b"oops\n", 3)
    filtered = crisp.exec(container_id, "grep", "Seccomp:", "/proc/self/status").stdout
    assert filtered.split() == [b"Seccomp:", b"2"]  # crisp's default profile, loaded by the binary
    limit = 64 << 20
    crisp.daemon.runtime.UpdateContainerResources(
        pb.UpdateContainerResourcesRequest(
            container_id=container_id,
            linux=pb.LinuxContainerResources(memory_limit_in_bytes=limit, cpu_shares=512),
        )
    )
    memory = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes || cat /sys/fs/cgroup/memory.max"
    assert crisp.exec(container_id, "sh", "-c", memory).stdout == f"{limit}\n".encode()
    timed_out = code_of(lambda: crisp.exec(container_id, "sleep", "30", timeout=1))
    assert timed_out == grpc.StatusCode.DEADLINE_EXCEEDED

    request = pb.ContainerStatusRequest(container_id=container_id, verbose=True)
    reply = crisp.daemon.runtime.ContainerStatus(request, timeout=RPC_TIMEOUT)
    assert reply.status.state == pb.CONTAINER_RUNNING
    pid = json.loads(reply.info["info"])["pid"]
    pid_started = start_time(pid)
    crisp.restart(signal.SIGKILL)  # the monitor, not the daemon, holds the container
    assert crisp.status(container_id).state == pb.CONTAINER_RUNNING
    assert start_time(pid) == pid_started
    assert crisp.exec(container_id, "echo", "again").stdout == b"again\n"

    crisp.daemon.runtime.StopContainer(
        pb.StopContainerRequest(container_id=container_id, timeout=10)
    )
    status = crisp.status(container_id)
    assert status.state == pb.CONTAINER_EXITED
    assert (status.exit_code, status.reason) == (42, "Error")
    assert status.finished_at >= status.started_at > 0

    monitor, monitor_started = monitor_of(crisp, container_id)
    bundle = crisp.paths.root / "containers" / container_id
    crisp.daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id))
    wait_for(lambda: not bundle.exists())  # taken apart after the answer
    assert binary_list(crisp, handler) == []
    assert mounts_under(bundle) == []
    assert not (crisp.paths.run / "c" / container_id).exists()
    assert start_time(monitor) != monitor_started and start_time(pid) != pid_started
    assert code_of(lambda: crisp.status(container_id)) == grpc.StatusCode.NOT_FOUND


def test_containers_of_both_kinds_survive_a_restart(crisp: Crisp) -> None:
    embedded = crisp.run(run_pod(crisp, "", "plain"), crisp.config(command=["sleep", "1000"]))
    external = crisp.run(run_pod(crisp, "runc", "oci"), crisp.config(command=["sleep", "1000"]))
    crisp.restart(signal.SIGKILL)
    for container_id in (embedded, external):
        assert crisp.status(container_id).state == pb.CONTAINER_RUNNING
    crisp.daemon.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=crisp.pods[1]))
    assert binary_list(crisp, "runc") == []
    assert crisp.status(embedded).state == pb.CONTAINER_RUNNING


def test_an_interrupted_create_is_undone_through_the_binary(crisp: Crisp) -> None:
    pod_id = run_pod(crisp, "runc")
    container_id = crisp.create(pod_id, crisp.config(command=["sleep", "1000"]))
    monitor, monitor_started = monitor_of(crisp, container_id)
    crisp.daemon.stop(signal.SIGKILL)
    # As if the daemon died between the binary's create and recording the result.
    set_recorded_state(crisp, container_id, "creating")
    crisp.daemon = start_daemon(crisp.paths)
    assert crisp.list() == []
    assert binary_list(crisp, "runc") == []
    assert not (crisp.paths.root / "containers" / container_id).exists()
    assert start_time(monitor) != monitor_started


def test_a_missing_binary_is_refused_clearly(crisp: Crisp) -> None:
    runtime = crisp.daemon.runtime
    pod_id = run_pod(crisp, "ghost")
    (crisp.paths.base / "ghost-runc").unlink()
    with pytest.raises(grpc.RpcError) as err:
        crisp.create(pod_id, crisp.config())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ghost-runc does not exist" in str(err.value.details())
    assert list((crisp.paths.root / "containers").iterdir()) == []
    assert crisp.list() == []

    request = pb.RunPodSandboxRequest(config=crisp.pod_config("late"), runtime_handler="ghost")
    with pytest.raises(grpc.RpcError) as err:
        runtime.RunPodSandbox(request, timeout=RPC_TIMEOUT)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ghost-runc does not exist" in str(err.value.details())
    pods = runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items
    assert [p.id for p in pods] == [pod_id]
    unknown = pb.RunPodSandboxRequest(config=crisp.pod_config("x"), runtime_handler="nope")
    assert code_of(lambda: runtime.RunPodSandbox(unknown)) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.skipif(not _crun_refuses_this_host(), reason="crun can run containers here")
def test_a_runtime_that_fails_create_leaves_nothing(crisp: Crisp) -> None:
    pod_id = run_pod(crisp, "crun")
    container_id = crisp.create(pod_id, crisp.config())
    with pytest.raises(grpc.RpcError) as err:  # the runtime's create is done by then
        crisp.daemon.runtime.StartContainer(pb.StartContainerRequest(container_id=container_id))
    assert "crun create failed" in str(err.value.details())
    assert "hybrid mode not supported" in str(err.value.details())
    assert list((crisp.paths.run / "c").iterdir()) == []
    assert binary_list(crisp, "crun") == []
    assert crisp.status(container_id).reason == "StartError"
    crisp.daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id))
    assert_no_container_left(crisp)
