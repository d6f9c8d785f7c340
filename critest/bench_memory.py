"""The memory side of ``python -m critest benchmark``: what a runtime costs at idle and per pod.

The runtime's processes are the ones named: ``--daemon-pid`` (each with all its descendants
at the time of sampling) and every process in a ``--memory-cgroup`` (and the cgroups below
it). Runtimes start per-pod helpers that leave the daemon's process tree (containerd's
shims, CRI-O's conmon, crisp's monitors all daemonize), so the benchmark also finds them
through CRI itself: the parent of each container's first process (its shim or monitor) and
each pod's sandbox process (pause), from the ``pid`` of the verbose ContainerStatus and
PodSandboxStatus info, as containerd, CRI-O and crisp report it. The containers' own
processes are the workload and never count.

Per-pod overhead = (growth of the runtime's processes + the pods' helper processes) / pods,
in PSS (what the processes cost together, shared pages divided among their users) and in
RSS (shared pages counted in every process: an upper bound).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import grpc

from criapi import api_pb2 as pb
from critest.client import Client
from critest.fixture import RPC_TIMEOUT
from critest.procmem import Memory, cgroup_processes, parent_of, total, with_descendants

CGROUP_ROOT = Path("/sys/fs/cgroup")
_SETTLE_SECONDS = 1.0  # after the last container starts, before sampling


@dataclass(frozen=True)
class RuntimeProcesses:
    """Which processes are the runtime: given pids with their descendants, and cgroups."""

    daemon_pids: tuple[int, ...] = ()
    cgroups: tuple[Path, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.daemon_pids or self.cgroups)

    def pids(self) -> set[int]:
        found = with_descendants(self.daemon_pids)
        for cgroup in self.cgroups:
            found |= cgroup_processes(cgroup)
        return found

    def describe(self) -> str:
        parts = []
        if self.daemon_pids:
            listed = ", ".join(str(pid) for pid in self.daemon_pids)
            parts.append(f"pid {listed} and descendants")
        parts.extend(f"cgroup {cgroup}" for cgroup in self.cgroups)
        return "; ".join(parts)


def parse_pids(values: Iterable[str]) -> tuple[int, ...]:
    """``--daemon-pid`` values: repeated, and each a comma-separated list."""
    return tuple(int(part) for value in values for part in value.split(",") if part.strip())


def cgroup_path(value: str) -> Path:
    """A cgroup directory: absolute, or relative to /sys/fs/cgroup."""
    path = Path(value)
    return path if path.is_absolute() else CGROUP_ROOT / path


@dataclass(frozen=True)
class Sample:
    processes: int
    rss_kib: int
    pss_kib: int

    @classmethod
    def of(cls, pids: set[int]) -> Sample:
        memory: Memory = total(pids)
        return cls(len(pids), memory.rss_kib, memory.pss_kib)


@dataclass(frozen=True)
class MemoryReport:
    pods: int
    runtime: str  # which processes were counted as the runtime
    idle: Sample  # the runtime's processes before the pods
    loaded: Sample  # the runtime's processes with the pods running
    helpers: Sample  # the pods' own helper processes: shims or monitors, and pause
    shims: int
    sandboxes: int

    @property
    def per_pod_rss_kib(self) -> float:
        return (self.loaded.rss_kib - self.idle.rss_kib + self.helpers.rss_kib) / self.pods

    @property
    def per_pod_pss_kib(self) -> float:
        return (self.loaded.pss_kib - self.idle.pss_kib + self.helpers.pss_kib) / self.pods

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["per_pod"] = {
            "rss_kib": round(self.per_pod_rss_kib, 1),
            "pss_kib": round(self.per_pod_pss_kib, 1),
        }
        return document


def verbose_pid(info: Mapping[str, str]) -> int:
    """The ``pid`` of verbose status info, 0 where the runtime gives none."""
    try:
        return int(json.loads(info["info"])["pid"])
    except (KeyError, ValueError, TypeError):
        return 0


PodConfig = Callable[[], pb.PodSandboxConfig]


@contextlib.contextmanager
def _running_pods(
    client: Client, pods: int, image: str, pod_config: PodConfig
) -> Iterator[tuple[list[str], list[str]]]:
    """`pods` pods, each with one running container of `image`; all removed afterwards.
    Yields (pod ids, container ids)."""
    rt = client.runtime
    pod_ids: list[str] = []
    container_ids: list[str] = []
    try:
        for index in range(pods):
            config = pod_config()
            run = pb.RunPodSandboxRequest(config=config)
            pod_id = rt.RunPodSandbox(run, timeout=RPC_TIMEOUT).pod_sandbox_id
            pod_ids.append(pod_id)
            container = pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name=f"memory-{index}", attempt=1),
                image=pb.ImageSpec(image=image),
            )
            create = pb.CreateContainerRequest(
                pod_sandbox_id=pod_id, config=container, sandbox_config=config
            )
            container_id = rt.CreateContainer(create, timeout=RPC_TIMEOUT).container_id
            container_ids.append(container_id)
            start = pb.StartContainerRequest(container_id=container_id)
            rt.StartContainer(start, timeout=RPC_TIMEOUT)
        yield pod_ids, container_ids
    finally:
        for pod_id in pod_ids:
            with contextlib.suppress(grpc.RpcError):
                stop = pb.StopPodSandboxRequest(pod_sandbox_id=pod_id)
                rt.StopPodSandbox(stop, timeout=RPC_TIMEOUT)
                remove = pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id)
                rt.RemovePodSandbox(remove, timeout=RPC_TIMEOUT)


def measure(
    client: Client,
    runtime: RuntimeProcesses,
    pods: int,
    image: str,
    pod_config: PodConfig,
) -> MemoryReport:
    """Sample the runtime idle, then with `pods` pods of one running container each."""
    idle = Sample.of(runtime.pids())
    rt = client.runtime
    with _running_pods(client, pods, image, pod_config) as (pod_ids, container_ids):
        time.sleep(_SETTLE_SECONDS)
        container_pids = [
            verbose_pid(
                rt.ContainerStatus(
                    pb.ContainerStatusRequest(container_id=container_id, verbose=True),
                    timeout=RPC_TIMEOUT,
                ).info
            )
            for container_id in container_ids
        ]
        sandbox_pids = {
            verbose_pid(
                rt.PodSandboxStatus(
                    pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True),
                    timeout=RPC_TIMEOUT,
                ).info
            )
            for pod_id in pod_ids
        }
        workload = with_descendants(pid for pid in container_pids if pid)
        # A shim or monitor may stay a descendant of the daemon (crisp's monitors are
        # children of its fork server): it counts as a pod helper, not as the daemon.
        shims = {parent_of(pid) or 0 for pid in container_pids if pid}
        shims -= {0, 1} | set(runtime.daemon_pids) | workload
        sandboxes = sandbox_pids - {0} - set(runtime.daemon_pids) - workload - shims
        runtime_pids = runtime.pids() - workload - shims - sandboxes
        loaded = Sample.of(runtime_pids)
        helpers = Sample.of(shims | sandboxes)
    return MemoryReport(
        pods=pods,
        runtime=runtime.describe(),
        idle=idle,
        loaded=loaded,
        helpers=helpers,
        shims=len(shims),
        sandboxes=len(sandboxes),
    )


def print_report(report: MemoryReport, out: TextIO) -> None:
    print(f"\nmemory (runtime: {report.runtime})", file=out)
    print(f"{'':<24} {'processes':>9} {'RSS KiB':>10} {'PSS KiB':>10}", file=out)
    rows: Sequence[tuple[str, Sample]] = (
        ("runtime idle", report.idle),
        (f"runtime, {report.pods} pods", report.loaded),
        (f"pod helpers ({report.shims}+{report.sandboxes})", report.helpers),
    )
    for label, sample in rows:
        print(
            f"{label:<24} {sample.processes:>9} {sample.rss_kib:>10} {sample.pss_kib:>10}",
            file=out,
        )
    print(
        f"{'per pod overhead':<24} {'':>9} {report.per_pod_rss_kib:>10.0f} "
        f"{report.per_pod_pss_kib:>10.0f}",
        file=out,
    )
    print(
        "(pod helpers: shims or monitors + pause processes, found through verbose status)",
        file=out,
    )
