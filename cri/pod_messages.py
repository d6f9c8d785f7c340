"""Pod sandbox messages: CRI protobuf ↔ the domain's pod types. Translation only."""

from __future__ import annotations

import json
from collections.abc import Iterable

from cri.message_cache import MessageCache
from criapi import api_pb2 as pb
from runtime.spec import IdMapping
from sandbox.pod import (
    DNSSettings,
    NamespaceMode,
    PodConfig,
    PodMetadata,
    PodSandbox,
    PortMapping,
    Resources,
)
from sandbox.pod_list import ListedPod, PodFilter
from sandbox.pod_status import PodStatus

_MODE_VALUES = {
    NamespaceMode.POD: pb.POD,
    NamespaceMode.CONTAINER: pb.CONTAINER,
    NamespaceMode.NODE: pb.NODE,
    NamespaceMode.TARGET: pb.TARGET,
}
_MODES: dict[int, NamespaceMode] = {value: mode for mode, value in _MODE_VALUES.items()}
_PROTOCOLS = {pb.TCP: "tcp", pb.UDP: "udp", pb.SCTP: "sctp"}
_STATES = {"ready": pb.SANDBOX_READY, "notready": pb.SANDBOX_NOTREADY}
_STATE_NAMES = {value: name for name, value in _STATES.items()}


def _mode(value: int) -> NamespaceMode:
    # An unknown enum number (a newer kubelet) reads as TARGET, which validation refuses.
    return _MODES.get(value, NamespaceMode.TARGET)


def id_mappings(mappings: Iterable[pb.IDMapping]) -> tuple[IdMapping, ...]:
    return tuple(IdMapping(m.container_id, m.host_id, m.length) for m in mappings)


def _id_mapping_messages(mappings: Iterable[IdMapping]) -> list[pb.IDMapping]:
    return [
        pb.IDMapping(container_id=m.container_id, host_id=m.host_id, length=m.size)
        for m in mappings
    ]


def _resources(linux: pb.LinuxPodSandboxConfig, field: str) -> Resources | None:
    if not linux.HasField(field):  # type: ignore[arg-type]
        return None
    return _pod_resources(getattr(linux, field))


def _pod_resources(r: pb.LinuxContainerResources) -> Resources:
    return Resources(
        cpu_period=r.cpu_period,
        cpu_quota=r.cpu_quota,
        cpu_shares=r.cpu_shares,
        memory_limit_in_bytes=r.memory_limit_in_bytes,
        cpuset_cpus=r.cpuset_cpus,
        cpuset_mems=r.cpuset_mems,
    )


def pod_config(config: pb.PodSandboxConfig) -> PodConfig:
    meta = config.metadata
    linux = config.linux
    security = linux.security_context
    options = security.namespace_options
    # Absent means the node's (as before user namespaces); its mode 0 would read as POD.
    userns = options.userns_options if options.HasField("userns_options") else None
    return PodConfig(
        metadata=PodMetadata(
            name=meta.name, uid=meta.uid, namespace=meta.namespace, attempt=meta.attempt
        ),
        hostname=config.hostname,
        log_directory=config.log_directory,
        dns=DNSSettings(
            servers=tuple(config.dns_config.servers),
            searches=tuple(config.dns_config.searches),
            options=tuple(config.dns_config.options),
        ),
        port_mappings=tuple(
            PortMapping(
                container_port=p.container_port,
                host_port=p.host_port,
                protocol=_PROTOCOLS.get(p.protocol, f"protocol {p.protocol}"),
                host_ip=p.host_ip,
            )
            for p in config.port_mappings
        ),
        labels=dict(config.labels),
        annotations=dict(config.annotations),
        cgroup_parent=linux.cgroup_parent,
        sysctls=dict(linux.sysctls),
        network=_mode(options.network),
        pid=_mode(options.pid),
        ipc=_mode(options.ipc),
        target_id=options.target_id,
        user_namespace=NamespaceMode.NODE if userns is None else _mode(userns.mode),
        uid_mappings=() if userns is None else id_mappings(userns.uids),
        gid_mappings=() if userns is None else id_mappings(userns.gids),
        overhead=_resources(linux, "overhead"),
        resources=_resources(linux, "resources"),
        privileged=security.privileged,
    )


