"""The pod sandbox service the gRPC layer calls: one method per CRI pod verb."""

from __future__ import annotations

import socket
from typing import Protocol

from cni.network import NetworkManager
from runtime.zygote import Zygote
from sandbox import (
    pod_cgroups,
    pod_list,
    pod_portforward,
    pod_reconcile,
    pod_remove,
    pod_run,
    pod_status,
    pod_stop,
    pod_update,
)
from sandbox.errors import FailedPrecondition, NotFound
from sandbox.node import Node
from sandbox.pod import READY, PodConfig, PodSandbox, Resources
from sandbox.pod_context import KeyedLocks, PinRoot, PodContext, PodSettings
from sandbox.pod_list import ListedPod, PodFilter
from sandbox.pod_status import PodStatus
from sandbox.pod_store import PodStore
from sandbox.records import RecordStore


class PodContainers(Protocol):
    def stop_pod(self, pod_id: str) -> None: ...

    def remove_pod(self, pod_id: str) -> None: ...


class PodService:
    def __init__(
        self,
        records: RecordStore,
        zygote: Zygote,
        network: NetworkManager,
        node: Node,
        settings: PodSettings,
    ) -> None:
        self._ctx = PodContext(
            store=PodStore(records),
            zygote=zygote,
            network=network,
            handlers={h.name: h for h in node.handlers},
            default_handler=node.default_handler,
            settings=settings,
            locks=KeyedLocks(),
            pin_root=PinRoot(settings.pods_dir),
            cgroups=pod_cgroups.managers(),
        )

        self._containers: PodContainers | None = None

    def attach_containers(self, containers: PodContainers) -> None:
        """Who stops and removes a pod's containers before the pod itself goes (the
        container service, made after this one since it needs the pods)."""
        self._containers = containers

    def reconcile(self) -> None:
        """Repair what a crash or restart left; call once, before serving."""
        pod_reconcile.reconcile(self._ctx)
        self._ctx.pin_root.release_if_empty()  # left mounted by a daemon that was killed

    def run(self, config: PodConfig, runtime_handler: str = "") -> str:
        return pod_run.run(self._ctx, config, runtime_handler)

    def stop(self, pod_id: str) -> None:
        if self._containers is not None:
            self._containers.stop_pod(pod_id)
        pod_stop.stop(self._ctx, pod_id)

    def remove(self, pod_id: str) -> None:
        if self._containers is not None:
            self._containers.remove_pod(pod_id)
        pod_remove.remove(self._ctx, pod_id)

    def status(self, pod_id: str, verbose: bool = False) -> PodStatus:
        return pod_status.status(self._ctx, pod_id, verbose)

    def update_resources(
        self, pod_id: str, overhead: Resources | None, resources: Resources | None
    ) -> None:
        pod_update.update_resources(self._ctx, pod_id, overhead, resources)

    def list(self, wanted: PodFilter) -> list[ListedPod]:
        return pod_list.list_pods(self._ctx, wanted)

    def require_ready(self, pod_id: str) -> PodSandbox:
        pod = self._ctx.store.find(pod_id)
        if pod is None:
            raise NotFound(f"pod sandbox {pod_id} not found")
        if pod.state != READY:
            raise FailedPrecondition(f"pod sandbox {pod.id} is not ready")
        return pod

    def port_forward(self, pod_id: str, port: int) -> socket.socket:
        """A connection to `port` inside the pod's network namespace."""
        pod = self.require_ready(pod_id)
        return pod_portforward.connect("" if pod.config.host_network else pod.netns_path, port)

    def close(self) -> None:
        """Release the pin root if no pod is left; running pods keep everything."""
        self._ctx.pin_root.release_if_empty()
