"""What kubelet checks of a CRI runtime, asked of a real crisp daemon the way kubelet asks.

Each test names the kubelet behaviour it stands for; the README's kubelet table points here.
Pods use the host network, so no CNI is needed. The daemons run below a short directory in
/tmp (each monitor's socket lies below the run dir, and sun_path holds 107 bytes).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from criapi import api_pb2 as pb
from criapi import api_pb2_grpc as pb_grpc
from critest import images as ci
from critest.registry import Registry
from runtime.namespaces import mounts_under
from tests.crisp_daemon import (
    DaemonPaths,
    RunningDaemon,
    assert_nothing_left,
    start_daemon,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

RPC_TIMEOUT = 30
# kubelet names a container "<runtime_name>://<id>", so an id must be a bare token.
BARE_ID = re.compile(r"[0-9a-f]{64}")
LOG_SCRIPT = "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.1; done"


@pytest.fixture(scope="module")
def image_ref(registry: Registry) -> str:
    image = ci.busybox_image(ci.RunConfig(cmd=("sleep", "100000")))
    ci.Pusher(registry.host).push_image("cri/kubelet-compat", image, "v1")
    return f"{registry.host}/cri/kubelet-compat:v1"


class Node:
    """A crisp daemon with an image pulled, driven like kubelet drives it."""

    def __init__(self, paths: DaemonPaths, image: str) -> None:
        self.paths = paths
        self.image = image
        self.daemon = start_daemon(paths)
        self.log_root = paths.base / "pods"

    @property
    def rt(self) -> pb_grpc.RuntimeServiceStub:
        return self.daemon.runtime

    def pull(self) -> str:
        request = pb.PullImageRequest(image=pb.ImageSpec(image=self.image))
        return str(self.daemon.image.PullImage(request, timeout=RPC_TIMEOUT).image_ref)

    def restart(self, sig: signal.Signals) -> None:
        assert self.daemon.stop(sig) in (0, -signal.SIGKILL)
        self.daemon = start_daemon(self.paths)

    def pod_config(self, name: str) -> pb.PodSandboxConfig:
        namespace, uid = "kubelet-compat", f"uid-{name}"
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace),
            # The directory kubelet gives: /var/log/pods/<namespace>_<name>_<uid>.
            log_directory=str(self.log_root / f"{namespace}_{name}_{uid}"),
            linux=pb.LinuxPodSandboxConfig(
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.NODE)
                )
            ),
        )

    def run_pod(self, name: str = "pod") -> str:
        request = pb.RunPodSandboxRequest(config=self.pod_config(name))
        return str(self.rt.RunPodSandbox(request, timeout=RPC_TIMEOUT).pod_sandbox_id)

    def create(self, pod_id: str, name: str, command: list[str] | None = None) -> str:
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name),
            image=pb.ImageSpec(image=self.image),
            command=command or [],
            log_path=f"{name}/0.log",  # kubelet's <container name>/<restart count>.log
        )
        request = pb.CreateContainerRequest(
            pod_sandbox_id=pod_id,
            config=config,
            sandbox_config=self.pod_config(self.pod_status(pod_id).metadata.name),
        )
        return str(self.rt.CreateContainer(request, timeout=RPC_TIMEOUT).container_id)

    def start(self, container_id: str) -> None:
        self.rt.StartContainer(
            pb.StartContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT
        )

    def run(self, pod_id: str, name: str, command: list[str] | None = None) -> str:
        container_id = self.create(pod_id, name, command)
        self.start(container_id)
        return container_id

    def pod_status(self, pod_id: str) -> pb.PodSandboxStatus:
        request = pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id)
        return self.rt.PodSandboxStatus(request, timeout=RPC_TIMEOUT).status

    def status(self, container_id: str) -> pb.ContainerStatus:
        request = pb.ContainerStatusRequest(container_id=container_id)
        return self.rt.ContainerStatus(request, timeout=RPC_TIMEOUT).status

    def exec(self, container_id: str, *cmd: str, timeout: int = 10) -> pb.ExecSyncResponse:
        request = pb.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=timeout)
        return self.rt.ExecSync(request, timeout=RPC_TIMEOUT)

    def stats(self) -> dict[str, pb.ContainerStats]:
        answer = self.rt.ListContainerStats(pb.ListContainerStatsRequest(), timeout=RPC_TIMEOUT)
        return {s.attributes.id: s for s in answer.stats}

    def cleanup(self) -> None:
        for container in self.rt.ListContainers(pb.ListContainersRequest()).containers:
            self.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=container.id))
        for pod in self.rt.ListPodSandbox(pb.ListPodSandboxRequest()).items:
            self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod.id))
            self.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id))


@pytest.fixture
def node(image_ref: str) -> Iterator[Node]:
    base = Path(tempfile.mkdtemp(prefix="kc", dir="/tmp"))
    env = Node(DaemonPaths(base), image_ref)
    try:
        env.pull()
        yield env
        env.cleanup()
        assert env.daemon.stop() == 0, env.daemon.log()
        assert_nothing_left(env.daemon)
    finally:
        if env.daemon.process.poll() is None:
            with contextlib.suppress(grpc.RpcError):
                env.cleanup()
            env.daemon.stop()
        for mount in sorted(mounts_under(base), reverse=True):
            os.system(f"umount -l {mount!r}")
        shutil.rmtree(base, ignore_errors=True)


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


# kubelet's cri-client rejects statuses that lack these (verifySandboxStatus and
# verifyContainerStatus in k8s.io/cri-client): the pod or container is then unusable to it.


def assert_valid_pod_status(status: pb.PodSandboxStatus) -> None:
    assert status.id
    assert status.HasField("metadata")
    assert status.metadata.name and status.metadata.namespace and status.metadata.uid
    assert status.created_at != 0


def assert_valid_container_status(status: pb.ContainerStatus) -> None:
    assert status.id
    assert status.HasField("metadata") and status.metadata.name
    assert status.created_at != 0
    assert status.HasField("image") and status.image.image
    assert status.image_ref


# --- runtime info ---


def test_version_has_every_field_kubelet_checks(crisp: RunningDaemon) -> None:
    answer = crisp.runtime.Version(pb.VersionRequest(version="0.1.0"))
    assert answer.version == "0.1.0"  # kubelet refuses any other runtime API version
    assert answer.runtime_name == "crisp"  # the scheme of kubelet's container ids
    assert answer.runtime_version and answer.runtime_api_version == "v1"


def test_runtime_config_reports_the_configured_cgroup_driver(daemon_paths: DaemonPaths) -> None:
    daemon = start_daemon(daemon_paths, ["--cgroup-driver", "systemd"])
    try:
        answer = daemon.runtime.RuntimeConfig(pb.RuntimeConfigRequest())
        assert answer.linux.cgroup_driver == pb.SYSTEMD
    finally:
        assert daemon.stop() == 0
    assert_nothing_left(daemon)


# --- pods and containers as kubelet reads them ---


def test_ids_are_bare_lowercase_hex(node: Node) -> None:
    pod_id = node.run_pod()
    container_id = node.run(pod_id, "app")
    for listed in node.rt.ListPodSandbox(pb.ListPodSandboxRequest()).items:
        assert BARE_ID.fullmatch(listed.id), listed.id
    for container in node.rt.ListContainers(pb.ListContainersRequest()).containers:
        assert BARE_ID.fullmatch(container.id), container.id
        assert BARE_ID.fullmatch(container.pod_sandbox_id), container.pod_sandbox_id
    assert BARE_ID.fullmatch(pod_id) and BARE_ID.fullmatch(container_id)


def test_statuses_pass_kubelets_validation_in_every_state(node: Node) -> None:
    image_id = node.pull()
    pod_id = node.run_pod()
    assert_valid_pod_status(node.pod_status(pod_id))
    container_id = node.create(pod_id, "app")
    assert_valid_container_status(node.status(container_id))
    node.start(container_id)
    running = node.status(container_id)
    assert_valid_container_status(running)
    # kubelet matches image_ref against ImageStatus's id to find the container's image.
    assert running.image_ref == image_id and running.image.image == node.image
    listed = node.rt.ListContainers(pb.ListContainersRequest()).containers
    assert [(c.id, c.metadata.name, c.image_ref) for c in listed] == [
        (container_id, "app", image_id)
    ]
    assert all(c.created_at != 0 and c.image.image for c in listed)

    node.rt.StopContainer(pb.StopContainerRequest(container_id=container_id, timeout=5))
    exited = node.status(container_id)
    assert_valid_container_status(exited)
    assert exited.state == pb.CONTAINER_EXITED and exited.finished_at >= exited.started_at > 0

    node.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    stopped = node.pod_status(pod_id)
    assert_valid_pod_status(stopped)
    assert stopped.state == pb.SANDBOX_NOTREADY


# --- /stats/summary and eviction ---


def test_container_stats_fill_stats_summary(node: Node) -> None:
    pod_id = node.run_pod()
    container_id = node.run(pod_id, "app", ["sh", "-c", LOG_SCRIPT])
    node.exec(container_id, "dd", "if=/dev/zero", "of=/written", "bs=1k", "count=300")
    first = node.stats()[container_id]
    node.exec(container_id, "dd", "if=/dev/zero", "of=/dev/null", "bs=64k", "count=20000")
    second = node.stats()[container_id]

    assert second.attributes.metadata.name == "app"  # kubelet names the summary entry so
    assert second.cpu.timestamp > first.cpu.timestamp
    used = second.cpu.usage_core_nano_seconds.value - first.cpu.usage_core_nano_seconds.value
    assert used > 0
    # Given by crisp, kubelet takes usage_nano_cores as is instead of deriving it.
    assert second.cpu.HasField("usage_nano_cores") and second.cpu.usage_nano_cores.value > 0
    assert second.memory.timestamp > 0 and second.memory.working_set_bytes.value > 0

    layer = second.writable_layer
    assert layer.timestamp > 0
    assert layer.used_bytes.value >= 300 * 1024 and layer.inodes_used.value >= 1
    # kubelet asks cAdvisor for the filesystem holding this directory: it must exist.
    assert Path(layer.fs_id.mountpoint).is_dir()
    assert layer.fs_id.mountpoint == str(node.paths.root / "containers")

    # Logs usage: kubelet measures <log_directory>/<container name>/ itself, so the log has
    # to be written exactly at log_directory/log_path.
    pod_logs = Path(node.pod_config("pod").log_directory)
    assert node.status(container_id).log_path == str(pod_logs / "app" / "0.log")
    wait_for(lambda: "line2" in (pod_logs / "app" / "0.log").read_text())


def test_image_fs_info_names_one_filesystem_for_images_and_containers(node: Node) -> None:
    answer = node.daemon.image.ImageFsInfo(pb.ImageFsInfoRequest(), timeout=RPC_TIMEOUT)
    (images,) = answer.image_filesystems
    assert images.timestamp > 0 and images.used_bytes.value > 0 and images.inodes_used.value > 0
    assert Path(images.fs_id.mountpoint).is_dir()
    # kubelet reads different mountpoints here as a split image filesystem; crisp keeps
    # images and writable layers under one root_dir.
    (containers,) = answer.container_filesystems
    assert containers.fs_id.mountpoint == images.fs_id.mountpoint
    layers = node.paths.root / "containers"
    assert os.stat(images.fs_id.mountpoint).st_dev == os.stat(layers).st_dev


# --- restarts: kubelet's, crisp's, in any order ---


def _view(channel: grpc.Channel) -> tuple[list[object], list[object]]:
    """What a freshly started kubelet rebuilds its state from: lists, then statuses."""
    rt = pb_grpc.RuntimeServiceStub(channel)
    pods = sorted(rt.ListPodSandbox(pb.ListPodSandboxRequest()).items, key=lambda p: p.id)
    containers = sorted(
        rt.ListContainers(pb.ListContainersRequest()).containers, key=lambda c: c.id
    )
    pod_statuses = [
        rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=p.id)).status for p in pods
    ]
    container_statuses = [
        rt.ContainerStatus(pb.ContainerStatusRequest(container_id=c.id)).status for c in containers
    ]
    for pod_status in pod_statuses:
        assert_valid_pod_status(pod_status)
    for container_status in container_statuses:
        assert_valid_container_status(container_status)
    return [*pods, *pod_statuses], [*containers, *container_statuses]


def _fresh_view(node: Node) -> tuple[list[object], list[object]]:
    with grpc.insecure_channel(f"unix://{node.paths.socket}") as channel:
        return _view(channel)


def test_kubelet_and_crisp_restarts_in_any_order_keep_pods_running(node: Node) -> None:
    pod_id = node.run_pod()
    container_id = node.run(pod_id, "app", ["sh", "-c", LOG_SCRIPT])
    log_file = Path(node.status(container_id).log_path)
    wait_for(lambda: "line2" in log_file.read_text())
    before = _view(node.daemon.channel)

    def still_running() -> None:
        assert _fresh_view(node) == before  # same pods, same containers, same states
        length = len(log_file.read_bytes())
        wait_for(lambda: len(log_file.read_bytes()) > length)  # the log keeps flowing
        assert node.exec(container_id, "echo", "alive").stdout == b"alive\n"

    still_running()  # kubelet restarts: a new connection, the same answers
    node.restart(signal.SIGKILL)  # crisp dies, then kubelet reconnects
    still_running()
    node.restart(signal.SIGTERM)
    still_running()
    assert node.status(container_id).state == pb.CONTAINER_RUNNING
