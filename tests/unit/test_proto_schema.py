"""Facts of the CRI v1 schema that kubelet, crictl and critest depend on.

proto/api.proto must be wire-identical to upstream k8s.io/cri-api; these checks
pin the parts where a slip (a renumbered field, a dropped RPC, a lost `stream`)
would silently break real clients. Expected values are taken from upstream.
"""

from __future__ import annotations

import importlib

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    FileDescriptor,
    ServiceDescriptor,
)

from criapi import api_pb2

RUNTIME_SERVICE_METHODS = (
    "Version",
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "StreamPodSandboxes",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ListContainers",
    "StreamContainers",
    "ContainerStatus",
    "UpdateContainerResources",
    "ReopenContainerLog",
    "ExecSync",
    "Exec",
    "Attach",
    "PortForward",
    "ContainerStats",
    "ListContainerStats",
    "StreamContainerStats",
    "PodSandboxStats",
    "ListPodSandboxStats",
    "StreamPodSandboxStats",
    "UpdateRuntimeConfig",
    "Status",
    "CheckpointContainer",
    "GetContainerEvents",
    "ListMetricDescriptors",
    "ListPodSandboxMetrics",
    "StreamPodSandboxMetrics",
    "RuntimeConfig",
    "UpdatePodSandboxResources",
)

IMAGE_SERVICE_METHODS = (
    "ListImages",
    "StreamImages",
    "ImageStatus",
    "PullImage",
    "RemoveImage",
    "ImageFsInfo",
)

# (service, method) -> (request message, response message); all server-streaming.
SERVER_STREAMING = {
    ("RuntimeService", "StreamPodSandboxes"): (
        "StreamPodSandboxesRequest",
        "StreamPodSandboxesResponse",
    ),
    ("RuntimeService", "StreamContainers"): ("StreamContainersRequest", "StreamContainersResponse"),
    ("RuntimeService", "StreamContainerStats"): (
        "StreamContainerStatsRequest",
        "StreamContainerStatsResponse",
    ),
    ("RuntimeService", "StreamPodSandboxStats"): (
        "StreamPodSandboxStatsRequest",
        "StreamPodSandboxStatsResponse",
    ),
    ("RuntimeService", "GetContainerEvents"): ("GetEventsRequest", "ContainerEventResponse"),
    ("RuntimeService", "StreamPodSandboxMetrics"): (
        "StreamPodSandboxMetricsRequest",
        "StreamPodSandboxMetricsResponse",
    ),
    ("ImageService", "StreamImages"): ("StreamImagesRequest", "StreamImagesResponse"),
}

T = FieldDescriptor
SCALAR, REPEATED, MAP = "scalar", "repeated", "map"

