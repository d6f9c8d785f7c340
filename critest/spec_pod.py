"""Pod sandbox lifecycle and sysctls (upstream pod.go, pod_linux.go)."""

from __future__ import annotations

import time

from criapi import api_pb2 as pb
from critest.case import case, expect, expect_eq
from critest.fixture import RPC_TIMEOUT, Fixture

AREA = "pod"


def _listed(f: Fixture, pod_id: str) -> list[pb.PodSandbox]:
    return list(
        f.rt.ListPodSandbox(
            pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(id=pod_id)), timeout=RPC_TIMEOUT
        ).items
    )


@case(
    "run, status, list, stop and remove a pod",
    area=AREA,
    spec="runtime should support basic operations on PodSandbox",
)
def lifecycle(f: Fixture) -> None:
    config = f.pod_config(labels={"critest": "lifecycle"}, annotations={"a": "b"})
    before = time.time_ns()
    pod_id = f.run_pod(config)
    status = f.pod_status(pod_id)
    expect_eq(status.id, pod_id, "PodSandboxStatus.id")
    expect_eq(status.state, pb.SANDBOX_READY, "state after RunPodSandbox")
    expect_eq(status.metadata, config.metadata, "PodSandboxStatus.metadata")
    expect_eq(dict(status.labels), dict(config.labels), "PodSandboxStatus.labels")
    expect_eq(dict(status.annotations), dict(config.annotations), "PodSandboxStatus.annotations")
    expect(status.created_at >= before - 10**9, "created_at is not a time of this run")
    listed = _listed(f, pod_id)
    expect_eq([p.id for p in listed], [pod_id], "ListPodSandbox(id filter)")
    expect_eq(listed[0].state, pb.SANDBOX_READY, "listed state")
    f.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT)
    expect_eq(f.pod_status(pod_id).state, pb.SANDBOX_NOTREADY, "state after StopPodSandbox")
    f.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT)
    expect_eq(_listed(f, pod_id), [], "ListPodSandbox after RemovePodSandbox")


@case(
    "list pods by state and label filters",
    area=AREA,
    spec="runtime should support basic operations on PodSandbox",
)
def list_filters(f: Fixture) -> None:
    mark = f.unique("mark-")
    ready = f.run_pod(f.pod_config(labels={"critest-mark": mark, "which": "ready"}))
    stopped = f.run_pod(f.pod_config(labels={"critest-mark": mark, "which": "stopped"}))
    f.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=stopped), timeout=RPC_TIMEOUT)

    def ids(pod_filter: pb.PodSandboxFilter) -> set[str]:
        answer = f.rt.ListPodSandbox(
            pb.ListPodSandboxRequest(filter=pod_filter), timeout=RPC_TIMEOUT
        )
        return {p.id for p in answer.items}

    expect_eq(
        ids(pb.PodSandboxFilter(label_selector={"critest-mark": mark})),
        {ready, stopped},
        "label filter",
    )
    expect_eq(
        ids(
            pb.PodSandboxFilter(
                label_selector={"critest-mark": mark},
                state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY),
            )
        ),
        {ready},
        "label + READY filter",
    )
    expect_eq(
        ids(
            pb.PodSandboxFilter(
                label_selector={"critest-mark": mark},
                state=pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY),
            )
        ),
        {stopped},
        "label + NOTREADY filter",
    )
    expect_eq(
        ids(pb.PodSandboxFilter(label_selector={"critest-mark": mark, "which": "stopped"})),
        {stopped},
        "two-label filter",
    )


@case(
    "pod has an IP on the pod network",
    area=AREA,
    spec="runtime should support basic operations on PodSandbox",
)
def pod_ip(f: Fixture) -> None:
    status = f.pod_status(f.run_pod())
    expect(status.network.ip, "PodSandboxStatus.network.ip is empty for a pod on the pod network")


def _sysctl_case(f: Fixture, sysctls: dict[str, str], path: str, value: str) -> None:
    config = f.pod_config()
    config.linux.sysctls.update(sysctls)
    pod_id = f.run_pod(config)
    container_id = f.run_container(pod_id, config)
    expect_eq(f.exec_ok(container_id, ["cat", path]).strip(), value, path)


@case("safe sysctl kernel.shm_rmid_forced", area=AREA, spec="should support safe sysctls")
def safe_sysctls(f: Fixture) -> None:
    _sysctl_case(f, {"kernel.shm_rmid_forced": "1"}, "/proc/sys/kernel/shm_rmid_forced", "1")


@case("unsafe sysctl fs.mqueue.msg_max", area=AREA, spec="should support unsafe sysctls")
def unsafe_sysctls(f: Fixture) -> None:
    _sysctl_case(f, {"fs.mqueue.msg_max": "100"}, "/proc/sys/fs/mqueue/msg_max", "100")


@case(
    "network sysctl net.ipv4.ip_unprivileged_port_start",
    area=AREA,
    spec="should support safe sysctls",
)
def net_sysctls(f: Fixture) -> None:
    _sysctl_case(
        f,
        {"net.ipv4.ip_unprivileged_port_start": "1000"},
        "/proc/sys/net/ipv4/ip_unprivileged_port_start",
        "1000",
    )


@case(
    "stopping a pod stops its containers",
    area=AREA,
    spec="runtime should support stopping PodSandbox [Conformance]",
)
def stop_stops_containers(f: Fixture) -> None:
    pod_id, container_id = f.pod_with_container()
    f.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT)
    expect_eq(f.status(container_id).state, pb.CONTAINER_EXITED, "container state after pod stop")


@case(
    "removing a ready pod removes its running containers",
    area=AREA,
    spec="runtime should support removing PodSandbox [Conformance]",
)
def remove_ready_pod(f: Fixture) -> None:
    pod_id, container_id = f.pod_with_container()
    f.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT)
    expect_eq(_listed(f, pod_id), [], "ListPodSandbox after removing a ready pod")
    containers = f.rt.ListContainers(
        pb.ListContainersRequest(filter=pb.ContainerFilter(id=container_id)), timeout=RPC_TIMEOUT
    )
    expect_eq(list(containers.containers), [], "containers left of the removed pod")
