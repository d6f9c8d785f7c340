"""Start the real crisp daemon as a subprocess on temporary paths, and check what it leaves."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from criapi import api_pb2 as pb
from criapi import api_pb2_grpc as pb_grpc
from critest.bench_memory import verbose_pid
from critest.procmem import parent_of
from runtime.namespaces import mounts_under

RPC_TIMEOUT = 60


@dataclass
class DaemonPaths:
    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def run(self) -> Path:
        return self.base / "run"

    @property
    def socket(self) -> Path:
        return self.run / "crisp.sock"

    @property
    def config_file(self) -> Path:
        return self.base / "crisp.toml"

    @property
    def config_dir(self) -> Path:
        return self.base / "crisp.d"

    @property
    def log_file(self) -> Path:
        return self.base / "daemon.log"

    @property
    def cgroup_parent(self) -> str:
        # Never the host's default (/crisp): each test daemon's pods go below a parent of
        # its own, which assert_nothing_left removes again.
        return "/crisp-test-" + hashlib.sha256(str(self.base).encode()).hexdigest()[:12]

    def flags(self) -> list[str]:
        return [
            "--cgroup-parent",
            self.cgroup_parent,
            "--config",
            str(self.config_file),
            "--config-dir",
            str(self.config_dir),
            "--root",
            str(self.root),
            "--run-dir",
            str(self.run),
            "--log-dir",
            str(self.base / "logs"),
            "--socket",
            str(self.socket),
            "--cni-conf-dir",
            str(self.base / "net.d"),
            # Tests bring their own networks; the default one would share the host's bridge.
            "--set",
            "cni.write_default_network=false",
            "--metrics-address",
            "127.0.0.1:0",
            "--log-level",
            "debug",
        ]


def crisp_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cri", *args]


@dataclass
class RunningDaemon:
    paths: DaemonPaths
    process: subprocess.Popen[bytes]
    channel: grpc.Channel
    runtime: pb_grpc.RuntimeServiceStub
    image: pb_grpc.ImageServiceStub
    metrics_address: str = ""
    extra_args: Sequence[str] = field(default_factory=list)

    def log(self) -> str:
        return self.paths.log_file.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20) -> int:
        self.channel.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"crisp did not stop on {sig.name}; log:\n{self.log()}") from None


def write_config(paths: DaemonPaths, text: str = "") -> None:
    paths.base.mkdir(parents=True, exist_ok=True)
    paths.config_dir.mkdir(exist_ok=True)
    paths.config_file.write_text(text)


# After a failed connect (the daemon is still starting) gRPC waits a second before it
# tries again: half of a daemon's start-up time in every test. The daemon answers after a
# few hundred milliseconds, so the client retries sooner.
_RECONNECT_SOON = [
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 200),
]


def start_daemon(
    paths: DaemonPaths, extra_args: Sequence[str] = (), timeout: float = 30
) -> RunningDaemon:
    if not paths.config_file.exists():
        write_config(paths)
    log = paths.log_file.open("ab")
    process = subprocess.Popen(
        crisp_command("serve", *paths.flags(), *extra_args),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own session, so leftover processes are easy to find
    )
    log.close()
    channel = grpc.insecure_channel(f"unix://{paths.socket}", options=_RECONNECT_SOON)
    runtime = pb_grpc.RuntimeServiceStub(channel)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            channel.close()
            raise AssertionError(
                f"crisp exited with {process.returncode} during start-up; log:\n"
                + paths.log_file.read_text(errors="replace")
            )
        try:
            status = runtime.Status(pb.StatusRequest(verbose=True), timeout=1)
            break
        except grpc.RpcError as e:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                channel.close()
                raise AssertionError("crisp did not answer Status within start-up time") from e
            time.sleep(0.05)
    endpoints = json.loads(status.info["endpoints"])
    return RunningDaemon(
        paths=paths,
        process=process,
        channel=channel,
        runtime=runtime,
        image=pb_grpc.ImageServiceStub(channel),
        metrics_address=endpoints["metrics"],
        extra_args=list(extra_args),
    )


def host_network_pod(name: str) -> pb.PodSandboxConfig:
    """A pod on the host's network (no CNI needed), in the tests' namespace."""
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="crisp-test"),
        linux=pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE)
            )
        ),
    )


def run_pod_and_container(
    runtime: pb_grpc.RuntimeServiceStub, pod_config: pb.PodSandboxConfig, image: str
) -> tuple[str, str]:
    """Run the pod and, in it, a started container "app" of `image` (pulled already)
    logging to app/0.log; returns (pod id, container id)."""
    pod_id = runtime.RunPodSandbox(
        pb.RunPodSandboxRequest(config=pod_config), timeout=RPC_TIMEOUT
    ).pod_sandbox_id
    container_id = runtime.CreateContainer(
        pb.CreateContainerRequest(
            pod_sandbox_id=pod_id,
            sandbox_config=pod_config,
            config=pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="app"),
                image=pb.ImageSpec(image=image),
                log_path="app/0.log",
            ),
        ),
        timeout=RPC_TIMEOUT,
    ).container_id
    runtime.StartContainer(pb.StartContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT)
    return pod_id, container_id


def monitor_pid(daemon: RunningDaemon, container_id: str) -> int:
    """The monitor is the parent of the container's first process."""
    request = pb.ContainerStatusRequest(container_id=container_id, verbose=True)
    info = daemon.runtime.ContainerStatus(request, timeout=30).info
    pid = verbose_pid(info)
    parent = parent_of(pid) if pid else None
    assert parent is not None, f"container {container_id} has no process: {info}"
    return parent


def processes_in_session(sid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == sid:
                found.append(int(entry))
        except ProcessLookupError:
            continue
    return found


def assert_nothing_left(daemon: RunningDaemon) -> None:
    """After a clean stop: no socket, no lock, no process of the daemon's session."""
    leftovers = processes_in_session(daemon.process.pid)
    assert not leftovers, f"processes left in the daemon's session: {leftovers}"
    assert not daemon.paths.socket.exists(), "socket left behind"
    left_in_run = sorted(p.name for p in daemon.paths.run.iterdir())
    assert left_in_run == [], f"run dir not clean: {left_in_run}"
    mounts = mounts_under(daemon.paths.base)
    assert mounts == [], f"mounts left under {daemon.paths.base}: {mounts}"
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        parent = hierarchy / daemon.paths.cgroup_parent.lstrip("/")
        if parent.is_dir():
            left = [p.name for p in parent.iterdir() if p.is_dir()]
            assert left == [], f"cgroups left under {parent}: {left}"
            parent.rmdir()
