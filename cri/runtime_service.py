"""gRPC adapter of runtime.v1.RuntimeService: converts messages and delegates to the domain.

RPCs not overridden here fall through to the generated base class, whose NotImplementedError
the interceptor reports as UNIMPLEMENTED naming the RPC.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator

import grpc

from cri import container_messages, pod_messages
from cri.streaming import AttachRequest, ExecRequest, PortForwardRequest, StreamingServer
from criapi import api_pb2 as pb
from criapi import api_pb2_grpc as pb_grpc
from sandbox.container_events import ContainerEvent
from sandbox.containers import ContainerService
from sandbox.errors import NotFound
from sandbox.node import Node
from sandbox.pod_list import PodFilter
from sandbox.pods import PodService

CRI_VERSION = "0.1.0"  # the kubelet-facing API version field, as every CRI runtime reports it
RUNTIME_NAME = "crisp"
RUNTIME_API_VERSION = "v1"

_CGROUP_DRIVERS = {"systemd": pb.SYSTEMD, "cgroupfs": pb.CGROUPFS}
_STREAM_BATCH = 100  # pod sandboxes per StreamPodSandboxes message


class RuntimeService(pb_grpc.RuntimeServiceServicer):
    def __init__(
        self,
        node: Node,
        runtime_version: str,
        verbose_info: Callable[[], dict[str, object]],
        *,
        pods: PodService,
        containers: ContainerService,
        image_fs: str,
        streaming: StreamingServer,
    ) -> None:
        self._streaming = streaming
        self._node = node
        self._pods = pods
        self._containers = containers
        self._image_fs = image_fs  # the mountpoint stats report for writable layers
        self._runtime_version = runtime_version
        self._verbose_info = verbose_info
        self._container_messages = container_messages.ContainerMessages()
        self._pod_messages = pod_messages.PodMessages()

    def Version(
        self, request: pb.VersionRequest, context: grpc.ServicerContext
    ) -> pb.VersionResponse:
        return pb.VersionResponse(
            version=CRI_VERSION,
            runtime_name=RUNTIME_NAME,
            runtime_version=self._runtime_version,
            runtime_api_version=RUNTIME_API_VERSION,
        )

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusResponse:
        conditions = [
            pb.RuntimeCondition(type=c.type, status=c.status, reason=c.reason, message=c.message)
            for c in self._node.conditions()
        ]
        handlers = []
        for handler in self._node.handlers:
            features = pb.RuntimeHandlerFeatures(
                recursive_read_only_mounts=handler.recursive_read_only_mounts,
                user_namespaces=handler.user_namespaces,
            )
            # kubelet reads the unnamed entry as the default handler's features
            if handler.name == self._node.default_handler:
                handlers.append(pb.RuntimeHandler(name="", features=features))
            handlers.append(pb.RuntimeHandler(name=handler.name, features=features))
        info: dict[str, str] = {}
        if request.verbose:
            info = {key: json.dumps(value) for key, value in self._verbose_info().items()}
        return pb.StatusResponse(
            status=pb.RuntimeStatus(conditions=conditions),
            info=info,
            runtime_handlers=handlers,
            # Container users are resolved by crisp itself, so Strict is honoured.
            features=pb.RuntimeFeatures(supplemental_groups_policy=True),
        )

    def RuntimeConfig(
        self, request: pb.RuntimeConfigRequest, context: grpc.ServicerContext
    ) -> pb.RuntimeConfigResponse:
        driver = _CGROUP_DRIVERS[self._node.cgroup_driver]
        return pb.RuntimeConfigResponse(linux=pb.LinuxRuntimeConfiguration(cgroup_driver=driver))

    def UpdateRuntimeConfig(
        self, request: pb.UpdateRuntimeConfigRequest, context: grpc.ServicerContext
    ) -> pb.UpdateRuntimeConfigResponse:
        self._node.set_pod_cidr(request.runtime_config.network_config.pod_cidr)
        return pb.UpdateRuntimeConfigResponse()

    # --- pod sandboxes ---

    def RunPodSandbox(
        self, request: pb.RunPodSandboxRequest, context: grpc.ServicerContext
    ) -> pb.RunPodSandboxResponse:
        config = pod_messages.pod_config(request.config)
        pod_id = self._pods.run(config, request.runtime_handler)
        return pb.RunPodSandboxResponse(pod_sandbox_id=pod_id)

    def StopPodSandbox(
        self, request: pb.StopPodSandboxRequest, context: grpc.ServicerContext
    ) -> pb.StopPodSandboxResponse:
        self._pods.stop(request.pod_sandbox_id)
        return pb.StopPodSandboxResponse()

    def RemovePodSandbox(
        self, request: pb.RemovePodSandboxRequest, context: grpc.ServicerContext
    ) -> pb.RemovePodSandboxResponse:
        self._pods.remove(request.pod_sandbox_id)
        return pb.RemovePodSandboxResponse()

    def PodSandboxStatus(
        self, request: pb.PodSandboxStatusRequest, context: grpc.ServicerContext
    ) -> pb.PodSandboxStatusResponse:
        # Taken first: kubelet's evented PLEG keeps whichever of this answer and a container
        # event is newer, so the statuses below must be at least as fresh as the timestamp.
        timestamp = time.time_ns()
        status = self._pods.status(request.pod_sandbox_id, request.verbose)
        # Always filled (as CRI-O with pod events on): with evented PLEG kubelet reads the
        # pod's containers from here instead of listing them.
        containers = [
            self._container_messages.container_status(s.container, s.observed)
            for s in self._containers.pod_statuses(status.pod.id)  # the full id, not a prefix
        ]
        return pb.PodSandboxStatusResponse(
            status=self._pod_messages.pod_status(status),
            info=pod_messages.status_info(status),
            containers_statuses=containers,
            timestamp=timestamp,
        )

    def UpdatePodSandboxResources(
        self, request: pb.UpdatePodSandboxResourcesRequest, context: grpc.ServicerContext
    ) -> pb.UpdatePodSandboxResourcesResponse:
        overhead, resources = pod_messages.update_request(request)
        self._pods.update_resources(request.pod_sandbox_id, overhead, resources)
        return pb.UpdatePodSandboxResourcesResponse()

    def ListPodSandbox(
        self, request: pb.ListPodSandboxRequest, context: grpc.ServicerContext
    ) -> pb.ListPodSandboxResponse:
        listed = self._pods.list(pod_messages.pod_filter(request.filter))
        return pb.ListPodSandboxResponse(items=self._pod_messages.pod_sandboxes(listed))

    def StreamPodSandboxes(
        self, request: pb.StreamPodSandboxesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.StreamPodSandboxesResponse]:
        listed = self._pods.list(pod_messages.pod_filter(request.filter))
        items = self._pod_messages.pod_sandboxes(listed)
        for start in range(0, len(items), _STREAM_BATCH):
            yield pb.StreamPodSandboxesResponse(pod_sandboxes=items[start : start + _STREAM_BATCH])

    # --- containers ---

    def CreateContainer(
        self, request: pb.CreateContainerRequest, context: grpc.ServicerContext
    ) -> pb.CreateContainerResponse:
        config = container_messages.container_request(request.config)
        container_id = self._containers.create(request.pod_sandbox_id, config)
        return pb.CreateContainerResponse(container_id=container_id)

    def StartContainer(
        self, request: pb.StartContainerRequest, context: grpc.ServicerContext
    ) -> pb.StartContainerResponse:
        self._containers.start(request.container_id)
        return pb.StartContainerResponse()

    def StopContainer(
        self, request: pb.StopContainerRequest, context: grpc.ServicerContext
    ) -> pb.StopContainerResponse:
        self._containers.stop(request.container_id, int(request.timeout))
        return pb.StopContainerResponse()

    def RemoveContainer(
        self, request: pb.RemoveContainerRequest, context: grpc.ServicerContext
    ) -> pb.RemoveContainerResponse:
        self._containers.remove(request.container_id)
        return pb.RemoveContainerResponse()

    def ContainerStatus(
        self, request: pb.ContainerStatusRequest, context: grpc.ServicerContext
    ) -> pb.ContainerStatusResponse:
        status = self._containers.status(request.container_id, request.verbose)
        return self._container_messages.status_response(status)

    def ListContainers(
        self, request: pb.ListContainersRequest, context: grpc.ServicerContext
    ) -> pb.ListContainersResponse:
        wanted = container_messages.container_filter(
            request.filter, request.filter.HasField("state")
        )
        listed = self._container_messages.containers(self._containers.list(wanted))
        return pb.ListContainersResponse(containers=listed)

    def StreamContainers(
        self, request: pb.StreamContainersRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.StreamContainersResponse]:
        wanted = container_messages.container_filter(
            request.filter, request.filter.HasField("state")
        )
        items = self._container_messages.containers(self._containers.list(wanted))
        for start in range(0, len(items), _STREAM_BATCH):
            yield pb.StreamContainersResponse(containers=items[start : start + _STREAM_BATCH])

    def UpdateContainerResources(
        self, request: pb.UpdateContainerResourcesRequest, context: grpc.ServicerContext
    ) -> pb.UpdateContainerResourcesResponse:
        resources = container_messages.resources(request.linux)
        self._containers.update_resources(request.container_id, resources)
        return pb.UpdateContainerResourcesResponse()

    def ReopenContainerLog(
        self, request: pb.ReopenContainerLogRequest, context: grpc.ServicerContext
    ) -> pb.ReopenContainerLogResponse:
        self._containers.reopen_log(request.container_id)
        return pb.ReopenContainerLogResponse()

    def ExecSync(
        self, request: pb.ExecSyncRequest, context: grpc.ServicerContext
    ) -> pb.ExecSyncResponse:
        result = self._containers.exec_sync(
            request.container_id, list(request.cmd), int(request.timeout)
        )
        return pb.ExecSyncResponse(
            stdout=result.stdout, stderr=result.stderr, exit_code=result.exit_code
        )

    # --- stats ---

    def ContainerStats(
        self, request: pb.ContainerStatsRequest, context: grpc.ServicerContext
    ) -> pb.ContainerStatsResponse:
        usage = self._containers.stats(request.container_id)
        return pb.ContainerStatsResponse(
            stats=container_messages.container_stats(usage, self._image_fs)
        )

    def _container_stats(self, wanted: pb.ContainerStatsFilter) -> list[pb.ContainerStats]:
        listed = self._containers.list_stats(container_messages.stats_filter(wanted))
        return [container_messages.container_stats(u, self._image_fs) for u in listed]

    def ListContainerStats(
        self, request: pb.ListContainerStatsRequest, context: grpc.ServicerContext
    ) -> pb.ListContainerStatsResponse:
        return pb.ListContainerStatsResponse(stats=self._container_stats(request.filter))

    def StreamContainerStats(
        self, request: pb.StreamContainerStatsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.StreamContainerStatsResponse]:
        items = self._container_stats(request.filter)
        for start in range(0, len(items), _STREAM_BATCH):
            yield pb.StreamContainerStatsResponse(
                container_stats=items[start : start + _STREAM_BATCH]
            )

    def PodSandboxStats(
        self, request: pb.PodSandboxStatsRequest, context: grpc.ServicerContext
    ) -> pb.PodSandboxStatsResponse:
        usage = self._containers.pod_stats(request.pod_sandbox_id)
        return pb.PodSandboxStatsResponse(stats=container_messages.pod_stats(usage, self._image_fs))

    def _pod_stats(self, wanted: pb.PodSandboxStatsFilter) -> list[pb.PodSandboxStats]:
        pods = PodFilter(id=wanted.id, labels=dict(wanted.label_selector))
        listed = self._containers.list_pod_stats(pods)
        return [container_messages.pod_stats(u, self._image_fs) for u in listed]

    def ListPodSandboxStats(
        self, request: pb.ListPodSandboxStatsRequest, context: grpc.ServicerContext
    ) -> pb.ListPodSandboxStatsResponse:
        return pb.ListPodSandboxStatsResponse(stats=self._pod_stats(request.filter))

    def StreamPodSandboxStats(
        self, request: pb.StreamPodSandboxStatsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.StreamPodSandboxStatsResponse]:
        items = self._pod_stats(request.filter)
        for start in range(0, len(items), _STREAM_BATCH):
            yield pb.StreamPodSandboxStatsResponse(
                pod_sandbox_stats=items[start : start + _STREAM_BATCH]
            )

    # --- metrics ---

    def ListMetricDescriptors(
        self, request: pb.ListMetricDescriptorsRequest, context: grpc.ServicerContext
    ) -> pb.ListMetricDescriptorsResponse:
        return pb.ListMetricDescriptorsResponse(descriptors=container_messages.descriptors())

    def _pod_metrics(self) -> list[pb.PodSandboxMetrics]:
        return [
            container_messages.pod_metrics(u) for u in self._containers.list_pod_stats(PodFilter())
        ]

    def ListPodSandboxMetrics(
        self, request: pb.ListPodSandboxMetricsRequest, context: grpc.ServicerContext
    ) -> pb.ListPodSandboxMetricsResponse:
        return pb.ListPodSandboxMetricsResponse(pod_metrics=self._pod_metrics())

    def StreamPodSandboxMetrics(
        self, request: pb.StreamPodSandboxMetricsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.StreamPodSandboxMetricsResponse]:
        items = self._pod_metrics()
        for start in range(0, len(items), _STREAM_BATCH):
            yield pb.StreamPodSandboxMetricsResponse(
                pod_sandbox_metrics=items[start : start + _STREAM_BATCH]
            )

    # --- events ---

    def GetContainerEvents(
        self, request: pb.GetEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ContainerEventResponse]:
        active = threading.Event()
        active.set()
        context.add_callback(active.clear)  # the client went away: stop waiting for events
        for event in self._containers.events(active):
            yield self._event(event)

    def _event(self, event: ContainerEvent) -> pb.ContainerEventResponse:
        response = pb.ContainerEventResponse(
            container_id=event.container_id,
            container_event_type=container_messages.event_type(event.type),
            created_at=event.at_ns,
        )
        # A pod that is gone already has no status: the event still names the container.
        with contextlib.suppress(NotFound):
            response.pod_sandbox_status.CopyFrom(
                self._pod_messages.pod_status(self._pods.status(event.pod_id))
            )
        response.containers_statuses.extend(
            self._container_messages.container_status(s.container, s.observed)
            for s in self._containers.pod_statuses(event.pod_id)
        )
        return response

    # --- streaming: each answers with a one-time URL on the streaming server ---

    def Exec(self, request: pb.ExecRequest, context: grpc.ServicerContext) -> pb.ExecResponse:
        self._containers.require_running(request.container_id)
        exec_request = ExecRequest(
            request.container_id,
            tuple(request.cmd),
            tty=request.tty,
            stdin=request.stdin,
            stdout=request.stdout,
            stderr=request.stderr,
        )
        return pb.ExecResponse(url=self._streaming.url_for(exec_request))

    def Attach(self, request: pb.AttachRequest, context: grpc.ServicerContext) -> pb.AttachResponse:
        self._containers.require_running(request.container_id)
        attach_request = AttachRequest(
            request.container_id,
            tty=request.tty,
            stdin=request.stdin,
            stdout=request.stdout,
            stderr=request.stderr,
        )
        return pb.AttachResponse(url=self._streaming.url_for(attach_request))

    def PortForward(
        self, request: pb.PortForwardRequest, context: grpc.ServicerContext
    ) -> pb.PortForwardResponse:
        self._pods.require_ready(request.pod_sandbox_id)
        forward = PortForwardRequest(request.pod_sandbox_id, tuple(request.port))
        return pb.PortForwardResponse(url=self._streaming.url_for(forward))
