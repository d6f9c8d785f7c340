"""Container events, pod stats and metric descriptors: CRI calls kubelet relies on that
upstream's suite does not check."""

from __future__ import annotations

import threading

import grpc

from criapi import api_pb2 as pb
from critest.case import case, expect, expect_eq
from critest.fixture import RPC_TIMEOUT, Fixture, describe

AREA = "events-stats"


@case("GetContainerEvents streams a container's lifecycle", area=AREA, spec="")
def container_events(f: Fixture) -> None:
    stream = f.rt.GetContainerEvents(pb.GetEventsRequest())
    seen: list[pb.ContainerEventResponse] = []
    failure: list[grpc.RpcError] = []

    def read() -> None:
        try:
            seen.extend(stream)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                failure.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    f.defer("cancel the event stream", stream.cancel)
    pod_config = f.pod_config()
    pod_id = f.run_pod(pod_config)
    container_id = f.run_container(pod_id, pod_config)
    f.stop(container_id)
    f.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT)
    wanted = [
        pb.CONTAINER_CREATED_EVENT,
        pb.CONTAINER_STARTED_EVENT,
        pb.CONTAINER_STOPPED_EVENT,
        pb.CONTAINER_DELETED_EVENT,
    ]

    def kinds() -> list[pb.ContainerEventType.ValueType] | None:
        expect(
            not failure, "GetContainerEvents failed: " + (describe(failure[0]) if failure else "")
        )
        got = [e.container_event_type for e in list(seen) if e.container_id == container_id]
        return got if len(got) >= len(wanted) else None

    got = f.wait_for(kinds, 30, "created, started, stopped and deleted events")
    expect_eq(got[: len(wanted)], wanted, "event types in order")
    first = next(e for e in seen if e.container_id == container_id)
    expect_eq(first.pod_sandbox_status.id, pod_id, "pod_sandbox_status.id of the event")
    expect(first.created_at > 0, "event created_at unset")


@case("pod sandbox stats", area=AREA, spec="")
def pod_stats(f: Fixture) -> None:
    pod_id, container_id = f.pod_with_container()
    stats = f.rt.PodSandboxStats(
        pb.PodSandboxStatsRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT
    ).stats
    expect_eq(stats.attributes.id, pod_id, "PodSandboxStats.attributes.id")
    expect(stats.linux.cpu.timestamp > 0, "pod cpu stats missing")
    expect(stats.linux.memory.timestamp > 0, "pod memory stats missing")
    expect(
        container_id in {c.attributes.id for c in stats.linux.containers},
        "pod stats lack the container",
    )
    listed = f.rt.ListPodSandboxStats(
        pb.ListPodSandboxStatsRequest(filter=pb.PodSandboxStatsFilter(id=pod_id)),
        timeout=RPC_TIMEOUT,
    )
    expect_eq([s.attributes.id for s in listed.stats], [pod_id], "ListPodSandboxStats(id filter)")


@case("metric descriptors", area=AREA, spec="")
def metric_descriptors(f: Fixture) -> None:
    answer = f.rt.ListMetricDescriptors(pb.ListMetricDescriptorsRequest(), timeout=RPC_TIMEOUT)
    expect(answer.descriptors, "ListMetricDescriptors returned none")
    for descriptor in answer.descriptors:
        expect(
            descriptor.name and descriptor.help, f"descriptor without name or help: {descriptor}"
        )
    names = {d.name for d in answer.descriptors}
    pod_id, _ = f.pod_with_container()
    metrics = f.rt.ListPodSandboxMetrics(pb.ListPodSandboxMetricsRequest(), timeout=RPC_TIMEOUT)
    ours = [m for m in metrics.pod_metrics if m.pod_sandbox_id == pod_id]
    expect_eq(len(ours), 1, "ListPodSandboxMetrics entries for the pod")
    for container in ours[0].container_metrics:
        for metric in container.metrics:
            expect(metric.name in names, f"metric {metric.name} has no descriptor")
