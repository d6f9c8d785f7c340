"""The container service the gRPC layer calls: one method per CRI container verb."""

from __future__ import annotations

import builtins
import functools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

from runtime.cgroups import CgroupManager
from runtime.handler import ContainerRuntime
from sandbox import (
    container_create,
    container_exec,
    container_list,
    container_reconcile,
    container_remove,
    container_start,
    container_stats,
    container_status,
    container_stop,
    container_stream,
    container_update,
)
from sandbox.container_config import ContainerRequest, Resources
from sandbox.container_context import ContainerContext, ContainerSettings, Images, Pods
from sandbox.container_events import ContainerEvent, EventHub
from sandbox.container_exec import ExecResult
from sandbox.container_list import ContainerFilter, ListedContainer
from sandbox.container_record import RUNNING
from sandbox.container_stats import ContainerUsage, PodUsage, StatsFilter
from sandbox.container_status import ContainerStatus
from sandbox.container_store import ContainerStore
from sandbox.errors import FailedPrecondition
from sandbox.pod_context import KeyedLocks
from sandbox.pod_list import PodFilter
from sandbox.records import RecordStore

_CACHED_CGROUPS = 4096


class ContainerService:
    def __init__(
        self,
        records: RecordStore,
        runtimes: Mapping[str, ContainerRuntime],
        default_handler: str,
        images: Images,
        pods: Pods,
        settings: ContainerSettings,
        cgroups: Callable[[str], CgroupManager],
    ) -> None:
        self._ctx = ContainerContext(
            store=ContainerStore(records),
            runtimes=runtimes,
            default_handler=default_handler,
            images=images,
            pods=pods,
            settings=settings,
            locks=KeyedLocks(),
            events=EventHub(),
            # Managers are plain path holders, costly to build on v1: one per container.
            cgroups=functools.lru_cache(maxsize=_CACHED_CGROUPS)(cgroups),
        )
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._collector: threading.Thread | None = None

    def reconcile(self) -> None:
        """Repair what a crash or restart left and start watching for exits; call once,
        before serving."""
        settings = self._ctx.settings
        settings.containers_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        container_reconcile.reconcile(self._ctx)
        container_reconcile.remove_unrecorded_bundles(self._ctx)
        container_reconcile.notice_exits(self._ctx)
        self._watcher = threading.Thread(
            target=container_reconcile.watch_exits,
            args=(self._ctx, self._stop),
            name="container-exits",
            daemon=True,
        )
        self._watcher.start()
        self._collector = threading.Thread(
            target=container_remove.collect_removed,
            args=(self._ctx,),
            name="container-collector",
            daemon=True,
        )
        self._collector.start()

    def layers_in_use(self) -> set[str]:
        """Chain IDs of the layers containers' overlays use (kept by image GC)."""
        return {layer for c in self._ctx.store.all(removing=True) for layer in c.layers}

    @staticmethod
    def recorded_layers(records: RecordStore) -> set[str]:
        """The same, from the records alone: for image recovery at start-up, which runs
        before the container service exists."""
        return {layer for c in ContainerStore(records).all(removing=True) for layer in c.layers}

    def create(self, pod_id: str, request: ContainerRequest) -> str:
        return container_create.create(self._ctx, pod_id, request)

    def start(self, container_id: str) -> None:
        container_start.start(self._ctx, container_id)

    def stop(self, container_id: str, timeout: int) -> None:
        container_stop.stop(self._ctx, container_id, timeout)

    def remove(self, container_id: str) -> None:
        container_remove.remove(self._ctx, container_id)

    def status(self, container_id: str, verbose: bool = False) -> ContainerStatus:
        return container_status.status(self._ctx, container_id, verbose)

    def require_running(self, container_id: str) -> None:
        """Refuse a streaming session up front, before a URL is handed out."""
        current = container_status.status(self._ctx, container_id, False)
        if current.observed.state != RUNNING:
            raise FailedPrecondition(
                f"container {current.container.id} is not running ({current.observed.state})"
            )

    def pod_statuses(self, pod_id: str) -> builtins.list[ContainerStatus]:
        return container_status.pod_statuses(self._ctx, pod_id)

    def list(self, wanted: ContainerFilter) -> builtins.list[ListedContainer]:
        return container_list.list_containers(self._ctx, wanted)

    def exec_sync(self, container_id: str, command: builtins.list[str], timeout: int) -> ExecResult:
        return container_exec.exec_sync(self._ctx, container_id, command, timeout)

    def exec_stream(
        self, container_id: str, command: Sequence[str], io: container_stream.StreamIO
    ) -> int:
        """An interactive exec for the streaming server; returns the exit code."""
        return container_stream.exec_stream(self._ctx, container_id, command, io)

    def attach_stream(self, container_id: str, io: container_stream.StreamIO) -> None:
        """Attach the streaming server's session to the container's own stdio."""
        container_stream.attach_stream(self._ctx, container_id, io)

    def update_resources(self, container_id: str, resources: Resources) -> None:
        container_update.update_resources(self._ctx, container_id, resources)

    def reopen_log(self, container_id: str) -> None:
        container_update.reopen_log(self._ctx, container_id)

    def stats(self, container_id: str) -> ContainerUsage:
        return container_stats.container_stats(self._ctx, container_id)

    def list_stats(self, wanted: StatsFilter) -> builtins.list[ContainerUsage]:
        return container_stats.list_container_stats(self._ctx, wanted)

    def pod_stats(self, pod_id: str) -> PodUsage:
        return container_stats.pod_stats(self._ctx, pod_id)

    def list_pod_stats(self, wanted: PodFilter) -> builtins.list[PodUsage]:
        return container_stats.list_pod_stats(self._ctx, wanted)

    def events(self, active: threading.Event) -> Iterator[ContainerEvent]:
        return self._ctx.events.subscribe(active)

    @property
    def dropped_events(self) -> int:
        return self._ctx.events.dropped

    def stop_pod(self, pod_id: str) -> None:
        """Hook for StopPodSandbox, before the pod itself stops: its containers killed."""
        container_remove.stop_pod_containers(self._ctx, pod_id)

    def remove_pod(self, pod_id: str) -> None:
        """Hook for RemovePodSandbox, before the pod itself goes: its containers removed."""
        container_remove.remove_pod_containers(self._ctx, pod_id)

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        self._ctx.creates.close()
        if self._collector is not None:
            self._ctx.removed.put(None)  # after what is queued: all of it is taken apart
            self._collector.join()
            self._collector = None
        for runtime in self._ctx.runtimes.values():
            runtime.close()
