"""deploy/install.sh as an operator runs it: from a clean copy of the checkout into a prefix of
its own, then again as a restart, which must leave a running container running."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from criapi import api_pb2 as pb
from criapi import api_pb2_grpc as pb_grpc
from critest import images as ci
from critest.registry import Registry
from runtime.namespaces import mounts_under
from tests.crisp_daemon import host_network_pod, run_pod_and_container

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

REPOSITORY = Path(__file__).resolve().parents[2]
RPC_TIMEOUT = 30
SCRIPT_TIMEOUT = 600  # a fresh venv installs every dependency


def _copy_checkout(destination: Path) -> None:
    """The working tree's files as a checkout would have them, uncommitted work included
    (new files too), without build output or caches (.gitignore's)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPOSITORY,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPOSITORY / name
        if source.is_file():  # a file deleted but not yet committed is not in the tree
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


@pytest.fixture
def prefix() -> Iterator[Path]:
    # Short: the daemon's and the monitors' sockets lie below it.
    path = Path(tempfile.mkdtemp(prefix="ip", dir="/tmp"))
    try:
        yield path
    finally:
        _stop_daemon(path)
        for mount in sorted(mounts_under(path), reverse=True):
            os.system(f"umount -l {mount!r}")
        shutil.rmtree(path, ignore_errors=True)


def _stop_daemon(prefix: Path) -> None:
    pid_file = prefix / "run" / "crisp.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def _run_script(checkout: Path, name: str, prefix: Path, *args: str) -> str:
    env = dict(os.environ, CRISP_PREFIX=str(prefix), CRISP_SKIP_APT="1")
    result = subprocess.run(
        ["bash", str(checkout / "deploy" / name), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _cgroup_dirs(parent: str) -> list[Path]:
    return [
        hierarchy / parent.lstrip("/")
        for hierarchy in Path("/sys/fs/cgroup").iterdir()
        if (hierarchy / parent.lstrip("/")).is_dir()
    ]


def _scrape(runtime: pb_grpc.RuntimeServiceStub) -> str:
    status = runtime.Status(pb.StatusRequest(verbose=True), timeout=RPC_TIMEOUT)
    address = json.loads(status.info["endpoints"])["metrics"]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        return str(response.read().decode())


def test_install_run_a_container_reinstall_and_it_still_runs(prefix: Path, tmp_path: Path) -> None:
    began = time.monotonic()
    checkout = tmp_path / "checkout"
    _copy_checkout(checkout)
    cgroup_parent = "/crisp-install-" + hashlib.sha256(str(prefix).encode()).hexdigest()[:12]
    # What would collide with the host's own crisp goes in a drop-in, as the script documents.
    (prefix / "etc" / "crisp.d").mkdir(parents=True)
    (prefix / "etc" / "crisp.d" / "50-side-by-side.toml").write_text(
        f'[cgroup]\nparent = "{cgroup_parent}"\n'
        '[metrics]\naddress = "127.0.0.1:0"\n'
        "[cni]\nwrite_default_network = false\n"
    )

    output = _run_script(checkout, "install.sh", prefix)
    assert "RuntimeReady: true" in output
    assert (prefix / "venv" / "bin" / "crisp").exists()
    first_daemon = int((prefix / "run" / "crisp.pid").read_text())
    installed = time.monotonic()

    channel = grpc.insecure_channel(f"unix://{prefix / 'run' / 'crisp.sock'}")
    runtime = pb_grpc.RuntimeServiceStub(channel)
    try:
        with Registry() as registry:
            image = ci.busybox_image(ci.RunConfig(cmd=("sleep", "100000")), [])
            ci.Pusher(registry.host).push_image("install/app", image, "v1")
            image_ref = f"{registry.host}/install/app:v1"
            pb_grpc.ImageServiceStub(channel).PullImage(
                pb.PullImageRequest(image=pb.ImageSpec(image=image_ref)), timeout=RPC_TIMEOUT
            )
        pod_id, container_id = run_pod_and_container(runtime, host_network_pod("kept"), image_ref)

        def container_status() -> tuple[int, int]:
            status = runtime.ContainerStatus(
                pb.ContainerStatusRequest(container_id=container_id, verbose=True),
                timeout=RPC_TIMEOUT,
            )
            return status.status.state, json.loads(status.info["info"])["pid"]

        state, pid = container_status()
        assert state == pb.CONTAINER_RUNNING and pid > 0
        # What the Grafana dashboard's container panels chart.
        metrics = _scrape(runtime)
        assert 'crisp_containers{state="running"} 1.0' in metrics
        assert "crisp_containers_oom_killed 0.0" in metrics

        reinstall_began = time.monotonic()
        output = _run_script(checkout, "install.sh", prefix)
        reinstalled = time.monotonic()
        assert "RuntimeReady: true" in output
        second_daemon = int((prefix / "run" / "crisp.pid").read_text())
        assert second_daemon != first_daemon
        assert not Path(f"/proc/{first_daemon}").exists(), "the old daemon still runs"

        assert container_status() == (pb.CONTAINER_RUNNING, pid)
        assert Path(f"/proc/{pid}").exists()

        runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    finally:
        channel.close()

    _run_script(checkout, "uninstall.sh", prefix, "--purge")
    assert not prefix.exists(), sorted(p.name for p in prefix.iterdir())
    assert not Path(f"/proc/{second_daemon}").exists()
    assert _cgroup_dirs(cgroup_parent) == []
    print(
        f"install {installed - began:.1f}s, reinstall (restart) "
        f"{reinstalled - reinstall_began:.1f}s, all {time.monotonic() - began:.1f}s"
    )
