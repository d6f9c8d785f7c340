"""Containers against a real crisp daemon: real images from a registry on loopback, real
pods (host network, so no CNI is needed), real overlay mounts, monitors and cgroups.

The daemons run below a short directory in /tmp: each monitor's socket lies below the run
dir, and a unix socket path holds at most 107 bytes. Everything a test made is removed, also
when it fails half-way, and checked to be gone.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from cri.state import StateDB
from criapi import api_pb2 as pb
from critest import images as ci
from critest.registry import Registry
from runtime.cgroups import CgroupVersion, find_mounts
from runtime.namespaces import mounts_under
from runtime.procfs import start_time
from tests.crisp_daemon import (
    DaemonPaths,
    assert_nothing_left,
    monitor_pid,
    start_daemon,
)
from tests.leak_audit import zombies_below

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

RPC_TIMEOUT = 30


@pytest.fixture(scope="module")
def image_ref(registry: Registry) -> str:
    image = ci.busybox_image(
        ci.RunConfig(cmd=("sh", "-c", "echo started; exec sleep 100000")),
        [[ci.file("etc/app.conf", "from-image\n")]],
    )
    ci.Pusher(registry.host).push_image("cri/containers", image, "v1")
    return f"{registry.host}/cri/containers:v1"


class Crisp:
    """A daemon plus the pods and containers a test made, removed again at the end."""

    def __init__(self, paths: DaemonPaths, image: str) -> None:
        self.paths = paths
        self.image = image
        self.daemon = start_daemon(paths)
        self.pods: list[str] = []
        self.log_dir = paths.base / "pod-logs"

    @property
    def rt(self) -> object:
        return self.daemon.runtime

    def restart(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.daemon.stop(sig)
        self.daemon = start_daemon(self.paths)

    def pull(self) -> None:
        self.daemon.image.PullImage(
            pb.PullImageRequest(image=pb.ImageSpec(image=self.image)), timeout=RPC_TIMEOUT
        )

    def pod_config(self, name: str = "pod", pid: int = pb.POD) -> pb.PodSandboxConfig:
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="crisp-test"),
            log_directory=str(self.log_dir / name),
            linux=pb.LinuxPodSandboxConfig(
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pid)  # type: ignore[arg-type]
                )
            ),
        )

    def run_pod(self, name: str = "pod", pid: int = pb.POD) -> str:
        request = pb.RunPodSandboxRequest(config=self.pod_config(name, pid))
        pod_id: str = self.daemon.runtime.RunPodSandbox(request, timeout=RPC_TIMEOUT).pod_sandbox_id
        self.pods.append(pod_id)
        return pod_id

    def config(self, name: str = "app", **fields: object) -> pb.ContainerConfig:
        values: dict[str, object] = {
            "metadata": pb.ContainerMetadata(name=name),
            "image": pb.ImageSpec(image=self.image),
            "log_path": f"{name}/0.log",
        }
        values.update(fields)
        return pb.ContainerConfig(**values)  # type: ignore[arg-type]

    def create(self, pod_id: str, config: pb.ContainerConfig) -> str:
        request = pb.CreateContainerRequest(pod_sandbox_id=pod_id, config=config)
        return str(self.daemon.runtime.CreateContainer(request, timeout=RPC_TIMEOUT).container_id)

    def run(self, pod_id: str, config: pb.ContainerConfig) -> str:
        container_id = self.create(pod_id, config)
        self.daemon.runtime.StartContainer(
            pb.StartContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT
        )
        return container_id

    def status(self, container_id: str, verbose: bool = False) -> pb.ContainerStatus:
        request = pb.ContainerStatusRequest(container_id=container_id, verbose=verbose)
        return self.daemon.runtime.ContainerStatus(request, timeout=RPC_TIMEOUT).status

    def wait_exited(self, container_id: str, timeout: float = 20) -> pb.ContainerStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(container_id)
            if status.state == pb.CONTAINER_EXITED:
                return status
            assert time.monotonic() < deadline, f"{container_id} still runs"
            time.sleep(0.05)

    def exec(self, container_id: str, *cmd: str, timeout: int = 10) -> pb.ExecSyncResponse:
        request = pb.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=timeout)
        return self.daemon.runtime.ExecSync(request, timeout=RPC_TIMEOUT)

    def list(self, **fields: object) -> list[pb.Container]:
        request = pb.ListContainersRequest(filter=pb.ContainerFilter(**fields))  # type: ignore[arg-type]
        return list(self.daemon.runtime.ListContainers(request, timeout=RPC_TIMEOUT).containers)

    def cleanup(self) -> None:
        runtime = self.daemon.runtime
        for container in runtime.ListContainers(pb.ListContainersRequest()).containers:
            runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container.id))
        for pod_id in self.pods:
            runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
            runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


@pytest.fixture
def crisp(image_ref: str) -> Iterator[Crisp]:
    base = Path(tempfile.mkdtemp(prefix="ct", dir="/tmp"))
    env = Crisp(DaemonPaths(base), image_ref)
    try:
        env.pull()
        yield env
        env.cleanup()
        assert env.daemon.stop() == 0, env.daemon.log()
        assert_nothing_left(env.daemon)
        containers = env.paths.root / "containers"
        assert not containers.exists() or list(containers.iterdir()) == []
    finally:
        if env.daemon.process.poll() is None:
            with_cleanup_errors_ignored(env.cleanup)
            env.daemon.stop()
        for mount in sorted(mounts_under(base), reverse=True):
            os.system(f"umount -l {mount!r}")
        shutil.rmtree(base, ignore_errors=True)


def with_cleanup_errors_ignored(step: Callable[[], None]) -> None:
    with contextlib.suppress(grpc.RpcError):
        step()


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


# --- lifecycle ---


def test_create_start_exec_stop_remove(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    container_id = crisp.create(pod_id, crisp.config(labels={"tier": "web"}))
    bundle = crisp.paths.root / "containers" / container_id
    assert (bundle / "rootfs") in map(Path, mounts_under(bundle))
    status = crisp.status(container_id)
    assert status.state == pb.CONTAINER_CREATED and status.created_at > 0
    assert status.started_at == 0 and status.labels == {"tier": "web"}

    crisp.daemon.runtime.StartContainer(pb.StartContainerRequest(container_id=container_id))
    status = crisp.status(container_id, verbose=True)
    assert status.state == pb.CONTAINER_RUNNING and status.started_at >= status.created_at
    assert status.image.image == crisp.image
    assert status.image_ref.startswith("sha256:") and status.image_id == status.image_ref
    log_path = crisp.log_dir / "pod" / "app" / "0.log"
    assert status.log_path == str(log_path)
    wait_for(lambda: log_path.exists() and " stdout F started" in log_path.read_text())

    answer = crisp.exec(container_id, "sh", "-c", "cat /etc/app.conf; echo oops >&2; exit 3")
    assert (answer.stdout, answer.stderr, answer.exit_code) == (b"from-image\n", b"oops\n", 3)
    code = code_of(
        lambda: crisp.daemon.runtime.StartContainer(
            pb.StartContainerRequest(container_id=container_id)
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION

    crisp.daemon.runtime.StopContainer(
        pb.StopContainerRequest(container_id=container_id, timeout=5)
    )
    status = crisp.status(container_id)
    assert status.state == pb.CONTAINER_EXITED
    assert status.exit_code == 128 + signal.SIGTERM and status.reason == "Error"
    assert status.finished_at >= status.started_at
    crisp.daemon.runtime.StopContainer(pb.StopContainerRequest(container_id=container_id))

    crisp.daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id))
    assert code_of(lambda: crisp.status(container_id)) == grpc.StatusCode.NOT_FOUND
    assert container_id not in [c.id for c in crisp.list()]
    wait_for(lambda: not bundle.exists())  # taken apart after the answer
    assert mounts_under(bundle) == []
    # Idempotent, also for ids crisp never knew.
    crisp.daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id))
    crisp.daemon.runtime.StopContainer(pb.StopContainerRequest(container_id="f" * 64))
    crisp.daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id="f" * 64))


@pytest.mark.parametrize(("script", "exit_code", "reason"), [
    ("exit 0", 0, "Completed"), ("exit 7", 7, "Error"), ("kill -KILL $$", 137, "Error"),
])  # fmt: skip
def test_exit_reasons(crisp: Crisp, script: str, exit_code: int, reason: str) -> None:
    pod_id = crisp.run_pod()
    container_id = crisp.run(pod_id, crisp.config(command=["sh", "-c", script]))
    status = crisp.wait_exited(container_id)
    assert (status.exit_code, status.reason) == (exit_code, reason)
    assert status.finished_at >= status.started_at > 0


def test_stop_kills_at_the_deadline(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    container_id = crisp.run(
        pod_id,
        crisp.config(command=["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"]),
    )
    log_path = crisp.log_dir / "pod" / "app" / "0.log"
    wait_for(lambda: log_path.exists() and "ready" in log_path.read_text())
    began = time.monotonic()
    crisp.daemon.runtime.StopContainer(
        pb.StopContainerRequest(container_id=container_id, timeout=1)
    )
    assert 0.9 < time.monotonic() - began < 10
    assert crisp.status(container_id).exit_code == 128 + signal.SIGKILL


def test_stop_signal_from_the_config(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    script = "trap 'exit 42' USR1; echo ready; while :; do sleep 0.1; done"
    config = crisp.config(command=["sh", "-c", script], stop_signal=pb.SIGUSR1)
    container_id = crisp.run(pod_id, config)
    log_path = crisp.log_dir / "pod" / "app" / "0.log"
    wait_for(lambda: log_path.exists() and "ready" in log_path.read_text())
    assert crisp.status(container_id).stop_signal == pb.SIGUSR1
    crisp.daemon.runtime.StopContainer(
        pb.StopContainerRequest(container_id=container_id, timeout=10)
    )
    assert crisp.status(container_id).exit_code == 42


def test_remove_running_container(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    container_id = crisp.run(pod_id, crisp.config())
    crisp.daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id))
    assert crisp.list() == []


# --- bad input leaves nothing behind ---


def set_recorded_state(crisp: Crisp, container_id: str, state: str) -> None:
    """Rewrite the container's record to `state` in the stopped daemon's database: what a
    crash at that point of a verb leaves."""
    db = StateDB(crisp.paths.root / "crisp.db")
    try:
        record = db.get("container", container_id)
        assert record is not None
        db.put("container", container_id, state, record.document)
    finally:
        db.close()


def assert_no_container_left(crisp: Crisp) -> None:
    """No container, nor anything of one: a removed container's parts are taken apart
    after RemoveContainer answered, so they get a moment."""
    assert crisp.list() == []
    containers = crisp.paths.root / "containers"
    wait_for(lambda: not list(containers.iterdir()) and not list((crisp.paths.run / "c").iterdir()))
    assert mounts_under(containers) == []


def test_create_errors(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    create = crisp.create

    def code(pod: str, config: pb.ContainerConfig) -> grpc.StatusCode:
        return code_of(lambda: create(pod, config))

    assert code("0" * 64, crisp.config()) == grpc.StatusCode.NOT_FOUND
    missing_image = crisp.config(image=pb.ImageSpec(image="example.invalid/none:v1"))
    assert code(pod_id, missing_image) == grpc.StatusCode.NOT_FOUND
    assert code(pod_id, crisp.config(log_path="../escape.log")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(pod_id, crisp.config(name="")) == grpc.StatusCode.INVALID_ARGUMENT
    missing_host = crisp.config(
        mounts=[pb.Mount(container_path="/data", host_path="/nonexistent/crisp-test")]
    )
    assert code(pod_id, missing_host) == grpc.StatusCode.NOT_FOUND
    bad_user = crisp.config(
        linux=pb.LinuxContainerConfig(
            security_context=pb.LinuxContainerSecurityContext(run_as_username="nosuchuser")
        )
    )
    assert code(pod_id, bad_user) == grpc.StatusCode.INVALID_ARGUMENT
    bad_cap = crisp.config(
        linux=pb.LinuxContainerConfig(
            security_context=pb.LinuxContainerSecurityContext(
                capabilities=pb.Capability(add_capabilities=["NOT_A_CAP"])
            )
        )
    )
    assert code(pod_id, bad_cap) == grpc.StatusCode.INVALID_ARGUMENT
    assert_no_container_left(crisp)

    crisp.create(pod_id, crisp.config())
    assert code(pod_id, crisp.config()) == grpc.StatusCode.ALREADY_EXISTS
    crisp.create(pod_id, crisp.config(metadata=pb.ContainerMetadata(name="app", attempt=1)))

    crisp.daemon.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    assert code(pod_id, crisp.config(name="late")) == grpc.StatusCode.FAILED_PRECONDITION


def test_runtime_create_error_is_raised_by_start(crisp: Crisp) -> None:
    """The runtime's part of a create (as runc create: here it finds a missing executable)
    finishes after CreateContainer answered; its error comes from StartContainer, and the
    container is exited with it, as containerd's StartError."""
    pod_id = crisp.run_pod()
    container_id = crisp.create(pod_id, crisp.config(command=["/no/such/binary"]))
    with pytest.raises(grpc.RpcError) as err:
        crisp.daemon.runtime.StartContainer(pb.StartContainerRequest(container_id=container_id))
    assert err.value.code() == grpc.StatusCode.UNKNOWN
    assert "/no/such/binary" in str(err.value.details())
    # Asked again: the same answer, not "already started".
    again = code_of(
        lambda: crisp.daemon.runtime.StartContainer(
            pb.StartContainerRequest(container_id=container_id)
        )
    )
    assert again == grpc.StatusCode.UNKNOWN
    status = crisp.status(container_id)
    assert status.state == pb.CONTAINER_EXITED
    assert (status.exit_code, status.reason) == (128, "StartError")
    assert "/no/such/binary" in status.message
    assert not list((crisp.paths.run / "c").iterdir())  # the runtime undid its part
    # Recorded, not only remembered: the same after a restart.
    crisp.restart(signal.SIGKILL)
    status = crisp.status(container_id)
    assert (status.state, status.exit_code, status.reason) == (
        pb.CONTAINER_EXITED,
        128,
        "StartError",
    )
    assert "/no/such/binary" in status.message
    with pytest.raises(grpc.RpcError) as err:
        crisp.daemon.runtime.StartContainer(pb.StartContainerRequest(container_id=container_id))
    assert err.value.code() == grpc.StatusCode.UNKNOWN
    assert "/no/such/binary" in str(err.value.details())
    exec_code = code_of(lambda: crisp.exec(container_id, "true"))
    assert exec_code == grpc.StatusCode.FAILED_PRECONDITION
    crisp.daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id))
    assert_no_container_left(crisp)