def update_request(
    request: pb.UpdatePodSandboxResourcesRequest,
) -> tuple[Resources | None, Resources | None]:
    """The request's (overhead, resources); a field left out is None."""
    overhead = _pod_resources(request.overhead) if request.HasField("overhead") else None
    resources = _pod_resources(request.resources) if request.HasField("resources") else None
    return overhead, resources


def pod_filter(wanted: pb.PodSandboxFilter) -> PodFilter:
    state = _STATE_NAMES.get(wanted.state.state) if wanted.HasField("state") else None
    return PodFilter(id=wanted.id, state=state, labels=dict(wanted.label_selector))


def _metadata(pod: PodSandbox) -> pb.PodSandboxMetadata:
    meta = pod.config.metadata
    return pb.PodSandboxMetadata(
        name=meta.name, uid=meta.uid, namespace=meta.namespace, attempt=meta.attempt
    )


def pod_status(status: PodStatus) -> pb.PodSandboxStatus:
    pod = status.pod
    ips = pod.ips if pod.network_attached else []
    config = pod.config
    return pb.PodSandboxStatus(
        id=pod.id,
        metadata=_metadata(pod),
        state=pb.SANDBOX_READY if status.ready else pb.SANDBOX_NOTREADY,
        created_at=pod.created_ns,
        network=pb.PodSandboxNetworkStatus(
            ip=ips[0] if ips else "", additional_ips=[pb.PodIP(ip=ip) for ip in ips[1:]]
        ),
        linux=pb.LinuxPodSandboxStatus(
            namespaces=pb.Namespace(
                options=pb.NamespaceOption(
                    network=_MODE_VALUES[config.network],
                    pid=_MODE_VALUES[config.pid],
                    ipc=_MODE_VALUES[config.ipc],
                    target_id=config.target_id,
                    userns_options=pb.UserNamespace(
                        mode=_MODE_VALUES[config.user_namespace],
                        uids=_id_mapping_messages(config.uid_mappings),
                        gids=_id_mapping_messages(config.gid_mappings),
                    ),
                )
            )
        ),
        labels=config.labels,
        annotations=config.annotations,
        runtime_handler=pod.runtime_handler,
    )


def status_info(status: PodStatus) -> dict[str, str]:
    return {} if status.info is None else {"info": json.dumps(status.info)}


def _pod_sandbox(item: ListedPod) -> pb.PodSandbox:
    return pb.PodSandbox(
        id=item.pod.id,
        metadata=_metadata(item.pod),
        state=_STATES[item.state],
        created_at=item.pod.created_ns,
        labels=item.pod.config.labels,
        annotations=item.pod.config.annotations,
        runtime_handler=item.pod.runtime_handler,
    )


class PodMessages:
    """PodSandbox messages of listed pods, kept between calls (see cri/message_cache.py).
    A pod record itself is edited in place, but its config is replaced when it changes and
    the other fields listed are in the key, so a kept message is one of the pod as it is."""

    def __init__(self) -> None:
        self._listed: MessageCache[PodConfig, pb.PodSandbox] = MessageCache()
        self._statuses: MessageCache[PodConfig, pb.PodSandboxStatus] = MessageCache()

    def pod_status(self, status: PodStatus) -> pb.PodSandboxStatus:
        """Read-only: the message is shared with later calls (kubelet asks for every pod's
        status on each relist; building it costs more than the rest of the call)."""
        pod = status.pod
        key = (
            pod.id,
            status.ready,
            pod.created_ns,
            pod.runtime_handler,
            pod.network_attached,
            tuple(pod.ips),
        )
        return self._statuses.get(key, pod.config, lambda: pod_status(status))

    def pod_sandboxes(self, listed: Iterable[ListedPod]) -> list[pb.PodSandbox]:
        """Read-only messages: they are shared with later calls."""
        return [
            self._listed.get(
                (item.pod.id, item.state, item.pod.created_ns, item.pod.runtime_handler),
                item.pod.config,
                lambda: _pod_sandbox(item),  # noqa: B023  (called before the loop moves on)
            )
            for item in listed
        ]
