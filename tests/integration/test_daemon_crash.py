"""The crash acceptance test of issue #4: SIGKILL the daemon and its fork server while five
containers run. The containers keep running and their logs keep growing while crisp is down,
a container that exits meanwhile reports its real exit code once crisp is back, and no
process under a monitor is left a zombie.

The daemon runs below a short directory in /tmp (monitor sockets lie below the run dir, and
a unix socket path holds at most 107 bytes). Everything made is removed and checked gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from criapi import api_pb2 as pb
from critest import images as ci
from critest.bench_memory import verbose_pid
from critest.procmem import parent_of
from critest.registry import Registry
from runtime.namespaces import mounts_under
from tests.crisp_daemon import DaemonPaths, RunningDaemon, assert_nothing_left, start_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

RPC_TIMEOUT = 30
RUNNING = ("a", "b", "c", "d")
ENDING = "ending"
ENDING_LINES = 20  # one every 100 ms, then exit 7: about two seconds
TICKER = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"
ENDER = (
    f"i=0; while [ $i -lt {ENDING_LINES} ]; do echo tick $i; i=$((i+1)); sleep 0.1; done; exit 7"
)


def wait_for(predicate: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout}s"
        time.sleep(0.05)


def process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat ("Z" for a zombie), or "" once the pid is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return ""


def alive(pid: int) -> bool:
    return process_state(pid) not in ("", "Z", "X")


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def fork_server_of(daemon_pid: int) -> int:
    for child in children(daemon_pid):
        if Path(f"/proc/{child}/comm").read_text().strip() == "crisp-zygote":
            return child
    raise AssertionError(f"daemon {daemon_pid} has no crisp-zygote child")


@pytest.fixture(scope="module")
def image_ref() -> Iterator[str]:
    with Registry() as registry:
        ci.Pusher(registry.host).push_image("crash/busybox", ci.busybox_image(), "v1")
        yield f"{registry.host}/crash/busybox:v1"


@dataclass
class Cluster:
    """A daemon and the pods it runs; every pod is removed again at the end."""

    paths: DaemonPaths
    image: str
    daemon: RunningDaemon
    pods: list[str] = field(default_factory=list)

    @property
    def log_dir(self) -> Path:
        return self.paths.base / "pod-logs"

    def run_container(self, name: str, script: str) -> str:
        """A pod of its own (host network, no CNI) with one container running `script`."""
        rt = self.daemon.runtime
        isolated = pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER)
        pod_config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="crash"),
            log_directory=str(self.log_dir / name),
            linux=pb.LinuxPodSandboxConfig(
                security_context=pb.LinuxSandboxSecurityContext(namespace_options=isolated)
            ),
        )
        request = pb.RunPodSandboxRequest(config=pod_config)
        pod_id = rt.RunPodSandbox(request, timeout=RPC_TIMEOUT).pod_sandbox_id
        self.pods.append(pod_id)
        own_pid = pb.LinuxContainerSecurityContext(
            namespace_options=pb.NamespaceOption(pid=pb.CONTAINER)
        )
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name),
            image=pb.ImageSpec(image=self.image),
            command=["sh", "-c", script],
            log_path=f"{name}.log",
            linux=pb.LinuxContainerConfig(security_context=own_pid),
        )
        create = pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config
        )
        container_id: str = rt.CreateContainer(create, timeout=RPC_TIMEOUT).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT)
        return container_id

    def log_file(self, name: str) -> Path:
        return self.log_dir / name / f"{name}.log"

    def log_size(self, name: str) -> int:
        try:
            return self.log_file(name).stat().st_size
        except FileNotFoundError:
            return 0

    def status(self, container_id: str, verbose: bool = False) -> pb.ContainerStatusResponse:
        request = pb.ContainerStatusRequest(container_id=container_id, verbose=verbose)
        return self.daemon.runtime.ContainerStatus(request, timeout=RPC_TIMEOUT)

    def container_pid(self, container_id: str) -> int:
        return verbose_pid(self.status(container_id, verbose=True).info)

    def remove_pods(self) -> None:
        rt = self.daemon.runtime
        for pod_id in self.pods:
            rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
            rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
        self.pods.clear()


@pytest.fixture
def cluster(image_ref: str) -> Iterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="dc", dir="/tmp"))
    paths = DaemonPaths(base)
    env = Cluster(paths, image_ref, start_daemon(paths))
    try:
        env.daemon.image.PullImage(
            pb.PullImageRequest(image=pb.ImageSpec(image=image_ref)), timeout=RPC_TIMEOUT
        )
        yield env
        env.remove_pods()
        assert env.daemon.stop() == 0, env.daemon.log()
        assert_nothing_left(env.daemon)
    finally:
        if env.daemon.process.poll() is not None:  # the test failed while crisp was down
            env.daemon = start_daemon(paths)
        if env.pods:
            with contextlib.suppress(grpc.RpcError):
                env.remove_pods()
        env.daemon.stop()
        for mount in sorted(mounts_under(base), reverse=True):
            os.system(f"umount -l {mount!r}")
        shutil.rmtree(base, ignore_errors=True)


def test_sigkill_of_daemon_and_fork_server_leaves_containers_running(cluster: Cluster) -> None:
    ids = {name: cluster.run_container(name, TICKER) for name in RUNNING}
    wait_for(lambda: all(cluster.log_size(n) > 0 for n in RUNNING), what="first log lines")
    daemon_pid = cluster.daemon.process.pid
    fork_server = fork_server_of(daemon_pid)
    # The ending one starts last, right before the kill: its two seconds end while crisp
    # is down, however slowly the others started.
    ids[ENDING] = cluster.run_container(ENDING, ENDER)
    monitors = {name: parent_of(cluster.container_pid(ids[name])) for name in ids}
    assert all(pid is not None and alive(pid) for pid in monitors.values()), monitors
    ending_monitor = monitors[ENDING]
    assert ending_monitor is not None

    cluster.daemon.channel.close()
    os.kill(fork_server, signal.SIGKILL)
    os.kill(daemon_pid, signal.SIGKILL)
    killed_at = time.time_ns()
    assert cluster.daemon.process.wait(10) == -signal.SIGKILL
    # The fork server's parent is gone too: it stays a zombie only where PID 1 reaps nothing.
    wait_for(lambda: not alive(fork_server), what="fork server gone")

    # crisp is down: every monitor still runs, and so do the containers and their logs.
    sizes = {name: cluster.log_size(name) for name in RUNNING}
    wait_for(lambda: not alive(ending_monitor), what=f"{ENDING} exits while crisp is down")
    assert _last_tick(cluster.log_file(ENDING)) == ENDING_LINES - 1
    for name in RUNNING:
        assert alive(monitors[name] or 0), f"monitor of {name} died with the daemon"
    wait_for(lambda: all(cluster.log_size(n) > sizes[n] for n in RUNNING), what="logs growing")

    cluster.daemon = start_daemon(cluster.paths)
    for name in RUNNING:
        status = cluster.status(ids[name]).status
        assert status.state == pb.CONTAINER_RUNNING, name
        assert parent_of(cluster.container_pid(ids[name])) == monitors[name]
    ended = cluster.status(ids[ENDING]).status
    assert (ended.state, ended.exit_code, ended.reason) == (pb.CONTAINER_EXITED, 7, "Error")
    assert ended.finished_at > killed_at > ended.started_at > 0

    sizes = {name: cluster.log_size(name) for name in RUNNING}
    wait_for(lambda: all(cluster.log_size(n) > sizes[n] for n in RUNNING), what="logs growing")
    for name in RUNNING:
        monitor = monitors[name] or 0
        zombies = [pid for pid in children(monitor) if process_state(pid) == "Z"]
        assert zombies == [], f"zombies under the monitor of {name}: {zombies}"


def _last_tick(log: Path) -> int:
    """The counter of the last `tick N` line of a CRI log file."""
    last = log.read_text().splitlines()[-1]
    _stamp, stream, tag, content = last.split(" ", 3)
    assert (stream, tag) == ("stdout", "F"), last
    return int(content.removeprefix("tick "))
