"""``python -m critest benchmark`` (or ``python -m critest.bench``): lifecycle latencies of a
CRI runtime, as upstream's pkg/benchmark measures them. Each operation runs N times; the
table gives p50/p90/p99 in milliseconds. Given the runtime's processes (``--daemon-pid``,
``--memory-cgroup``), also its memory at idle and per pod (critest/bench_memory.py).
Numbers only: nothing here passes or fails on time."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO, TypeVar

from criapi import api_pb2 as pb
from critest import bench_memory
from critest.client import Client
from critest.fixture import RPC_TIMEOUT
from critest.registry import Registry
from critest.testimages import build_and_push

T = TypeVar("T")
PERCENTILES = (50, 90, 99)


def percentile(samples: Sequence[float], p: int) -> float:
    """Nearest-rank percentile (the sample at rank ceil(p/100 * n))."""
    ordered = sorted(samples)
    rank = max(1, -(-p * len(ordered) // 100))
    return ordered[rank - 1]


class Timings:
    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)

    def call(
        self,
        operation: str,
        method: Callable[..., T],
        request: object,
        timeout: float = RPC_TIMEOUT,
    ) -> T:
        """``method(request)``, timed under ``operation``."""
        began = time.perf_counter()
        result = method(request, timeout=timeout)
        self.samples[operation].append(time.perf_counter() - began)
        return result

    def table(self) -> list[dict[str, float | int | str]]:
        return [
            {
                "operation": operation,
                "n": len(values),
                **{f"p{p}_ms": round(percentile(values, p) * 1000, 2) for p in PERCENTILES},
            }
            for operation, values in self.samples.items()
        ]


def _pod_config(cgroup_parent: str) -> pb.PodSandboxConfig:
    name = f"bench-{uuid.uuid4().hex[:12]}"
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=name, namespace="critest-bench", attempt=1),
        linux=pb.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent),
    )


def bench_pods(client: Client, timings: Timings, n: int, cgroup_parent: str) -> None:
    rt = client.runtime
    for _ in range(n):
        run = pb.RunPodSandboxRequest(config=_pod_config(cgroup_parent))
        pod_id = timings.call("pod run", rt.RunPodSandbox, run).pod_sandbox_id
        status = pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id)
        timings.call("pod status", rt.PodSandboxStatus, status)
        timings.call("pod stop", rt.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        remove = pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id)
        timings.call("pod remove", rt.RemovePodSandbox, remove)


@contextlib.contextmanager
def _pod(client: Client, cgroup_parent: str) -> Iterator[tuple[str, pb.PodSandboxConfig]]:
    config = _pod_config(cgroup_parent)
    pod_id = client.runtime.RunPodSandbox(
        pb.RunPodSandboxRequest(config=config), timeout=RPC_TIMEOUT
    ).pod_sandbox_id
    try:
        yield pod_id, config
    finally:
        client.runtime.StopPodSandbox(
            pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT
        )
        client.runtime.RemovePodSandbox(
            pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT
        )


def bench_containers(
    client: Client, timings: Timings, n: int, image: str, cgroup_parent: str
) -> None:
    """Containers of one pod, as upstream: the pod's own cost is measured separately. The
    image's command is a shell that exits at once on SIGTERM, as a pause container does."""
    rt = client.runtime
    with _pod(client, cgroup_parent) as (pod_id, pod_config):
        for i in range(n):
            config = pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name=f"bench-{i}", attempt=1),
                image=pb.ImageSpec(image=image),
            )
            create = pb.CreateContainerRequest(
                pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config
            )
            container_id = timings.call("container create", rt.CreateContainer, create).container_id
            timings.call(
                "container start",
                rt.StartContainer,
                pb.StartContainerRequest(container_id=container_id),
            )
            status = pb.ContainerStatusRequest(container_id=container_id)
            timings.call("container status", rt.ContainerStatus, status)
            execute = pb.ExecSyncRequest(container_id=container_id, cmd=["true"], timeout=30)
            timings.call("exec sync", rt.ExecSync, execute)
            stop = pb.StopContainerRequest(container_id=container_id, timeout=10)
            timings.call("container stop", rt.StopContainer, stop)
            remove = pb.RemoveContainerRequest(container_id=container_id)
            timings.call("container remove", rt.RemoveContainer, remove)