def test_a_runtime_create_cut_short_by_a_crash_reports_exited(crisp: Crisp) -> None:
    """The daemon dies while its worker still waits for the monitor's answer: after the
    restart the monitor and its process are gone and the container is exited."""
    pod_id = crisp.run_pod()
    container_id = crisp.create(pod_id, crisp.config())
    record_path = crisp.paths.run / "c" / container_id / "container.json"
    wait_for(lambda: record_path.exists() and "pid" in json.loads(record_path.read_text()))
    record = json.loads(record_path.read_text())
    monitor, monitor_started = record["monitor_pid"], record["monitor_start"]
    crisp.daemon.stop(signal.SIGKILL)
    # What the runtime's record holds before the monitor's answer is written into it.
    for key in ("pid", "monitor_pid", "monitor_start"):
        record.pop(key)
    record_path.write_text(json.dumps(record))
    crisp.daemon = start_daemon(crisp.paths)
    status = crisp.status(container_id)
    assert (status.state, status.exit_code) == (pb.CONTAINER_EXITED, 255)
    assert not record_path.parent.exists()
    assert start_time(monitor) != monitor_started  # killed, with the process it made
    start = code_of(
        lambda: crisp.daemon.runtime.StartContainer(
            pb.StartContainerRequest(container_id=container_id)
        )
    )
    assert start == grpc.StatusCode.FAILED_PRECONDITION
    crisp.daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id))
    assert_no_container_left(crisp)


