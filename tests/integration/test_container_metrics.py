"""The container gauges of /metrics against real containers: one running, one OOM-killed."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from criapi import api_pb2 as pb
from critest import images as ci
from critest.registry import Registry
from runtime.namespaces import mounts_under
from tests.crisp_daemon import DaemonPaths, RunningDaemon, assert_nothing_left, start_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

RPC_TIMEOUT = 30


@pytest.fixture
def crisp() -> Iterator[RunningDaemon]:
    base = Path(tempfile.mkdtemp(prefix="cm", dir="/tmp"))  # short: monitor sockets lie below
    daemon = start_daemon(DaemonPaths(base))
    try:
        yield daemon
        _remove_pods(daemon)
        assert daemon.stop() == 0, daemon.log()
        assert_nothing_left(daemon)
    finally:
        if daemon.process.poll() is None:
            with contextlib.suppress(grpc.RpcError):
                _remove_pods(daemon)
            daemon.stop()
        for mount in sorted(mounts_under(base), reverse=True):
            os.system(f"umount -l {mount!r}")
        shutil.rmtree(base, ignore_errors=True)


def _remove_pods(daemon: RunningDaemon) -> None:
    for pod in daemon.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items:
        daemon.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod.id))
        daemon.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id))


def _gauges(daemon: RunningDaemon) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{daemon.metrics_address}/metrics", timeout=10) as r:
        lines = r.read().decode().splitlines()
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in lines)
        if name.startswith("crisp_containers")
    }


def test_containers_by_state_and_oom_kills(crisp: RunningDaemon) -> None:
    with Registry() as registry:
        image = ci.busybox_image(ci.RunConfig(cmd=("sleep", "100000")), [])
        ci.Pusher(registry.host).push_image("metrics/app", image, "v1")
        image_ref = f"{registry.host}/metrics/app:v1"
        crisp.image.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=image_ref)))
    assert _gauges(crisp) == {
        'crisp_containers{state="created"}': 0,
        'crisp_containers{state="running"}': 0,
        'crisp_containers{state="exited"}': 0,
        "crisp_containers_oom_killed": 0,
    }
    pod_config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="metrics", uid="uid-metrics", namespace="crisp-test"),
        log_directory=str(crisp.paths.base / "pod-logs"),
        linux=pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE)
            )
        ),
    )
    pod_id = crisp.runtime.RunPodSandbox(
        pb.RunPodSandboxRequest(config=pod_config), timeout=RPC_TIMEOUT
    ).pod_sandbox_id

    def run(name: str, start: bool = True, **fields: object) -> str:
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name),
            image=pb.ImageSpec(image=image_ref),
            log_path=f"{name}.log",
            **fields,  # type: ignore[arg-type]
        )
        container_id: str = crisp.runtime.CreateContainer(
            pb.CreateContainerRequest(
                pod_sandbox_id=pod_id, sandbox_config=pod_config, config=config
            ),
            timeout=RPC_TIMEOUT,
        ).container_id
        if start:
            crisp.runtime.StartContainer(pb.StartContainerRequest(container_id=container_id))
        return container_id

    run("sleeper")
    run("waiting", start=False)
    hog = run(
        "hog",
        # Doubles a shell variable until the 32 MiB limit is hit.
        command=["sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done"],
        linux=pb.LinuxContainerConfig(
            resources=pb.LinuxContainerResources(memory_limit_in_bytes=32 * 1024 * 1024)
        ),
    )
    deadline = time.monotonic() + 30
    while True:
        status = crisp.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=hog)).status
        if status.state == pb.CONTAINER_EXITED:
            break
        assert time.monotonic() < deadline, "the memory hog still runs"
        time.sleep(0.1)
    assert status.reason == "OOMKilled", (status.reason, status.exit_code)

    assert _gauges(crisp) == {
        'crisp_containers{state="created"}': 1,
        'crisp_containers{state="running"}': 1,
        'crisp_containers{state="exited"}': 1,
        "crisp_containers_oom_killed": 1,
    }
