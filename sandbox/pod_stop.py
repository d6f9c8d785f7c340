"""StopPodSandbox: stop the pause process, leave the network, drop the shared /dev/shm.
The namespaces and pod files stay until RemovePodSandbox. Idempotent."""

from __future__ import annotations

import copy

from runtime import namespaces, pause
from sandbox import pod_cgroups, pod_network
from sandbox.errors import DeadlineExceeded
from sandbox.pod import NOTREADY, PodSandbox
from sandbox.pod_context import PodContext


def stop(ctx: PodContext, pod_id: str) -> None:
    found = ctx.store.find(pod_id)
    if found is None:
        return  # kubelet stops sandboxes it believes exist; a gone one is stopped enough
    with ctx.locks.hold(found.id):
        current = ctx.store.find(found.id)
        if current is None:
            return
        pod = copy.deepcopy(current)
        try:
            halt(ctx, pod)
        finally:
            pod.state = NOTREADY
            ctx.store.save(pod)  # whatever was undone stays undone, also after a failure


def halt(ctx: PodContext, pod: PodSandbox) -> None:
    """Undo what makes a pod run; each step is idempotent, so a retry finishes the job."""
    if pod.pause_pid:
        try:
            pause.stop(pod.pause_pid, pod.pause_start_time)
        except TimeoutError as e:
            raise DeadlineExceeded(f"pod sandbox {pod.id}: {e}") from e
        ctx.pauses.forget(pod.pause_pid, pod.pause_start_time)
    pod_cgroups.destroy_infra(ctx.cgroups, pod)
    if pod.network_attached:
        pod_network.detach(ctx.network, pod)
    if pod.shm_path:
        namespaces.unmount(pod.shm_path)