# --- security context, checked from inside ---


def test_user_and_readonly_rootfs(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    security = pb.LinuxContainerSecurityContext(
        run_as_user=pb.Int64Value(value=33),
        supplemental_groups=[1234],
        readonly_rootfs=True,
    )
    container_id = crisp.run(
        pod_id, crisp.config(linux=pb.LinuxContainerConfig(security_context=security))
    )
    answer = crisp.exec(container_id, "id")
    assert answer.stdout.decode().startswith("uid=33(www-data) gid=33(www-data)")
    assert "1234" in answer.stdout.decode()
    answer = crisp.exec(container_id, "touch", "/etc/new")
    assert answer.exit_code != 0 and b"Read-only file system" in answer.stderr
    user = crisp.status(container_id).user.linux
    assert (user.uid, user.gid) == (33, 33) and 1234 in user.supplemental_groups


def test_mounts_and_environment(crisp: Crisp) -> None:
    host_dir = crisp.paths.base / "shared"
    host_dir.mkdir()
    (host_dir / "data").write_text("from the host\n")
    pod_id = crisp.run_pod()
    config = crisp.config(
        envs=[pb.KeyValue(key="GREETING", value="hi")],
        working_dir="/tmp",
        mounts=[pb.Mount(container_path="/mnt/host", host_path=str(host_dir), readonly=True)],
    )
    container_id = crisp.run(pod_id, config)
    answer = crisp.exec(container_id, "sh", "-c", "cat /mnt/host/data; echo $GREETING; pwd")
    assert answer.stdout == b"from the host\nhi\n/tmp\n"
    answer = crisp.exec(container_id, "touch", "/mnt/host/new")
    assert answer.exit_code != 0
    mounts = crisp.status(container_id).mounts
    assert [(m.container_path, m.host_path, m.readonly) for m in mounts] == [
        ("/mnt/host", str(host_dir), True)
    ]


# --- list, exec, logs, resources ---


def test_list_filters(crisp: Crisp) -> None:
    first, second = crisp.run_pod("one"), crisp.run_pod("two")
    a = crisp.run(first, crisp.config("a", labels={"app": "x"}))
    b = crisp.create(second, crisp.config("b", labels={"app": "y"}))
    assert {c.id for c in crisp.list()} == {a, b}
    assert [c.id for c in crisp.list(id=a[:10])] == [a]
    assert [c.id for c in crisp.list(pod_sandbox_id=second)] == [b]
    running = pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)
    assert [c.id for c in crisp.list(state=running)] == [a]
    assert [c.id for c in crisp.list(label_selector={"app": "y"})] == [b]
    assert crisp.list(label_selector={"app": "z"}) == []
    (listed,) = crisp.list(id=a)
    assert listed.pod_sandbox_id == first and listed.metadata.name == "a"
    assert listed.image_ref.startswith("sha256:")
    streamed = [
        c.id
        for batch in crisp.daemon.runtime.StreamContainers(pb.StreamContainersRequest())
        for c in batch.containers
    ]
    assert sorted(streamed) == sorted([a, b])


