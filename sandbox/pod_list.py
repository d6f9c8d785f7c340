"""ListPodSandbox and StreamPodSandboxes: the pods matching a filter, oldest first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sandbox.pod import CREATING, PodSandbox
from sandbox.pod_context import PodContext
from sandbox.pod_status import observed_state


@dataclass(frozen=True)
class PodFilter:
    id: str = ""  # the full id or a prefix of it
    state: str | None = None  # READY or NOTREADY
    labels: Mapping[str, str] = field(default_factory=dict)  # every pair must match


@dataclass(frozen=True)
class ListedPod:
    pod: PodSandbox
    state: str


def matches(pod: PodSandbox, state: str, wanted: PodFilter) -> bool:
    if wanted.id and not pod.id.startswith(wanted.id):
        return False
    if wanted.state is not None and state != wanted.state:
        return False
    return all(pod.config.labels.get(k) == v for k, v in wanted.labels.items())


def list_pods(ctx: PodContext, wanted: PodFilter) -> list[ListedPod]:
    listed = []
    for pod in ctx.store.all():
        if pod.state == CREATING:
            continue  # not a sandbox yet: it appears once RunPodSandbox has answered
        state = observed_state(ctx, pod)
        if matches(pod, state, wanted):
            listed.append(ListedPod(pod, state))
    return listed