# (message, field, number, wire type, shape, message/enum type name or "")
FIELDS: list[tuple[str, str, int, int, str, str]] = [
    ("VersionRequest", "version", 1, T.TYPE_STRING, SCALAR, ""),
    ("VersionResponse", "version", 1, T.TYPE_STRING, SCALAR, ""),
    ("VersionResponse", "runtime_name", 2, T.TYPE_STRING, SCALAR, ""),
    ("VersionResponse", "runtime_version", 3, T.TYPE_STRING, SCALAR, ""),
    ("VersionResponse", "runtime_api_version", 4, T.TYPE_STRING, SCALAR, ""),
    ("PodSandboxConfig", "metadata", 1, T.TYPE_MESSAGE, SCALAR, "PodSandboxMetadata"),
    ("PodSandboxConfig", "hostname", 2, T.TYPE_STRING, SCALAR, ""),
    ("PodSandboxConfig", "log_directory", 3, T.TYPE_STRING, SCALAR, ""),
    ("PodSandboxConfig", "dns_config", 4, T.TYPE_MESSAGE, SCALAR, "DNSConfig"),
    ("PodSandboxConfig", "port_mappings", 5, T.TYPE_MESSAGE, REPEATED, "PortMapping"),
    ("PodSandboxConfig", "labels", 6, T.TYPE_MESSAGE, MAP, "PodSandboxConfig.LabelsEntry"),
    (
        "PodSandboxConfig",
        "annotations",
        7,
        T.TYPE_MESSAGE,
        MAP,
        "PodSandboxConfig.AnnotationsEntry",
    ),
    ("PodSandboxConfig", "linux", 8, T.TYPE_MESSAGE, SCALAR, "LinuxPodSandboxConfig"),
    ("PodSandboxConfig", "windows", 9, T.TYPE_MESSAGE, SCALAR, "WindowsPodSandboxConfig"),
    ("LinuxPodSandboxConfig", "cgroup_parent", 1, T.TYPE_STRING, SCALAR, ""),
    ("RunPodSandboxRequest", "runtime_handler", 2, T.TYPE_STRING, SCALAR, ""),
    ("ContainerConfig", "metadata", 1, T.TYPE_MESSAGE, SCALAR, "ContainerMetadata"),
    ("ContainerConfig", "image", 2, T.TYPE_MESSAGE, SCALAR, "ImageSpec"),
    ("ContainerConfig", "command", 3, T.TYPE_STRING, REPEATED, ""),
    ("ContainerConfig", "args", 4, T.TYPE_STRING, REPEATED, ""),
    ("ContainerConfig", "working_dir", 5, T.TYPE_STRING, SCALAR, ""),
    ("ContainerConfig", "envs", 6, T.TYPE_MESSAGE, REPEATED, "KeyValue"),
    ("ContainerConfig", "mounts", 7, T.TYPE_MESSAGE, REPEATED, "Mount"),
    ("ContainerConfig", "devices", 8, T.TYPE_MESSAGE, REPEATED, "Device"),
    ("ContainerConfig", "log_path", 11, T.TYPE_STRING, SCALAR, ""),
    ("ContainerConfig", "stdin", 12, T.TYPE_BOOL, SCALAR, ""),
    ("ContainerConfig", "tty", 14, T.TYPE_BOOL, SCALAR, ""),
    ("ContainerConfig", "linux", 15, T.TYPE_MESSAGE, SCALAR, "LinuxContainerConfig"),
    ("ContainerConfig", "CDI_devices", 17, T.TYPE_MESSAGE, REPEATED, "CDIDevice"),
    ("ContainerConfig", "stop_signal", 18, T.TYPE_ENUM, SCALAR, "Signal"),
    ("ContainerStatus", "state", 3, T.TYPE_ENUM, SCALAR, "ContainerState"),
    ("ContainerStatus", "exit_code", 7, T.TYPE_INT32, SCALAR, ""),
    ("ContainerStatus", "image", 8, T.TYPE_MESSAGE, SCALAR, "ImageSpec"),
    ("ContainerStatus", "image_ref", 9, T.TYPE_STRING, SCALAR, ""),
    ("ContainerStatus", "reason", 10, T.TYPE_STRING, SCALAR, ""),
    ("ContainerStatus", "image_id", 17, T.TYPE_STRING, SCALAR, ""),
    ("Container", "image_ref", 5, T.TYPE_STRING, SCALAR, ""),
    ("Container", "image_id", 10, T.TYPE_STRING, SCALAR, ""),
    ("Mount", "uidMappings", 6, T.TYPE_MESSAGE, REPEATED, "IDMapping"),
    ("Mount", "image", 9, T.TYPE_MESSAGE, SCALAR, "ImageSpec"),
    ("Namespace", "options", 2, T.TYPE_MESSAGE, SCALAR, "NamespaceOption"),
    (
        "LinuxContainerResources",
        "unified",
        9,
        T.TYPE_MESSAGE,
        MAP,
        "LinuxContainerResources.UnifiedEntry",
    ),
    ("LinuxContainerResources", "memory_swap_limit_in_bytes", 10, T.TYPE_INT64, SCALAR, ""),
    ("LinuxContainerSecurityContext", "run_as_group", 12, T.TYPE_MESSAGE, SCALAR, "Int64Value"),
    ("LinuxSandboxSecurityContext", "run_as_group", 8, T.TYPE_MESSAGE, SCALAR, "Int64Value"),
    ("ImageSpec", "image", 1, T.TYPE_STRING, SCALAR, ""),
    ("ImageSpec", "user_specified_image", 18, T.TYPE_STRING, SCALAR, ""),
    ("ImageSpec", "runtime_handler", 19, T.TYPE_STRING, SCALAR, ""),
    ("ImageSpec", "image_ref", 20, T.TYPE_STRING, SCALAR, ""),
    ("Image", "id", 1, T.TYPE_STRING, SCALAR, ""),
    ("Image", "repo_tags", 2, T.TYPE_STRING, REPEATED, ""),
    ("Image", "repo_digests", 3, T.TYPE_STRING, REPEATED, ""),
    ("Image", "size", 4, T.TYPE_UINT64, SCALAR, ""),
    ("Image", "uid", 5, T.TYPE_MESSAGE, SCALAR, "Int64Value"),
    ("Image", "pinned", 8, T.TYPE_BOOL, SCALAR, ""),
    ("PullImageRequest", "auth", 2, T.TYPE_MESSAGE, SCALAR, "AuthConfig"),
    ("PullImageResponse", "image_ref", 1, T.TYPE_STRING, SCALAR, ""),
    ("ExecSyncResponse", "stdout", 1, T.TYPE_BYTES, SCALAR, ""),
    ("ExecSyncResponse", "stderr", 2, T.TYPE_BYTES, SCALAR, ""),
    ("ExecSyncResponse", "exit_code", 3, T.TYPE_INT32, SCALAR, ""),
    ("RuntimeCondition", "type", 1, T.TYPE_STRING, SCALAR, ""),
    ("RuntimeCondition", "status", 2, T.TYPE_BOOL, SCALAR, ""),
    ("StatusResponse", "runtime_handlers", 3, T.TYPE_MESSAGE, REPEATED, "RuntimeHandler"),
    ("RuntimeConfigResponse", "linux", 1, T.TYPE_MESSAGE, SCALAR, "LinuxRuntimeConfiguration"),
    ("LinuxRuntimeConfiguration", "cgroup_driver", 1, T.TYPE_ENUM, SCALAR, "CgroupDriver"),
    ("ContainerStats", "writable_layer", 4, T.TYPE_MESSAGE, SCALAR, "FilesystemUsage"),
    ("CpuUsage", "usage_core_nano_seconds", 2, T.TYPE_MESSAGE, SCALAR, "UInt64Value"),
    ("MemoryUsage", "working_set_bytes", 2, T.TYPE_MESSAGE, SCALAR, "UInt64Value"),
    ("PsiData", "Avg10", 2, T.TYPE_DOUBLE, SCALAR, ""),
]