def test_exec_sync_timeout(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    container_id = crisp.run(pod_id, crisp.config())
    began = time.monotonic()
    code = code_of(lambda: crisp.exec(container_id, "sleep", "600", timeout=1))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - began < 10
    # The killed process is gone: nothing but the container's own process remains.
    answer = crisp.exec(container_id, "sh", "-c", "ps -o comm | grep -c sleep")
    assert answer.stdout == b"1\n"


def test_exec_in_stopped_container_fails(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    container_id = crisp.run(pod_id, crisp.config(command=["true"]))
    crisp.wait_exited(container_id)
    code = code_of(lambda: crisp.exec(container_id, "true"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION


def test_reopen_log(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    script = "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.05; done"
    container_id = crisp.run(pod_id, crisp.config(command=["sh", "-c", script]))
    log_path = crisp.log_dir / "pod" / "app" / "0.log"
    wait_for(lambda: log_path.exists() and "line2" in log_path.read_text())
    log_path.rename(log_path.with_suffix(".log.1"))
    crisp.daemon.runtime.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=container_id))
    wait_for(lambda: log_path.exists() and "stdout F line" in log_path.read_text())


def _assert_capped_cri_log(path: Path, cap: int) -> list[str]:
    """The log is within `cap` and whole CRI records only; returns their contents."""
    data = path.read_bytes()
    assert 0 < len(data) <= cap and data.endswith(b"\n")
    contents = []
    for line in data.decode().splitlines():
        stamp, stream, tag, content = line.split(" ", 3)
        assert stamp.endswith("Z") and stream == "stdout" and tag == "F", line
        contents.append(content)
    return contents


def test_log_size_cap(crisp: Crisp) -> None:
    cap = 8192
    crisp.paths.config_file.write_text(f"[containers]\nlog_size_max = {cap}\n")
    crisp.restart()
    pod_id = crisp.run_pod()
    pad = "x" * 80
    script = (
        f"for i in $(seq 300); do echo first-$i {pad}; done; "
        "while [ ! -e /go ]; do sleep 0.05; done; "
        f"for i in $(seq 300); do echo second-$i {pad}; done; exec sleep 100000"
    )
    container_id = crisp.run(pod_id, crisp.config(command=["sh", "-c", script]))
    log_path = crisp.log_dir / "pod" / "app" / "0.log"
    wait_for(lambda: log_path.exists() and "first-300 " in log_path.read_text())
    contents = _assert_capped_cri_log(log_path, cap)
    assert contents[-1] == f"first-300 {pad}" and len(contents) > 50  # the newest kept

    # kubelet's rotation: rename, reopen; the fresh file is capped the same way
    rotated = log_path.with_suffix(".log.1")
    log_path.rename(rotated)
    crisp.daemon.runtime.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=container_id))
    crisp.exec(container_id, "touch", "/go")
    wait_for(lambda: log_path.exists() and "second-300 " in log_path.read_text())
    assert _assert_capped_cri_log(log_path, cap)[-1] == f"second-300 {pad}"
    assert _assert_capped_cri_log(rotated, cap)[-1] == f"first-300 {pad}"
    rotated.unlink()


def test_update_resources(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    container_id = crisp.run(pod_id, crisp.config())
    limit = 64 << 20
    crisp.daemon.runtime.UpdateContainerResources(
        pb.UpdateContainerResourcesRequest(
            container_id=container_id,
            linux=pb.LinuxContainerResources(memory_limit_in_bytes=limit, cpu_shares=512),
        )
    )
    answer = crisp.exec(
        container_id,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
        "|| cat /sys/fs/cgroup/memory.max",
    )
    assert answer.stdout == f"{limit}\n".encode()
    resources = crisp.status(container_id).resources.linux
    assert (resources.memory_limit_in_bytes, resources.cpu_shares) == (limit, 512)


def _pod_cgroup_limits(crisp: Crisp, pod_id: str) -> tuple[str, str]:
    """(memory limit, CPU quota) as the pod cgroup's files hold them."""
    request = pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
    info = json.loads(crisp.daemon.runtime.PodSandboxStatus(request).info["info"])
    cgroup = info["runtimeSpec"]["cgroupParent"].lstrip("/")
    mounts = find_mounts()
    if mounts.version is CgroupVersion.V1:
        memory = (mounts.v1["memory"] / cgroup / "memory.limit_in_bytes").read_text()
        quota = (mounts.v1["cpu"] / cgroup / "cpu.cfs_quota_us").read_text()
        unlimited = str(0x7FFFFFFFFFFFF000)
        return memory.strip().replace(unlimited, "max"), quota.strip().replace("-1", "max")
    assert mounts.unified is not None
    memory = (mounts.unified / cgroup / "memory.max").read_text().strip()
    return memory, (mounts.unified / cgroup / "cpu.max").read_text().split()[0]


def test_update_pod_sandbox_resources(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    crisp.run(pod_id, crisp.config())
    assert _pod_cgroup_limits(crisp, pod_id) == ("max", "max")

    def update(**fields: pb.LinuxContainerResources) -> None:
        request = pb.UpdatePodSandboxResourcesRequest(pod_sandbox_id=pod_id, **fields)
        crisp.daemon.runtime.UpdatePodSandboxResources(request, timeout=RPC_TIMEOUT)

    resources = pb.LinuxContainerResources(
        memory_limit_in_bytes=96 << 20, cpu_quota=50_000, cpu_period=100_000, cpu_shares=512
    )
    overhead = pb.LinuxContainerResources(memory_limit_in_bytes=32 << 20, cpu_quota=10_000)
    for _ in range(2):  # repeating an update is harmless
        update(resources=resources, overhead=overhead)
        assert _pod_cgroup_limits(crisp, pod_id) == (str(128 << 20), "60000")
    request = pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
    info = json.loads(crisp.daemon.runtime.PodSandboxStatus(request).info["info"])
    assert info["config"]["resources"]["memory_limit_in_bytes"] == 96 << 20
    assert info["config"]["overhead"]["cpu_quota"] == 10_000

    bad = pb.LinuxContainerResources(memory_limit_in_bytes=-5)
    with pytest.raises(grpc.RpcError) as err:
        update(resources=bad)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "resources.memory_limit_in_bytes=-5" in (err.value.details() or "")
    assert _pod_cgroup_limits(crisp, pod_id) == (str(128 << 20), "60000")

    update(resources=pb.LinuxContainerResources(cpu_shares=256))  # the limits are dropped
    assert _pod_cgroup_limits(crisp, pod_id) == ("max", "max")

    missing = pb.UpdatePodSandboxResourcesRequest(pod_sandbox_id="0" * 64)
    code = code_of(lambda: crisp.daemon.runtime.UpdatePodSandboxResources(missing))
    assert code == grpc.StatusCode.NOT_FOUND


# --- stats and events ---


def test_stats(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    container_id = crisp.run(pod_id, crisp.config())
    crisp.exec(container_id, "sh", "-c", "dd if=/dev/zero of=/written bs=1k count=300")
    runtime = crisp.daemon.runtime
    stats = runtime.ContainerStats(pb.ContainerStatsRequest(container_id=container_id)).stats
    assert stats.attributes.id == container_id and stats.attributes.metadata.name == "app"
    assert stats.cpu.usage_core_nano_seconds.value > 0 and stats.cpu.timestamp > 0
    assert stats.memory.working_set_bytes.value > 0
    assert stats.writable_layer.used_bytes.value >= 300 * 1024
    listed = runtime.ListContainerStats(
        pb.ListContainerStatsRequest(filter=pb.ContainerStatsFilter(pod_sandbox_id=pod_id))
    ).stats
    assert [s.attributes.id for s in listed] == [container_id]
    pod = runtime.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=pod_id)).stats
    assert pod.attributes.id == pod_id
    assert [c.attributes.id for c in pod.linux.containers] == [container_id]
    assert pod.linux.memory.working_set_bytes.value > 0
    all_pods = runtime.ListPodSandboxStats(pb.ListPodSandboxStatsRequest()).stats
    assert [p.attributes.id for p in all_pods] == [pod_id]


def test_container_events(crisp: Crisp) -> None:
    received: list[pb.ContainerEventResponse] = []
    stream = crisp.daemon.runtime.GetContainerEvents(pb.GetEventsRequest())

    def consume() -> None:
        try:
            for event in stream:
                received.append(event)
        except grpc.RpcError:
            pass  # cancelled at the end of the test

    consumer = threading.Thread(target=consume)
    consumer.start()
    try:
        time.sleep(0.3)  # the subscription is in place
        pod_id = crisp.run_pod()
        container_id = crisp.run(pod_id, crisp.config(command=["sh", "-c", "sleep 0.5"]))
        crisp.wait_exited(container_id)
        crisp.daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id))
        wait_for(lambda: len(received) >= 4)
    finally:
        stream.cancel()  # type: ignore[no-untyped-call]
        consumer.join()
    assert [e.container_event_type for e in received[:4]] == [
        pb.CONTAINER_CREATED_EVENT,
        pb.CONTAINER_STARTED_EVENT,
        pb.CONTAINER_STOPPED_EVENT,
        pb.CONTAINER_DELETED_EVENT,
    ]
    assert {e.container_id for e in received} == {container_id}
    assert received[0].pod_sandbox_status.id == pod_id
    assert [s.id for s in received[1].containers_statuses] == [container_id]


