"""Pods with a user namespace of their own (KEP-127, `hostUsers: false`) against a real crisp
daemon: the pod's namespaces and its containers in one user namespace mapping root to an
unprivileged host range, the image's files and the pod's files and volumes idmapped so that
they belong to root of the pod, and bad requests refused with nothing left behind.

The daemon runs below a directory others may pass through (0711): root of a pod's user
namespace is an ordinary user on the host and must reach its rootfs below the root dir.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from criapi import api_pb2 as pb
from critest import images as ci
from critest.registry import Registry
from runtime.namespaces import mounts_under
from tests.crisp_daemon import (
    DaemonPaths,
    RunningDaemon,
    assert_nothing_left,
    start_daemon,
    write_config,
)
from tests.integration.test_pods import PodNetwork, cgroup_parent, pod_network

__all__ = ["cgroup_parent", "pod_network"]  # fixtures used below

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

RPC_TIMEOUT = 30
HOST_ROOT = 200000
IDS = 65536
APP_UID = 1000  # owns a file of the test image


@pytest.fixture(scope="module")
def image_ref(registry: Registry) -> str:
    image = ci.busybox_image(
        ci.RunConfig(cmd=("sleep", "100000")),
        [
            [
                ci.file("etc/app.conf", "from-image\n"),
                ci.directory("data"),
                ci.file("home/app/notes", "app's\n", uid=APP_UID, gid=APP_UID),
            ]
        ],
    )
    ci.Pusher(registry.host).push_image("cri/userns", image, "v1")
    return f"{registry.host}/cri/userns:v1"


def mapping(host_id: int = HOST_ROOT, container_id: int = 0, length: int = IDS) -> pb.IDMapping:
    return pb.IDMapping(host_id=host_id, container_id=container_id, length=length)


def pod_userns(host_id: int = HOST_ROOT) -> pb.UserNamespace:
    return pb.UserNamespace(mode=pb.POD, uids=[mapping(host_id)], gids=[mapping(host_id)])


class Node:
    """A daemon with a pod network, and what a test made in it (removed at the end)."""

    def __init__(self, paths: DaemonPaths, args: list[str], image: str, volume: Path) -> None:
        self.args = args
        self.daemon = start_daemon(paths, args)
        self.rt = self.daemon.runtime
        self.image = image
        self.volume = volume

    def restart(self) -> None:
        assert self.daemon.stop() == 0, self.daemon.log()
        self.daemon = start_daemon(self.daemon.paths, self.args)
        self.rt = self.daemon.runtime

    def pod_config(self, name: str, userns: pb.UserNamespace | None) -> pb.PodSandboxConfig:
        options = pb.NamespaceOption(network=pb.POD, pid=pb.POD, ipc=pb.POD)
        if userns is not None:
            options.userns_options.CopyFrom(userns)
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="userns"),
            hostname=name,
            linux=pb.LinuxPodSandboxConfig(
                security_context=pb.LinuxSandboxSecurityContext(namespace_options=options)
            ),
        )

    def run_pod(self, config: pb.PodSandboxConfig) -> str:
        request = pb.RunPodSandboxRequest(config=config)
        return str(self.rt.RunPodSandbox(request, timeout=RPC_TIMEOUT).pod_sandbox_id)

    def container_config(self, name: str, userns: pb.UserNamespace | None) -> pb.ContainerConfig:
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name),
            image=pb.ImageSpec(image=self.image),
            mounts=[pb.Mount(container_path="/volume", host_path=str(self.volume))],
        )
        options = config.linux.security_context.namespace_options
        options.pid = pb.POD
        if userns is not None:
            options.userns_options.CopyFrom(userns)
        return config

    def create(self, pod_id: str, pod: pb.PodSandboxConfig, config: pb.ContainerConfig) -> str:
        request = pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=config, sandbox_config=pod
        )
        return str(self.rt.CreateContainer(request, timeout=RPC_TIMEOUT).container_id)

    def run(self, pod_id: str, pod: pb.PodSandboxConfig, config: pb.ContainerConfig) -> str:
        container_id = self.create(pod_id, pod, config)
        self.rt.StartContainer(
            pb.StartContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT
        )
        return container_id

    def sh(self, container_id: str, script: str) -> str:
        request = pb.ExecSyncRequest(container_id=container_id, cmd=["sh", "-c", script])
        answer = self.rt.ExecSync(request, timeout=RPC_TIMEOUT)
        assert answer.exit_code == 0, (script, answer.stdout, answer.stderr)
        return answer.stdout.decode()

    def host_pid(self, container_id: str) -> int:
        request = pb.ContainerStatusRequest(container_id=container_id, verbose=True)
        info = self.rt.ContainerStatus(request, timeout=RPC_TIMEOUT).info["info"]
        return int(json.loads(info)["pid"])

    def pods(self) -> list[pb.PodSandbox]:
        return list(self.rt.ListPodSandbox(pb.ListPodSandboxRequest()).items)

    def containers(self) -> list[pb.Container]:
        return list(self.rt.ListContainers(pb.ListContainersRequest()).containers)

    def remove_all(self) -> None:
        for container in self.containers():
            self.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=container.id))
        for pod in self.pods():
            self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod.id))
            self.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id))


def _base(mode: int) -> Path:
    # Short: each container's monitor socket lies below the run dir (sun_path: 107 bytes).
    base = Path(tempfile.mkdtemp(prefix="un", dir="/tmp"))
    base.chmod(mode)
    return base


def _handler_features(daemon: RunningDaemon) -> pb.RuntimeHandlerFeatures:
    status = daemon.runtime.Status(pb.StatusRequest(), timeout=RPC_TIMEOUT)
    return next(h.features for h in status.runtime_handlers if h.name == "")


@pytest.fixture
def node(pod_network: PodNetwork, cgroup_parent: str, image_ref: str) -> Iterator[Node]:
    base = _base(0o711)
    try:
        paths = DaemonPaths(base)
        write_config(paths)
        (base / "net.d").mkdir()
        (base / "net.d" / "10-userns.conflist").write_text(json.dumps(pod_network.conflist()))
        volume = base / "volume"
        volume.mkdir()
        (volume / "from-host").write_text("host\n")
        env = Node(paths, ["--cgroup-parent", cgroup_parent], image_ref, volume)
        try:
            env.daemon.image.PullImage(
                pb.PullImageRequest(image=pb.ImageSpec(image=image_ref)), timeout=RPC_TIMEOUT
            )
            yield env
            env.remove_all()
        finally:
            code = env.daemon.stop()
        assert code == 0, env.daemon.log()
        assert_nothing_left(env.daemon)
        assert list((paths.root / "containers").iterdir()) == []
        assert pod_network.allocated_ips() == [], "pod IPs left allocated"
    finally:
        for mount in sorted(mounts_under(base), reverse=True):
            os.system(f"umount -l {mount!r}")
        shutil.rmtree(base, ignore_errors=True)


def test_pod_and_its_containers_share_one_mapped_user_namespace(node: Node) -> None:
    assert _handler_features(node.daemon).user_namespaces
    userns = pod_userns()
    pod = node.pod_config("mapped", userns)
    pod_id = node.run_pod(pod)
    answer = node.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
    assert answer.status.linux.namespaces.options.userns_options == userns
    config = node.container_config("first", userns)
    # Capabilities within the pod's user namespace: they reach what it owns, no further.
    config.linux.security_context.capabilities.add_capabilities.extend(["NET_ADMIN", "SYS_ADMIN"])
    first = node.run(pod_id, pod, config)
    # kubelet restates the pod's namespace options for each container; leaving them out
    # means the pod's too. A PID namespace of its own is made inside the user namespace.
    config = node.container_config("second", None)
    config.linux.security_context.namespace_options.pid = pb.CONTAINER
    second = node.run(pod_id, pod, config)
    assert node.sh(first, "cat /proc/1/comm") == "crisp-pause\n"
    assert node.sh(second, "cat /proc/1/comm") == "sleep\n"

    expected = f"0 {HOST_ROOT} {IDS}"
    assert " ".join(node.sh(first, "cat /proc/self/uid_map").split()) == expected
    assert " ".join(node.sh(first, "cat /proc/self/gid_map").split()) == expected
    assert node.sh(first, "id -u; id -g").split() == ["0", "0"]
    host_pid = node.host_pid(first)
    status = Path(f"/proc/{host_pid}/status").read_text().splitlines()
    uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
    assert uids == [str(HOST_ROOT)] * 4, "the host sees root of the pod as an ordinary uid"

    host_userns = os.readlink("/proc/self/ns/user")
    first_userns = node.sh(first, "readlink /proc/self/ns/user").strip()
    assert first_userns != host_userns
    assert node.sh(second, "readlink /proc/self/ns/user").strip() == first_userns
    # The pod's network and uts namespaces were made inside it, so root of the pod (with
    # the capabilities) may configure them; the host's clock it may not touch.
    net = "readlink /proc/self/ns/net"
    assert node.sh(first, net) == node.sh(second, net)
    node.sh(first, "ip link set lo mtu 1500 && hostname renamed")
    assert node.sh(second, "hostname").strip() == "renamed"
    assert "not permitted" in node.sh(first, "date -s 2000-01-01 2>&1 || true")

    # The image's files belong to root of the pod, and root may change them.
    assert node.sh(first, "stat -c %u:%g / /etc/app.conf /data").split() == ["0:0"] * 3
    assert node.sh(first, "stat -c %u:%g /home/app/notes").strip() == f"{APP_UID}:{APP_UID}"
    node.sh(first, "echo changed >> /etc/app.conf && touch /data/new && chown 1000 /data/new")
    upper = node.daemon.paths.root / "containers" / first / "upper"
    assert os.stat(upper / "etc" / "app.conf").st_uid == HOST_ROOT
    assert os.stat(upper / "data" / "new").st_uid == HOST_ROOT + 1000
    assert node.sh(second, "cat /etc/app.conf") == "from-image\n", "layers stay untouched"

    # The pod's files, /dev/shm and volumes also belong to root of the pod.
    for path in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/shm", "/volume"):
        assert node.sh(first, f"stat -c %u:%g {path}").strip() == "0:0", path
    node.sh(first, "echo '# by the pod' >> /etc/hosts && touch /dev/shm/shared /volume/new")
    assert node.sh(second, "ls /dev/shm").split() == ["shared"]
    assert node.sh(first, "cat /volume/from-host") == "host\n"
    # Through the idmapped mount root of the pod writes as the host's root would without
    # a user namespace: the volume's ids on disk do not depend on the pod's range.
    assert os.stat(node.volume / "new").st_uid == 0
    assert os.stat(node.volume / "from-host").st_uid == 0

    # A restarted daemon finds the pod whole (its user namespace pin included).
    node.restart()
    assert [pod.state for pod in node.pods()] == [pb.SANDBOX_READY]
    assert node.sh(first, "readlink /proc/self/ns/user").strip() == first_userns


BAD_POD_USER_NAMESPACES = [
    (pb.UserNamespace(mode=pb.NODE, uids=[mapping()], gids=[mapping()]), pb.POD, "NODE"),
    (
        pb.UserNamespace(
            mode=pb.POD, uids=[mapping(), mapping(300000)], gids=[mapping(), mapping(300000)]
        ),
        pb.POD,
        "exactly one mapping",
    ),
    (
        pb.UserNamespace(mode=pb.POD, uids=[mapping(container_id=1)], gids=[mapping()]),
        pb.POD,
        "container_id must be 0",
    ),
    (
        pb.UserNamespace(mode=pb.POD, uids=[mapping()], gids=[mapping(length=1000)]),
        pb.POD,
        "too short",
    ),
    (pb.UserNamespace(mode=pb.POD, uids=[mapping(host_id=0)], gids=[mapping()]), pb.POD, "root"),
    (pb.UserNamespace(mode=pb.POD), pb.POD, "exactly one mapping"),
    (pb.UserNamespace(mode=pb.CONTAINER), pb.POD, "mode CONTAINER"),
    (pb.UserNamespace(mode=pb.TARGET), pb.POD, "mode TARGET"),
    (pod_userns(), pb.NODE, "node's network namespace"),
]


def test_bad_pod_user_namespaces_are_refused(node: Node) -> None:
    for userns, network, reason in BAD_POD_USER_NAMESPACES:
        config = node.pod_config("refused", userns)
        config.linux.security_context.namespace_options.network = network
        with pytest.raises(grpc.RpcError) as err:
            node.run_pod(config)
        details = err.value.details() or ""
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, details
        assert "userns_options" in details and reason in details, details
        assert node.pods() == []
        pods_dir = node.daemon.paths.run / "pods"
        assert not pods_dir.exists() or list(pods_dir.iterdir()) == []


def test_containers_cannot_leave_the_pods_user_namespace(node: Node) -> None:
    userns = pod_userns()
    pod = node.pod_config("strict", userns)
    pod_id = node.run_pod(pod)
    for other in (
        pod_userns(host_id=300000),
        pb.UserNamespace(mode=pb.NODE),
        pb.UserNamespace(mode=pb.CONTAINER, uids=[mapping()], gids=[mapping()]),
    ):
        with pytest.raises(grpc.RpcError) as err:
            node.create(pod_id, pod, node.container_config("other", other))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "differ from pod sandbox" in (err.value.details() or "")
    assert node.containers() == []
    assert list((node.daemon.paths.root / "containers").iterdir()) == []
    # And a pod in the node's user namespace takes no container with a user namespace.
    plain = node.pod_config("plain", pb.UserNamespace(mode=pb.NODE))
    plain_id = node.run_pod(plain)
    with pytest.raises(grpc.RpcError) as err:
        node.create(plain_id, plain, node.container_config("mapped", userns))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unreachable_root_dir_disables_user_namespaces(cgroup_parent: str) -> None:
    base = _base(0o700)  # root of a pod could not pass through it
    try:
        paths = DaemonPaths(base)
        daemon = start_daemon(paths, ["--cgroup-parent", cgroup_parent])
        try:
            assert not _handler_features(daemon).user_namespaces
            config = pb.PodSandboxConfig(
                metadata=pb.PodSandboxMetadata(name="p", uid="u", namespace="n"),
                linux=pb.LinuxPodSandboxConfig(
                    security_context=pb.LinuxSandboxSecurityContext(
                        namespace_options=pb.NamespaceOption(userns_options=pod_userns())
                    )
                ),
            )
            with pytest.raises(grpc.RpcError) as err:
                daemon.runtime.RunPodSandbox(
                    pb.RunPodSandboxRequest(config=config), timeout=RPC_TIMEOUT
                )
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert "cannot be passed through" in daemon.log()
        finally:
            code = daemon.stop()
        assert code == 0, daemon.log()
        assert_nothing_left(daemon)
    finally:
        shutil.rmtree(base, ignore_errors=True)
