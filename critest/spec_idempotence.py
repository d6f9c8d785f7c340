"""Stop and Remove are idempotent (upstream idempotence.go, after the CRI's comments on
StopPodSandbox, RemovePodSandbox, StopContainer, RemoveContainer and RemoveImage)."""

from __future__ import annotations

import uuid

from criapi import api_pb2 as pb
from critest.case import case
from critest.fixture import RPC_TIMEOUT, Fixture

AREA = "idempotence"
MISSING_IMAGE = "0" * 64


def _unknown_id() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


@case(
    "StopPodSandbox of an unknown pod",
    area=AREA,
    spec="StopPodSandbox should not return an error if not found",
)
def stop_pod_missing(f: Fixture) -> None:
    f.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=_unknown_id()), timeout=RPC_TIMEOUT)


@case(
    "StopPodSandbox twice",
    area=AREA,
    spec="StopPodSandbox should not return an error if already stopped",
)
def stop_pod_twice(f: Fixture) -> None:
    pod_id = f.run_pod()
    for _ in range(2):
        f.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT)


@case(
    "RemovePodSandbox of an unknown pod",
    area=AREA,
    spec="RemovePodSandbox should not return an error if not found",
)
def remove_pod_missing(f: Fixture) -> None:
    f.rt.RemovePodSandbox(
        pb.RemovePodSandboxRequest(pod_sandbox_id=_unknown_id()), timeout=RPC_TIMEOUT
    )


@case(
    "RemovePodSandbox twice",
    area=AREA,
    spec="RemovePodSandbox should not return an error if not found",
)
def remove_pod_twice(f: Fixture) -> None:
    pod_id = f.run_pod()
    f.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT)
    for _ in range(2):
        f.rt.RemovePodSandbox(
            pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT
        )


@case(
    "StopContainer of an unknown container",
    area=AREA,
    spec="StopContainer should not return an error if not found",
)
def stop_container_missing(f: Fixture) -> None:
    f.rt.StopContainer(
        pb.StopContainerRequest(container_id=_unknown_id(), timeout=0), timeout=RPC_TIMEOUT
    )


@case(
    "StopContainer twice, RemoveContainer twice",
    area=AREA,
    spec="StopContainer should not return an error if already stopped",
)
def stop_remove_container_twice(f: Fixture) -> None:
    _, container_id = f.pod_with_container()
    for _ in range(2):
        f.stop(container_id)
    for _ in range(2):
        f.rt.RemoveContainer(
            pb.RemoveContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT
        )


@case(
    "RemoveContainer of an unknown container",
    area=AREA,
    spec="RemoveContainer should not return an error if not found",
)
def remove_container_missing(f: Fixture) -> None:
    f.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=_unknown_id()), timeout=RPC_TIMEOUT)


@case(
    "RemoveImage of an unknown image, twice",
    area=AREA,
    spec="RemoveImage should not return an error if not found",
)
def remove_image_missing(f: Fixture) -> None:
    for _ in range(2):
        f.remove_image(MISSING_IMAGE)
