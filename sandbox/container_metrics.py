"""ListMetricDescriptors and ListPodSandboxMetrics: container usage under cAdvisor's metric
names and labels, so kubelet's /metrics/cadvisor keeps its shape when the runtime serves it.

Only counts and byte sizes are offered: CRI metric values are integers, and CPU seconds
would lose their fraction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sandbox.container_stats import ContainerUsage, PodUsage

# cAdvisor's labels of container metrics, in order.
LABEL_KEYS = ("container", "id", "image", "name", "namespace", "pod")


@dataclass(frozen=True)
class Descriptor:
    name: str
    help: str
    kind: str  # "gauge" or "counter"
    value: Callable[[ContainerUsage], int]


DESCRIPTORS = (
    Descriptor(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        "gauge",
        lambda u: u.usage.memory_usage,
    ),
    Descriptor(
        "container_memory_working_set_bytes",
        "Current working set in bytes",
        "gauge",
        lambda u: u.usage.memory_working_set,
    ),
    Descriptor(
        "container_memory_rss", "Size of RSS in bytes", "gauge", lambda u: u.usage.memory_rss
    ),
    Descriptor(
        "container_processes", "Number of processes running inside the container", "gauge",
        lambda u: u.usage.pids,
    ),
    Descriptor(
        "container_fs_usage_bytes",
        "Number of bytes consumed by the container's writable layer",
        "gauge",
        lambda u: u.writable_bytes,
    ),
    Descriptor(
        "container_fs_inodes_total",
        "Number of inodes used by the container's writable layer",
        "gauge",
        lambda u: u.writable_inodes,
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Sample:
    name: str
    kind: str
    labels: tuple[str, ...]  # in LABEL_KEYS order
    value: int
    timestamp_ns: int


def container_samples(pod: PodUsage, item: ContainerUsage) -> list[Sample]:
    c = item.container
    meta = pod.pod.config.metadata
    labels = (c.name, c.cgroup, c.image, c.id, meta.namespace, meta.name)
    return [
        Sample(d.name, d.kind, labels, d.value(item), item.usage.timestamp_ns) for d in DESCRIPTORS
    ]