ENUMS: dict[str, dict[str, int]] = {
    "ContainerState": {
        "CONTAINER_CREATED": 0,
        "CONTAINER_RUNNING": 1,
        "CONTAINER_EXITED": 2,
        "CONTAINER_UNKNOWN": 3,
    },
    "PodSandboxState": {"SANDBOX_READY": 0, "SANDBOX_NOTREADY": 1},
    "NamespaceMode": {"POD": 0, "CONTAINER": 1, "NODE": 2, "TARGET": 3},
    "MountPropagation": {
        "PROPAGATION_PRIVATE": 0,
        "PROPAGATION_HOST_TO_CONTAINER": 1,
        "PROPAGATION_BIDIRECTIONAL": 2,
    },
    "Protocol": {"TCP": 0, "UDP": 1, "SCTP": 2},
    "CgroupDriver": {"SYSTEMD": 0, "CGROUPFS": 1},
    "ContainerEventType": {
        "CONTAINER_CREATED_EVENT": 0,
        "CONTAINER_STARTED_EVENT": 1,
        "CONTAINER_STOPPED_EVENT": 2,
        "CONTAINER_DELETED_EVENT": 3,
    },
    "SupplementalGroupsPolicy": {"Merge": 0, "Strict": 1},
    "MetricType": {"COUNTER": 0, "GAUGE": 1},
}

FILE: FileDescriptor = api_pb2.DESCRIPTOR


def service(name: str) -> ServiceDescriptor:
    return FILE.services_by_name[name]


def message(dotted: str) -> Descriptor:
    """Look up a message by its name relative to the package (Outer.Inner allowed)."""
    outer, *inner = dotted.split(".")
    desc = FILE.message_types_by_name[outer]
    for part in inner:
        desc = desc.nested_types_by_name[part]
    return desc


def test_file_identity() -> None:
    proto = descriptor_pb2.FileDescriptorProto()
    FILE.CopyToProto(proto)
    assert proto.syntax == "proto3"
    assert FILE.package == "runtime.v1"
    assert FILE.GetOptions().go_package == "k8s.io/cri-api/pkg/apis/runtime/v1"
    assert sorted(FILE.services_by_name) == ["ImageService", "RuntimeService"]
    assert service("RuntimeService").full_name == "runtime.v1.RuntimeService"
    assert service("ImageService").full_name == "runtime.v1.ImageService"