def bench_images(client: Client, timings: Timings, n: int, image: str) -> None:
    spec = pb.ImageSpec(image=image)
    for _ in range(n):
        timings.call("image pull", client.image.PullImage, pb.PullImageRequest(image=spec), 300)
        timings.call("image status", client.image.ImageStatus, pb.ImageStatusRequest(image=spec))
        timings.call("image remove", client.image.RemoveImage, pb.RemoveImageRequest(image=spec))


def bench_list(client: Client, timings: Timings, pods: int, n: int, cgroup_parent: str) -> None:
    """ListPodSandbox with ``pods`` pods present."""
    with contextlib.ExitStack() as stack:
        for _ in range(pods):
            stack.enter_context(_pod(client, cgroup_parent))
        for _ in range(n):
            timings.call(
                f"list {pods} pods", client.runtime.ListPodSandbox, pb.ListPodSandboxRequest()
            )


def print_table(rows: Sequence[dict[str, float | int | str]], out: TextIO) -> None:
    print(f"{'operation':<20} {'n':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9}", file=out)
    for row in rows:
        print(
            f"{row['operation']:<20} {row['n']:>5} {row['p50_ms']:>9.2f} {row['p90_ms']:>9.2f} "
            f"{row['p99_ms']:>9.2f}",
            file=out,
        )


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m critest benchmark")
    parser.add_argument("--runtime-endpoint", default="unix:///run/crisp/crisp.sock")
    parser.add_argument("--image-endpoint", default="")
    parser.add_argument("--cgroup-parent", default="")
    parser.add_argument("--registry", action="append", default=[], metavar="HOST:PORT")
    parser.add_argument("-n", "--iterations", type=int, default=20)
    parser.add_argument("--list-pods", type=int, default=0, help="also time listing N pods")
    parser.add_argument("--json", type=Path, help="write the tables as JSON here")
    parser.add_argument(
        "--daemon-pid",
        action="append",
        default=[],
        metavar="PID[,PID...]",
        help="a process of the runtime, counted with its descendants (repeatable)",
    )
    parser.add_argument(
        "--memory-cgroup",
        action="append",
        default=[],
        metavar="PATH",
        help="a cgroup whose processes are the runtime's (absolute, or below /sys/fs/cgroup)",
    )
    parser.add_argument(
        "--memory-pods", type=int, default=10, help="pods running for the memory figures"
    )
    args = parser.parse_args(argv)
    runtime_processes = bench_memory.RuntimeProcesses(
        bench_memory.parse_pids(args.daemon_pid),
        tuple(bench_memory.cgroup_path(value) for value in args.memory_cgroup),
    )
    memory: bench_memory.MemoryReport | None = None
    with contextlib.ExitStack() as stack:
        registry = args.registry[0] if args.registry else stack.enter_context(Registry()).host
        images = build_and_push(registry)
        client = stack.enter_context(Client(args.runtime_endpoint, args.image_endpoint))
        version = client.runtime.Version(pb.VersionRequest(), timeout=RPC_TIMEOUT)
        print(f"runtime: {version.runtime_name} {version.runtime_version}", file=out)
        timings = Timings()
        client.image.PullImage(
            pb.PullImageRequest(image=pb.ImageSpec(image=images.pause.ref)), timeout=300
        )
        bench_pods(client, timings, args.iterations, args.cgroup_parent)
        bench_containers(client, timings, args.iterations, images.pause.ref, args.cgroup_parent)
        bench_images(client, timings, args.iterations, images.pull_tag.ref)
        if args.list_pods:
            bench_list(client, timings, args.list_pods, args.iterations, args.cgroup_parent)
        if runtime_processes:
            memory = bench_memory.measure(
                client,
                runtime_processes,
                args.memory_pods,
                images.pause.ref,
                lambda: _pod_config(args.cgroup_parent),
            )
        client.image.RemoveImage(
            pb.RemoveImageRequest(image=pb.ImageSpec(image=images.pause.ref)), timeout=60
        )
    rows = timings.table()
    print_table(rows, out)
    if memory is not None:
        bench_memory.print_report(memory, out)
    if args.json:
        document = {
            "runtime": f"{version.runtime_name} {version.runtime_version}",
            "operations": rows,
            "memory": None if memory is None else memory.as_json(),
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