def test_pod_status_carries_container_statuses(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    request = pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id)
    assert list(crisp.daemon.runtime.PodSandboxStatus(request).containers_statuses) == []
    running = crisp.run(pod_id, crisp.config("running"))
    exited = crisp.run(pod_id, crisp.config("exited", command=["sh", "-c", "exit 3"]))
    crisp.wait_exited(exited)
    before = time.time_ns()
    answer = crisp.daemon.runtime.PodSandboxStatus(request)
    assert answer.timestamp >= before
    statuses = {s.id: s for s in answer.containers_statuses}
    # the same statuses ContainerStatus answers with
    assert statuses == {running: crisp.status(running), exited: crisp.status(exited)}
    assert statuses[running].state == pb.CONTAINER_RUNNING
    assert (statuses[exited].state, statuses[exited].exit_code) == (pb.CONTAINER_EXITED, 3)
    by_prefix = pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id[:12])  # as crictl sends
    answer = crisp.daemon.runtime.PodSandboxStatus(by_prefix)
    assert {s.id for s in answer.containers_statuses} == {running, exited}


# --- pods and restarts ---


def test_pod_stop_and_remove_take_the_containers(crisp: Crisp) -> None:
    pod_id = crisp.run_pod(pid=pb.POD)
    container_id = crisp.run(pod_id, crisp.config())
    crisp.daemon.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    assert crisp.status(container_id).state == pb.CONTAINER_EXITED
    crisp.daemon.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert crisp.list() == []
    assert_no_container_left(crisp)