def test_runtime_service_methods() -> None:
    names = tuple(m.name for m in service("RuntimeService").methods)
    assert names == RUNTIME_SERVICE_METHODS
    assert len(names) == 35


def test_image_service_methods() -> None:
    names = tuple(m.name for m in service("ImageService").methods)
    assert names == IMAGE_SERVICE_METHODS
    assert len(names) == 6


def test_streaming_flags() -> None:
    for svc_name in ("RuntimeService", "ImageService"):
        for method in service(svc_name).methods:
            assert not method.client_streaming, method.full_name
            expected = SERVER_STREAMING.get((svc_name, method.name))
            assert method.server_streaming == (expected is not None), method.full_name
            if expected is not None:
                assert (method.input_type.name, method.output_type.name) == expected


def test_unary_request_response_naming() -> None:
    # Every unary RPC takes XRequest and returns XResponse, except the
    # historical GetContainerEvents (GetEventsRequest -> ContainerEventResponse).
    for svc_name in ("RuntimeService", "ImageService"):
        for method in service(svc_name).methods:
            if (svc_name, method.name) in SERVER_STREAMING:
                continue
            assert method.input_type.name == f"{method.name}Request"
            assert method.output_type.name == f"{method.name}Response"


@pytest.mark.parametrize(
    ("msg", "field", "number", "wire_type", "shape", "type_name"),
    FIELDS,
    ids=[f"{m}.{f}" for m, f, *_ in FIELDS],
)
def test_field(
    msg: str, field: str, number: int, wire_type: int, shape: str, type_name: str
) -> None:
    desc = message(msg).fields_by_name[field]
    assert desc.number == number
    assert desc.type == wire_type
    assert desc.is_repeated == (shape in (REPEATED, MAP))
    is_map = desc.message_type is not None and desc.message_type.GetOptions().map_entry
    assert is_map == (shape == MAP)
    assert desc.containing_oneof is None
    if desc.message_type is not None:
        assert desc.message_type.full_name == f"runtime.v1.{type_name}"
    elif desc.enum_type is not None:
        assert desc.enum_type.full_name == f"runtime.v1.{type_name}"
    else:
        assert type_name == ""


@pytest.mark.parametrize("enum_name", sorted(ENUMS))
def test_enum(enum_name: str) -> None:
    values = {v.name: v.number for v in FILE.enum_types_by_name[enum_name].values}
    assert values == ENUMS[enum_name]


def test_signal_enum() -> None:
    values = {v.name: v.number for v in FILE.enum_types_by_name["Signal"].values}
    assert len(values) == 66
    assert values["RUNTIME_DEFAULT"] == 0
    assert values["SIGKILL"] == 13
    assert values["SIGTERM"] == 23
    assert values["SIGRTMAX"] == 65


def test_security_profile_nested_enum() -> None:
    enum = message("SecurityProfile").enum_types_by_name["ProfileType"]
    assert {v.name: v.number for v in enum.values} == {
        "RuntimeDefault": 0,
        "Unconfined": 1,
        "Localhost": 2,
    }


def test_version_response_round_trip() -> None:
    sent = api_pb2.VersionResponse(
        version="0.1.0",
        runtime_name="crisp",
        runtime_version="0.1.0",
        runtime_api_version="v1",
    )
    # Field 2 (runtime_name), wire type 2 (length-delimited): tag byte 0x12.
    assert b"\x12\x05crisp" in sent.SerializeToString()
    received = api_pb2.VersionResponse.FromString(sent.SerializeToString())
    assert received == sent


def test_grpc_module_exposes_services() -> None:
    grpc_mod = importlib.import_module("criapi.api_pb2_grpc")
    for svc_name, methods in (
        ("RuntimeService", RUNTIME_SERVICE_METHODS),
        ("ImageService", IMAGE_SERVICE_METHODS),
    ):
        servicer = getattr(grpc_mod, f"{svc_name}Servicer")
        stub = getattr(grpc_mod, f"{svc_name}Stub")
        assert callable(getattr(grpc_mod, f"add_{svc_name}Servicer_to_server"))
        assert callable(stub)
        for name in methods:
            assert callable(getattr(servicer, name)), f"{svc_name}Servicer.{name}"
        # Building a stub does not connect; it must expose one callable per RPC.
        with grpc.insecure_channel("unix:///nonexistent/crisp-test.sock") as channel:
            client = stub(channel)
            for name in methods:
                assert callable(getattr(client, name)), f"{svc_name}Stub.{name}"
