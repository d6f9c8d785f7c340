"""What every container verb works with: the store, the runtimes (one per runtime handler),
the images, the pods (through their read API), the settings from the daemon's config, locks
and events."""

from __future__ import annotations

import queue
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from imagesvc.imageconfig import ImageConfig
from imagesvc.store import ImageRecord
from runtime.cgroups import CgroupManager
from runtime.handler import ContainerRuntime
from sandbox.container_events import EventHub
from sandbox.container_record import Container, Observed
from sandbox.container_store import ContainerStore
from sandbox.errors import FailedPrecondition
from sandbox.pod_context import KeyedLocks
from sandbox.pod_list import ListedPod, PodFilter
from sandbox.pod_status import PodStatus
from sandbox.runtime_creates import RuntimeCreates


class Images(Protocol):
    """The part of imagesvc.manager.ImageManager containers need."""

    def find(self, reference: str) -> ImageRecord | None: ...

    def config_of(self, record: ImageRecord) -> ImageConfig: ...

    def lower_dirs(self, record: ImageRecord) -> list[Path]: ...


class Pods(Protocol):
    """The read API of sandbox.pods.PodService."""

    def status(self, pod_id: str, verbose: bool = False) -> PodStatus: ...

    def list(self, wanted: PodFilter) -> list[ListedPod]: ...


@dataclass(frozen=True)
class ContainerSettings:
    containers_dir: Path  # root_dir/containers: one bundle (with its overlay) per container
    log_dir: Path  # for pods whose config names no log directory
    cgroup_parent: str  # for pods without a cgroup of their own (systemd driver)


@dataclass
class ContainerContext:
    store: ContainerStore
    runtimes: Mapping[str, ContainerRuntime]  # by runtime handler name
    default_handler: str
    images: Images
    pods: Pods
    settings: ContainerSettings
    locks: KeyedLocks
    events: EventHub
    cgroups: Callable[[str], CgroupManager]  # a manager for a cgroup path
    # CreateContainer's runtime half, finishing in workers: wait for it before using one.
    creates: RuntimeCreates = field(default_factory=RuntimeCreates)
    # Removed containers (REMOVING) for the collector thread to take apart; None ends it.
    removed: queue.SimpleQueue[str | None] = field(default_factory=queue.SimpleQueue)
    # Exits never change once recorded: kept so status and list do not reread them.
    exited: dict[str, Observed] = field(default_factory=dict)
    # The last CPU sample (time ns, usage ns) per cgroup: usage_nano_cores is their slope.
    cpu_samples: dict[str, tuple[int, int]] = field(default_factory=dict)

    def runtime_for(self, handler: str) -> ContainerRuntime:
        """The runtime of a runtime handler ("" is the default one)."""
        runtime = self.runtimes.get(handler or self.default_handler)
        if runtime is None:
            raise FailedPrecondition(
                f"runtime handler {handler!r} is not configured "
                f"(known: {', '.join(sorted(self.runtimes))})"
            )
        return runtime

    def runtime_of(self, container: Container) -> ContainerRuntime:
        """The runtime that runs `container`: its pod's runtime handler's."""
        return self.runtime_for(container.runtime_handler)