def test_shared_pid_namespace(crisp: Crisp) -> None:
    pod_id = crisp.run_pod(pid=pb.POD)
    security = pb.LinuxContainerSecurityContext(namespace_options=pb.NamespaceOption(pid=pb.POD))
    container_id = crisp.run(
        pod_id, crisp.config(linux=pb.LinuxContainerConfig(security_context=security))
    )
    answer = crisp.exec(container_id, "sh", "-c", "cat /proc/1/comm")
    assert answer.stdout != b"sleep\n"  # PID 1 is the pod's pause process


def test_daemon_restart_keeps_containers(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    running = crisp.run(pod_id, crisp.config("running"))
    ending = crisp.run(pod_id, crisp.config("ending", command=["sh", "-c", "sleep 1; exit 7"]))
    crisp.restart(signal.SIGKILL)
    time.sleep(1.5)  # "ending" exits while crisp is down
    status = crisp.status(running)
    assert status.state == pb.CONTAINER_RUNNING
    ended = crisp.wait_exited(ending)
    assert (ended.exit_code, ended.reason) == (7, "Error")
    assert crisp.exec(running, "echo", "still here").stdout == b"still here\n"
    crisp.restart()
    assert crisp.status(running).state == pb.CONTAINER_RUNNING
    assert crisp.status(ending).exit_code == 7


def _record_half_created(crisp: Crisp, pod_id: str, half: str, bundle: Path) -> None:
    """The CREATING record a daemon killed in the middle of CreateContainer leaves."""
    db = StateDB(crisp.paths.root / "crisp.db")
    try:
        document = {
            "pod_id": pod_id,
            "name": "half",
            "attempt": 0,
            "image": crisp.image,
            "image_id": "",
            "layers": [],
            "bundle": str(bundle),
            "cgroup": f"/crisp/pod-{pod_id}/crisp-{half}",
        }
        db.put("container", half, "creating", document)
    finally:
        db.close()


def test_interrupted_create_is_undone_at_start(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    kept = crisp.run(pod_id, crisp.config("kept"))
    crisp.daemon.stop()
    # What a daemon killed in the middle of CreateContainer leaves: a CREATING record and
    # a bundle directory (the overlay may or may not be mounted yet).
    half = "e" * 64
    bundle = crisp.paths.root / "containers" / half
    (bundle / "rootfs").mkdir(parents=True)
    _record_half_created(crisp, pod_id, half, bundle)
    crisp.daemon = start_daemon(crisp.paths)
    assert not bundle.exists()
    assert [c.id for c in crisp.list()] == [kept]
    assert crisp.status(kept).state == pb.CONTAINER_RUNNING


def test_a_bundle_without_a_record_is_removed_at_start(crisp: Crisp) -> None:
    """What a daemon killed in CreateContainer before its first record write leaves: a
    bundle with its overlay rootfs (and an image volume) mounted, which nothing names."""
    pod_id = crisp.run_pod()
    kept = crisp.run(pod_id, crisp.config("kept"))
    crisp.daemon.stop()
    bundle = crisp.paths.root / "containers" / ("d" * 64)
    for mount_point in (bundle / "rootfs", bundle / "volumes" / "0" / "root"):
        mount_point.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mount_point)], check=True)
    crisp.daemon = start_daemon(crisp.paths)
    assert not bundle.exists()
    assert mounts_under(crisp.paths.root / "containers") == mounts_under(
        crisp.paths.root / "containers" / kept
    )
    assert [c.id for c in crisp.list()] == [kept]
    assert crisp.status(kept).state == pb.CONTAINER_RUNNING


