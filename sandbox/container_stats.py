"""ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats: usage from
the cgroups (CPU, memory, pids) and the writable layer (the overlay's upper dir)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runtime.cgroups import CgroupError, Stats
from sandbox import rootfs
from sandbox.container_context import ContainerContext
from sandbox.container_pod import cgroup_parent
from sandbox.container_record import CREATING, Container
from sandbox.container_status import existing
from sandbox.pod import PodSandbox
from sandbox.pod_list import PodFilter


@dataclass(frozen=True)
class Usage:
    timestamp_ns: int
    cpu_usage_ns: int = 0
    cpu_nano_cores: int = 0
    memory_working_set: int = 0
    memory_usage: int = 0
    memory_rss: int = 0
    memory_available: int = 0  # 0 = no limit
    page_faults: int = 0
    major_page_faults: int = 0
    pids: int = 0


@dataclass(frozen=True)
class ContainerUsage:
    container: Container
    usage: Usage
    writable_bytes: int
    writable_inodes: int


@dataclass(frozen=True)
class PodUsage:
    pod: PodSandbox
    usage: Usage
    containers: list[ContainerUsage]


@dataclass(frozen=True)
class StatsFilter:
    id: str = ""
    pod_id: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


def _usage(ctx: ContainerContext, cgroup: str) -> Usage:
    now = time.time_ns()
    try:
        stats = ctx.cgroups(cgroup).stats()
    except (CgroupError, OSError):
        stats = Stats()  # gone (exited and cleaned up) or never made: nothing in use
    previous = ctx.cpu_samples.get(cgroup)
    ctx.cpu_samples[cgroup] = (now, stats.cpu.usage_ns)
    nano_cores = 0
    if previous is not None and now > previous[0] and stats.cpu.usage_ns >= previous[1]:
        nano_cores = (stats.cpu.usage_ns - previous[1]) * 1_000_000_000 // (now - previous[0])
    memory = stats.memory
    available = max(memory.limit - memory.working_set, 0) if memory.limit > 0 else 0
    return Usage(
        timestamp_ns=now,
        cpu_usage_ns=stats.cpu.usage_ns,
        cpu_nano_cores=nano_cores,
        memory_working_set=memory.working_set,
        memory_usage=memory.usage,
        memory_rss=memory.rss,
        memory_available=available,
        page_faults=memory.page_faults,
        major_page_faults=memory.major_page_faults,
        pids=stats.pids.current,
    )


def _container_usage(ctx: ContainerContext, container: Container) -> ContainerUsage:
    written, inodes = rootfs.usage(Path(container.upper))
    return ContainerUsage(container, _usage(ctx, container.cgroup), written, inodes)


def container_stats(ctx: ContainerContext, container_id: str) -> ContainerUsage:
    return _container_usage(ctx, existing(ctx, container_id))


def list_container_stats(ctx: ContainerContext, wanted: StatsFilter) -> list[ContainerUsage]:
    result = []
    for container in ctx.store.all():
        if container.state == CREATING:
            continue
        if wanted.id and not container.id.startswith(wanted.id):
            continue
        if wanted.pod_id and not container.pod_id.startswith(wanted.pod_id):
            continue
        if any(container.labels.get(k) != v for k, v in wanted.labels.items()):
            continue
        result.append(_container_usage(ctx, container))
    return result


def pod_stats(ctx: ContainerContext, pod_id: str) -> PodUsage:
    pod = ctx.pods.status(pod_id).pod
    return _pod_usage(ctx, pod)


def list_pod_stats(ctx: ContainerContext, wanted: PodFilter) -> list[PodUsage]:
    return [_pod_usage(ctx, listed.pod) for listed in ctx.pods.list(wanted)]


def _pod_usage(ctx: ContainerContext, pod: PodSandbox) -> PodUsage:
    containers = [_container_usage(ctx, c) for c in ctx.store.in_pod(pod.id) if c.state != CREATING]
    return PodUsage(pod, _usage(ctx, cgroup_parent(ctx, pod)), containers)
