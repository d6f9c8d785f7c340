"""Benchmark: latency of the small, frequent CRI calls kubelet and crictl make (p50/p90/p99).

    python -m bench.rpc_latency [--calls 1000] [--containers 100] [--pods 1]
                                [--endpoint unix:///run/x.sock [--daemon-pid PID]]

Without --endpoint it starts a throw-away crisp daemon on temporary paths (log level info, as
in production) and a registry on loopback, pulls busybox, runs a host-network pod with one
running container, and measures Version, ImageStatus, ListImages, PodSandboxStatus,
ContainerStatus and ListContainers; then it creates more containers (created, not started:
cheap) and more pods, and measures the lists again. With --endpoint it measures any CRI
runtime the same way (speaking CRI only), e.g. containerd for comparison. Prints numbers;
never judges them; with the daemon's pid it also prints the daemon's CPU time per call.
Everything it made is removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc

from criapi import api_pb2 as pb
from criapi import api_pb2_grpc as pb_grpc
from critest import images
from critest.registry import Registry

RPC_TIMEOUT = 60


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid`, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Measure:
    """Times calls; with the daemon's pid also its CPU time per call, which a loaded
    machine disturbs far less than wall-clock latency."""

    def __init__(self, calls: int, daemon_pid: int) -> None:
        self.calls = calls
        self._daemon_pid = daemon_pid

    def __call__(self, label: str, call: Callable[[], object], calls: int = 0) -> None:
        calls = calls or self.calls
        for _ in range(min(50, calls)):  # warm up: connection, caches, the first-call paths
            call()
        samples = []
        cpu_before = _cpu_seconds(self._daemon_pid) if self._daemon_pid else 0.0
        for _ in range(calls):
            started = time.perf_counter()
            call()
            samples.append(time.perf_counter() - started)
        ordered = sorted(samples)

        def at(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

        line = (
            f"  {label:30} p50 {at(0.5):7.3f}  p90 {at(0.9):7.3f}  p99 {at(0.99):7.3f}  "
            f"(ms, n={calls})"
        )
        if self._daemon_pid:
            cpu = _cpu_seconds(self._daemon_pid) - cpu_before
            line += f"  daemon CPU {cpu / calls * 1e6:6.0f} us/call"
        print(line, flush=True)


class Workload:
    """The pods and containers the benchmark made, removed again by `cleanup`."""

    def __init__(
        self, runtime: pb_grpc.RuntimeServiceStub, image: pb_grpc.ImageServiceStub, ref: str
    ) -> None:
        self.runtime = runtime
        self.image = image
        self.ref = ref
        self.run = f"rpcbench-{os.getpid()}"
        self.pods: list[str] = []
        self.containers: list[str] = []
        self._log_dir = tempfile.mkdtemp(prefix="rpcb", dir="/tmp")

    def run_pod(self) -> str:
        index = len(self.pods)
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(
                name=f"pod-{index}", uid=f"{self.run}-{index}", namespace=self.run
            ),
            log_directory=f"{self._log_dir}/pod-{index}",
            linux=pb.LinuxPodSandboxConfig(
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.NODE)
                )
            ),
        )
        request = pb.RunPodSandboxRequest(config=config)
        pod_id: str = self.runtime.RunPodSandbox(request, timeout=RPC_TIMEOUT).pod_sandbox_id
        self.pods.append(pod_id)
        return pod_id

    def create(self, pod_id: str) -> str:
        """A container in the first pod, which holds them all."""
        name = f"c{len(self.containers)}"
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name),
            image=pb.ImageSpec(image=self.ref),
            command=["sleep", "100000"],
            labels={"bench": self.run},
            log_path=f"{name}.log",
        )
        sandbox = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name="pod-0", uid=f"{self.run}-0", namespace=self.run)
        )
        request = pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=config, sandbox_config=sandbox
        )
        container_id: str = self.runtime.CreateContainer(request, timeout=RPC_TIMEOUT).container_id
        self.containers.append(container_id)
        return container_id

    def cleanup(self) -> None:
        for container_id in self.containers:
            with contextlib.suppress(grpc.RpcError):
                self.runtime.RemoveContainer(
                    pb.RemoveContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT
                )
        for pod_id in self.pods:
            with contextlib.suppress(grpc.RpcError):
                self.runtime.StopPodSandbox(
                    pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT
                )
                self.runtime.RemovePodSandbox(
                    pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT
                )
        shutil.rmtree(self._log_dir, ignore_errors=True)


def measure(work: Workload, timed: Measure, containers: int, pods: int) -> None:
    rt, img = work.runtime, work.image
    spec = pb.ImageSpec(image=work.ref)
    image_id = img.ImageStatus(pb.ImageStatusRequest(image=spec), timeout=RPC_TIMEOUT).image.id
    pod_id = work.run_pod()
    running = work.create(pod_id)
    rt.StartContainer(pb.StartContainerRequest(container_id=running), timeout=RPC_TIMEOUT)
    created = work.create(pod_id)
    list_calls = max(50, timed.calls // 5)  # calls whose answer grows with the objects

    print("one pod, one running and one created container:")
    timed("Version", lambda: rt.Version(pb.VersionRequest()))
    by_tag = pb.ImageStatusRequest(image=spec)
    timed("ImageStatus (by tag)", lambda: img.ImageStatus(by_tag))
    by_id = pb.ImageStatusRequest(image=pb.ImageSpec(image=image_id))
    timed("ImageStatus (by id)", lambda: img.ImageStatus(by_id))
    timed("ListImages", lambda: img.ListImages(pb.ListImagesRequest()))
    pod_status = pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id)
    timed("PodSandboxStatus", lambda: rt.PodSandboxStatus(pod_status))
    running_status = pb.ContainerStatusRequest(container_id=running)
    timed("ContainerStatus (running)", lambda: rt.ContainerStatus(running_status))
    created_status = pb.ContainerStatusRequest(container_id=created)
    timed("ContainerStatus (created)", lambda: rt.ContainerStatus(created_status))
    list_all = pb.ListContainersRequest()
    timed("ListContainers (2)", lambda: rt.ListContainers(list_all))
    list_pods = pb.ListPodSandboxRequest()
    timed("ListPodSandbox (1)", lambda: rt.ListPodSandbox(list_pods))

    if containers > 2:
        for _ in range(containers - 2):
            work.create(pod_id)
        print(f"{containers} containers in the pod (1 running):")
        timed(f"ListContainers ({containers})", lambda: rt.ListContainers(list_all), list_calls)
        running_only = pb.ListContainersRequest(
            filter=pb.ContainerFilter(state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING))
        )
        timed("ListContainers (running only)", lambda: rt.ListContainers(running_only))
        timed("ContainerStatus (running)", lambda: rt.ContainerStatus(running_status))
        timed("PodSandboxStatus", lambda: rt.PodSandboxStatus(pod_status), list_calls)
    if pods > 1:
        for _ in range(pods - 1):
            work.run_pod()
        print(f"{pods} pods:")
        timed(f"ListPodSandbox ({pods})", lambda: rt.ListPodSandbox(list_pods), list_calls)


@contextlib.contextmanager
def _crisp_daemon() -> Iterator[tuple[grpc.Channel, int]]:
    # Imported here: with --endpoint the benchmark needs nothing of crisp's own.
    from runtime.cgroups import find_mounts
    from runtime.namespaces import mounts_under
    from tests.crisp_daemon import DaemonPaths, start_daemon
    from tests.runtime.processes import remove_cgroup_dirs

    base = Path(tempfile.mkdtemp(prefix="rpcl", dir="/tmp"))  # short: monitor socket paths
    paths = DaemonPaths(base)
    daemon = start_daemon(paths, ["--log-level", "info"])
    print(f"crisp daemon pid {daemon.process.pid}", flush=True)
    try:
        yield daemon.channel, daemon.process.pid
    finally:
        daemon.stop(signal.SIGTERM)
        for mount in sorted(mounts_under(base), reverse=True):
            os.system(f"umount -l {mount!r}")
        mounts = find_mounts()
        parent = paths.cgroup_parent.lstrip("/")
        for root in {*mounts.v1.values(), *([mounts.unified] if mounts.unified else [])}:
            remove_cgroup_dirs(Path(root) / parent)
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000, help="calls per small RPC")
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--pods", type=int, default=1)
    parser.add_argument("--endpoint", help="a running CRI endpoint (default: a temporary crisp)")
    parser.add_argument("--daemon-pid", type=int, default=0, help="with --endpoint: its CPU")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.endpoint:
            channel = stack.enter_context(grpc.insecure_channel(args.endpoint))
            daemon_pid = args.daemon_pid
        else:
            channel, daemon_pid = stack.enter_context(_crisp_daemon())
        registry = stack.enter_context(Registry())
        images.Pusher(registry.host).push_image("bench/busybox", images.busybox_image(), "v1")
        ref = f"{registry.host}/bench/busybox:v1"
        image = pb_grpc.ImageServiceStub(channel)
        image.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=RPC_TIMEOUT)
        work = Workload(pb_grpc.RuntimeServiceStub(channel), image, ref)
        stack.callback(
            lambda: image.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)))
        )
        stack.callback(work.cleanup)
        measure(work, Measure(args.calls, daemon_pid), args.containers, args.pods)
    return 0


if __name__ == "__main__":
    sys.exit(main())
