"""The pod sandbox service the gRPC layer calls: one method per CRI pod verb."""

from __future__ import annotations

from cni.network import NetworkManager
from runtime.zygote import Zygote
from sandbox import pod_cgroups, pod_list, pod_reconcile, pod_remove, pod_run, pod_status, pod_stop
from sandbox.node import Node
from sandbox.pod import PodConfig
from sandbox.pod_context import KeyedLocks, PinRoot, PodContext, PodSettings
from sandbox.pod_list import ListedPod, PodFilter
from sandbox.pod_status import PodStatus
from sandbox.pod_store import PodStore, RecordStore


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
            handlers=[h.name for h in node.handlers],
            default_handler=node.default_handler,
            settings=settings,
            locks=KeyedLocks(),
            pin_root=PinRoot(settings.pods_dir),
            cgroups=pod_cgroups.managers(),
        )

    def reconcile(self) -> None:
        """Repair what a crash or restart left; call once, before serving."""
        pod_reconcile.reconcile(self._ctx)
        self._ctx.pin_root.release_if_empty()  # left mounted by a daemon that was killed

    def run(self, config: PodConfig, runtime_handler: str = "") -> str:
        return pod_run.run(self._ctx, config, runtime_handler)

    def stop(self, pod_id: str) -> None:
        pod_stop.stop(self._ctx, pod_id)

    def remove(self, pod_id: str) -> None:
        pod_remove.remove(self._ctx, pod_id)

    def status(self, pod_id: str, verbose: bool = False) -> PodStatus:
        return pod_status.status(self._ctx, pod_id, verbose)

    def list(self, wanted: PodFilter) -> list[ListedPod]:
        return pod_list.list_pods(self._ctx, wanted)

    def close(self) -> None:
        """Release the pin root if no pod is left; running pods keep everything."""
        self._ctx.pin_root.release_if_empty()