def test_exec_probes_leak_nothing(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    container_id = crisp.run(pod_id, crisp.config())
    daemon_pid = crisp.daemon.process.pid
    crisp.exec(container_id, "true")  # the first call sets up what later ones reuse
    fds_before = len(os.listdir(f"/proc/{daemon_pid}/fd"))
    for i in range(100):
        answer = crisp.exec(container_id, "sh", "-c", f"echo {i}; sleep 0.01 & exit 0")
        assert answer.stdout == f"{i}\n".encode()
    assert len(os.listdir(f"/proc/{daemon_pid}/fd")) <= fds_before + 2
    assert zombies_below([daemon_pid, monitor_pid(crisp.daemon, container_id)]) == []
    answer = crisp.exec(container_id, "sh", "-c", "ps -o stat | grep -c Z")
    assert answer.stdout == b"0\n"


def test_image_removal_keeps_layers_of_containers(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    container_id = crisp.run(pod_id, crisp.config())
    crisp.daemon.image.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=crisp.image)))
    assert crisp.exec(container_id, "cat", "/etc/app.conf").stdout == b"from-image\n"
    layers = crisp.paths.root / "images" / "layers" / "sha256"
    assert len(list(layers.iterdir())) == 2  # busybox and the app layer, still there
    crisp.restart(signal.SIGKILL)  # start-up recovery collects unused layers: not these
    assert len(list(layers.iterdir())) == 2
    assert crisp.exec(container_id, "cat", "/etc/app.conf").stdout == b"from-image\n"
    crisp.daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id))
    crisp.pull()  # the image comes back on top of the kept layers


