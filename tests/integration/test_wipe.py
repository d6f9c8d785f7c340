"""`crisp wipe` against real state: a daemon's pod and container, its mounts and cgroups."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from pyroute2 import IPRoute

from criapi import api_pb2 as pb
from critest import images as ci
from critest.registry import Registry
from runtime.namespaces import mounts_under
from sandbox.network import DEFAULT_NETWORK_FILE
from tests.crisp_daemon import (
    DaemonPaths,
    RunningDaemon,
    host_network_pod,
    run_pod_and_container,
    start_daemon,
)
from tests.hostnet import free_subnet, temporary_bridge
from tests.integration.test_cli import run_crisp

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

RPC_TIMEOUT = 30


@pytest.fixture(scope="module")
def image_ref() -> Iterator[str]:
    with Registry() as registry:
        image = ci.busybox_image(ci.RunConfig(cmd=("sleep", "100000")), [])
        ci.Pusher(registry.host).push_image("wipe/app", image, "v1")
        yield f"{registry.host}/wipe/app:v1"


def _cgroup_dirs(parent: str) -> list[Path]:
    return [
        hierarchy / parent.lstrip("/")
        for hierarchy in Path("/sys/fs/cgroup").iterdir()
        if (hierarchy / parent.lstrip("/")).is_dir()
    ]


def _remove_everything(daemon: RunningDaemon) -> None:
    for pod in daemon.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items:
        daemon.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod.id))
        daemon.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id))


@pytest.fixture
def daemon_paths() -> Iterator[DaemonPaths]:
    paths = DaemonPaths(Path(tempfile.mkdtemp(prefix="wp", dir="/tmp")))
    try:
        yield paths
    finally:
        # Whatever a failed test left: its pods through a daemon, then mounts and cgroups.
        if paths.root.exists():
            with contextlib.suppress(AssertionError, grpc.RpcError):
                daemon = start_daemon(paths)
                try:
                    _remove_everything(daemon)
                finally:
                    daemon.stop()
        for mount in sorted(mounts_under(paths.base), reverse=True):
            os.system(f"umount -l {mount!r}")
        for directory in _cgroup_dirs(paths.cgroup_parent):
            for child in sorted(directory.glob("**/"), key=lambda p: len(p.parts), reverse=True):
                child.rmdir()
        shutil.rmtree(paths.base, ignore_errors=True)


def _wipe(paths: DaemonPaths) -> tuple[int, str, str]:
    result = run_crisp("wipe", *paths.flags())
    return result.returncode, result.stdout, result.stderr


def test_wipe_refuses_while_anything_runs_then_leaves_nothing(
    daemon_paths: DaemonPaths, image_ref: str
) -> None:
    paths = daemon_paths
    daemon = start_daemon(paths)
    daemon.image.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=image_ref)))
    # No log directory: crisp makes one of its own below log_dir, which wipe removes.
    pod_id, container_id = run_pod_and_container(
        daemon.runtime, host_network_pod("wiped"), image_ref
    )
    daemon_pid = daemon.process.pid

    code, _, stderr = _wipe(paths)
    assert code == 1
    assert "refusing, a crisp daemon is running" in stderr
    assert f"pid {daemon_pid}" in stderr

    assert daemon.stop() == 0
    code, _, stderr = _wipe(paths)
    assert code == 1, stderr
    assert "refusing, these still run" in stderr
    assert f"container {container_id[:13]} (app, pod {pod_id[:13]}): monitor pid" in stderr
    assert f"pod {pod_id[:13]} (crisp-test/wiped): pause pid" in stderr
    assert (paths.root / "crisp.db").exists(), "a refused wipe removed state"

    daemon = start_daemon(paths)
    _remove_everything(daemon)
    assert daemon.stop() == 0
    assert (paths.base / "logs" / pod_id).is_dir()

    code, stdout, stderr = _wipe(paths)
    assert code == 0, stderr
    assert f"removed {paths.root}" in stdout
    assert not paths.root.exists()
    assert not paths.run.exists()
    assert not (paths.base / "logs").exists()
    assert mounts_under(paths.base) == []
    assert _cgroup_dirs(paths.cgroup_parent) == []

    # Wiping what is already gone is fine.
    code, stdout, stderr = _wipe(paths)
    assert code == 0, stderr


def _bridge_ports(bridge: str) -> list[str]:
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=bridge)
        if not found:
            return []
        return [
            link.get_attr("IFLA_IFNAME")
            for link in ipr.get_links()
            if link.get_attr("IFLA_MASTER") == found[0]
        ]


@pytest.fixture
def bridge() -> Iterator[str]:
    with temporary_bridge("crw") as name:
        yield name


def test_wipe_takes_a_crashed_pod_off_its_network(daemon_paths: DaemonPaths, bridge: str) -> None:
    """Also what crisp's own network file leaves once no pod is on it: the bridge and
    host-local's allocation directory."""
    paths = daemon_paths
    ipam_dir = paths.base / "ipam"
    (paths.base / "net.d").mkdir(parents=True)
    (paths.base / "net.d" / DEFAULT_NETWORK_FILE).write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "wipe-pods",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": bridge,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": str(free_subnet())}]],
                            "dataDir": str(ipam_dir),
                        },
                    }
                ],
            }
        )
    )
    daemon = start_daemon(paths)
    pod_config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="netted", uid="uid-netted", namespace="crisp-test")
    )
    pod_id = daemon.runtime.RunPodSandbox(
        pb.RunPodSandboxRequest(config=pod_config), timeout=RPC_TIMEOUT
    ).pod_sandbox_id
    status = daemon.runtime.PodSandboxStatus(
        pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
    )
    pause = json.loads(status.info["info"])["pid"]
    allocated = ipam_dir / "wipe-pods"
    assert [p.name for p in allocated.iterdir() if p.name[0].isdigit()] == [
        status.status.network.ip
    ]
    assert len(_bridge_ports(bridge)) == 1
    assert daemon.stop() == 0

    # As after a crash: the pod's pause process is gone, its network never torn down.
    os.kill(pause, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pause}").exists():
        assert time.monotonic() < deadline, "the pause process does not die"
        time.sleep(0.05)

    code, stdout, stderr = _wipe(paths)
    assert code == 0, stderr
    assert "took 1 pods off their network" in stdout
    assert "1 network devices" in stdout
    assert not allocated.exists()
    with IPRoute() as ipr:
        assert ipr.link_lookup(ifname=bridge) == []
    assert not paths.root.exists() and not paths.run.exists()
    assert mounts_under(paths.base) == []
    assert _cgroup_dirs(paths.cgroup_parent) == []
