"""gRPC adapter of runtime.v1.RuntimeService: converts messages and delegates to the domain.

RPCs not overridden here fall through to the generated base class, whose NotImplementedError
the interceptor reports as UNIMPLEMENTED naming the RPC.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import grpc

from cri import pod_messages
from criapi import api_pb2 as pb
from criapi import api_pb2_grpc as pb_grpc
from sandbox.node import Node
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
    ) -> None:
        self._node = node
        self._pods = pods
        self._runtime_version = runtime_version
        self._verbose_info = verbose_info

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
            features=pb.RuntimeFeatures(supplemental_groups_policy=False),
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
        status = self._pods.status(request.pod_sandbox_id, request.verbose)
        return pb.PodSandboxStatusResponse(
            status=pod_messages.pod_status(status),
            info=pod_messages.status_info(status),
            timestamp=time.time_ns(),
        )

    def ListPodSandbox(
        self, request: pb.ListPodSandboxRequest, context: grpc.ServicerContext
    ) -> pb.ListPodSandboxResponse:
        listed = self._pods.list(pod_messages.pod_filter(request.filter))
        return pb.ListPodSandboxResponse(items=pod_messages.pod_sandboxes(listed))

    def StreamPodSandboxes(
        self, request: pb.StreamPodSandboxesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.StreamPodSandboxesResponse]:
        items = pod_messages.pod_sandboxes(self._pods.list(pod_messages.pod_filter(request.filter)))
        for start in range(0, len(items), _STREAM_BATCH):
            yield pb.StreamPodSandboxesResponse(pod_sandboxes=items[start : start + _STREAM_BATCH])