# --- image volumes ---


@pytest.fixture(scope="module")
def volume_image_ref(registry: Registry) -> str:
    """A data-only image of two layers: the upper one replaces a file of the lower one."""
    image = ci.build_image(
        [
            [
                ci.directory("data"),
                ci.file("data/a.txt", "one\n"),
                ci.file("data/b.txt", "old\n"),
                ci.symlink("data/out", "/etc"),
            ],
            [ci.directory("data"), ci.file("data/b.txt", "new\n")],
        ]
    )
    ci.Pusher(registry.host).push_image("cri/volume", image, "v1")
    return f"{registry.host}/cri/volume:v1"


def _image_volume(reference: str, path: str, sub_path: str = "") -> pb.Mount:
    return pb.Mount(
        container_path=path,
        image=pb.ImageSpec(image=reference),
        image_sub_path=sub_path,
        readonly=True,
    )


def test_image_volumes(crisp: Crisp, volume_image_ref: str) -> None:
    pod_id = crisp.run_pod()
    missing = crisp.config(mounts=[_image_volume(volume_image_ref, "/vol")])
    assert code_of(lambda: crisp.create(pod_id, missing)) == grpc.StatusCode.NOT_FOUND
    crisp.daemon.image.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=volume_image_ref)))
    for sub_path, code in [
        ("../data", grpc.StatusCode.INVALID_ARGUMENT),
        ("data/out", grpc.StatusCode.INVALID_ARGUMENT),  # a symlink out of the image
        ("nope", grpc.StatusCode.NOT_FOUND),
    ]:
        bad = crisp.config(mounts=[_image_volume(volume_image_ref, "/vol", sub_path)])
        assert code_of(functools.partial(crisp.create, pod_id, bad)) == code, sub_path
        assert_no_container_left(crisp)

    mounts = [
        _image_volume(volume_image_ref, "/vol"),
        _image_volume(volume_image_ref, "/sub", "data"),
    ]
    container_id = crisp.run(pod_id, crisp.config(mounts=mounts))
    read = crisp.exec(container_id, "cat", "/vol/data/a.txt", "/vol/data/b.txt", "/sub/a.txt")
    assert read.stdout == b"one\nnew\none\n"
    write = crisp.exec(container_id, "sh", "-c", "echo x > /vol/data/a.txt")
    assert write.exit_code != 0 and b"Read-only" in write.stderr
    assert crisp.exec(container_id, "cat", "/vol/data/a.txt").stdout == b"one\n"
    # kubelet's image GC finds the image ID in the status
    image_id = crisp.daemon.image.ImageStatus(
        pb.ImageStatusRequest(image=pb.ImageSpec(image=volume_image_ref))
    ).image.id
    status = crisp.status(container_id)
    assert [(m.container_path, m.image.image, m.image_sub_path) for m in status.mounts] == [
        ("/vol", image_id, ""),
        ("/sub", image_id, "data"),
    ]
    assert all(m.readonly for m in status.mounts)
    # In use: removing the image keeps the layers the volume shows, also over a restart.
    crisp.daemon.image.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=image_id)))
    crisp.restart(signal.SIGKILL)
    assert crisp.exec(container_id, "cat", "/sub/b.txt").stdout == b"new\n"

    crisp.daemon.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id))
    assert_no_container_left(crisp)


def test_a_removal_cut_short_by_a_crash_is_finished_at_start(crisp: Crisp) -> None:
    """RemoveContainer answered, then the daemon died before its collector took the
    container apart: the restarted daemon finishes it, and the container stays gone."""
    pod_id = crisp.run_pod()
    container_id = crisp.run(pod_id, crisp.config())
    crisp.daemon.runtime.StopContainer(pb.StopContainerRequest(container_id=container_id))
    crisp.daemon.stop(signal.SIGKILL)
    set_recorded_state(crisp, container_id, "removing")
    bundle = crisp.paths.root / "containers" / container_id
    assert (bundle / "rootfs") in map(Path, mounts_under(bundle))
    crisp.daemon = start_daemon(crisp.paths)
    assert code_of(lambda: crisp.status(container_id)) == grpc.StatusCode.NOT_FOUND
    assert_no_container_left(crisp)
    db = StateDB(crisp.paths.root / "crisp.db")
    try:
        wait_for(lambda: db.get("container", container_id) is None)
    finally:
        db.close()


def test_interrupted_create_with_an_image_volume_is_undone_at_start(crisp: Crisp) -> None:
    pod_id = crisp.run_pod()
    crisp.daemon.stop()
    # A daemon killed after it mounted an image volume of a container it was creating.
    half = "f" * 64
    bundle = crisp.paths.root / "containers" / half
    volume = bundle / "volumes" / "0" / "root"
    volume.mkdir(parents=True)
    (bundle / "rootfs").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(volume)], check=True)
    _record_half_created(crisp, pod_id, half, bundle)
    crisp.daemon = start_daemon(crisp.paths)
    assert not bundle.exists()
    assert_no_container_left(crisp)
