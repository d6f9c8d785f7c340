"""Container messages: CRI protobuf ↔ the domain's container types. Translation only."""

from __future__ import annotations

import json
from collections.abc import Iterable

from cri import pod_messages
from cri.message_cache import MessageCache
from criapi import api_pb2 as pb
from sandbox.container_config import (
    ContainerRequest,
    DeviceRequest,
    HugepageLimit,
    MountRequest,
    NamespaceMode,
    NamespaceOptions,
    ProfileKind,
    Propagation,
    Resources,
    SecurityContext,
    SecurityProfile,
    UserNamespaceRequest,
)
from sandbox.container_events import EventType
from sandbox.container_list import ContainerFilter, ListedContainer
from sandbox.container_metrics import DESCRIPTORS, LABEL_KEYS, container_samples
from sandbox.container_record import CREATED, EXITED, RUNNING, Container, Observed
from sandbox.container_stats import ContainerUsage, PodUsage, StatsFilter, Usage
from sandbox.container_status import ContainerStatus

_MODES = {
    pb.POD: NamespaceMode.POD,
    pb.CONTAINER: NamespaceMode.CONTAINER,
    pb.NODE: NamespaceMode.NODE,
    pb.TARGET: NamespaceMode.TARGET,
}
_PROPAGATIONS = {
    pb.PROPAGATION_PRIVATE: Propagation.PRIVATE,
    pb.PROPAGATION_HOST_TO_CONTAINER: Propagation.HOST_TO_CONTAINER,
    pb.PROPAGATION_BIDIRECTIONAL: Propagation.BIDIRECTIONAL,
}
_PROPAGATION_VALUES = {mode: value for value, mode in _PROPAGATIONS.items()}
_PROFILES: dict[int, ProfileKind] = {
    pb.SecurityProfile.RuntimeDefault: "runtime-default",
    pb.SecurityProfile.Unconfined: "unconfined",
    pb.SecurityProfile.Localhost: "localhost",
}
_STATES = {
    CREATED: pb.CONTAINER_CREATED,
    RUNNING: pb.CONTAINER_RUNNING,
    EXITED: pb.CONTAINER_EXITED,
}
_STATE_NAMES = {value: name for name, value in _STATES.items()}
_EVENTS = {
    EventType.CREATED: pb.CONTAINER_CREATED_EVENT,
    EventType.STARTED: pb.CONTAINER_STARTED_EVENT,
    EventType.STOPPED: pb.CONTAINER_STOPPED_EVENT,
    EventType.DELETED: pb.CONTAINER_DELETED_EVENT,
}


def event_type(kind: EventType) -> pb.ContainerEventType.ValueType:
    return _EVENTS[kind]


def _signal_name(value: int) -> str:
    if value == pb.RUNTIME_DEFAULT:
        return ""
    name = pb.Signal.Name(value)  # type: ignore[arg-type]
    return name.replace("MINPLUS", "MIN+").replace("MAXMINUS", "MAX-")


def _signal_value(name: str) -> pb.Signal.ValueType:
    wire = name.replace("MIN+", "MINPLUS").replace("MAX-", "MAXMINUS")
    try:
        return pb.Signal.Value(wire)
    except ValueError:
        return pb.RUNTIME_DEFAULT


def _profile(profile: pb.SecurityProfile, has: bool, legacy: str) -> SecurityProfile | None:
    if has:
        return SecurityProfile(
            _PROFILES.get(profile.profile_type, "localhost"), profile.localhost_ref
        )
    # The deprecated string fields: "runtime/default", "unconfined", "localhost/<path>".
    if not legacy:
        return None
    if legacy in ("runtime/default", "docker/default"):
        return SecurityProfile("runtime-default")
    if legacy == "unconfined":
        return SecurityProfile("unconfined")
    return SecurityProfile("localhost", legacy.removeprefix("localhost/"))


def resources(r: pb.LinuxContainerResources) -> Resources:
    return Resources(
        cpu_period=r.cpu_period,
        cpu_quota=r.cpu_quota,
        cpu_shares=r.cpu_shares,
        memory_limit=r.memory_limit_in_bytes,
        memory_swap_limit=r.memory_swap_limit_in_bytes,
        oom_score_adj=r.oom_score_adj,
        cpuset_cpus=r.cpuset_cpus,
        cpuset_mems=r.cpuset_mems,
        hugepage_limits=tuple(HugepageLimit(h.page_size, h.limit) for h in r.hugepage_limits),
        unified=dict(r.unified),
    )


def _user_namespace(options: pb.NamespaceOption) -> UserNamespaceRequest | None:
    if not options.HasField("userns_options"):
        return None
    userns = options.userns_options
    return UserNamespaceRequest(
        # An unknown enum number (a newer kubelet) reads as TARGET, which is refused.
        mode=_MODES.get(userns.mode, NamespaceMode.TARGET),
        uid_mappings=pod_messages.id_mappings(userns.uids),
        gid_mappings=pod_messages.id_mappings(userns.gids),
    )


def _security(s: pb.LinuxContainerSecurityContext) -> SecurityContext:
    options = s.namespace_options
    return SecurityContext(
        privileged=s.privileged,
        add_capabilities=tuple(s.capabilities.add_capabilities),
        drop_capabilities=tuple(s.capabilities.drop_capabilities),
        add_ambient_capabilities=tuple(s.capabilities.add_ambient_capabilities),
        namespaces=NamespaceOptions(
            network=_MODES.get(options.network, NamespaceMode.POD),
            pid=_MODES.get(options.pid, NamespaceMode.TARGET),
            ipc=_MODES.get(options.ipc, NamespaceMode.POD),
            target_id=options.target_id,
            user=_user_namespace(options),
        ),
        run_as_user=s.run_as_user.value if s.HasField("run_as_user") else None,
        run_as_group=s.run_as_group.value if s.HasField("run_as_group") else None,
        run_as_username=s.run_as_username,
        readonly_rootfs=s.readonly_rootfs,
        supplemental_groups=tuple(s.supplemental_groups),
        supplemental_groups_policy="strict"
        if s.supplemental_groups_policy == pb.Strict
        else "merge",
        no_new_privs=s.no_new_privs,
        masked_paths=tuple(s.masked_paths),
        readonly_paths=tuple(s.readonly_paths),
        seccomp=_profile(s.seccomp, s.HasField("seccomp"), s.seccomp_profile_path),
        apparmor=_profile(s.apparmor, s.HasField("apparmor"), s.apparmor_profile),
    )


def container_request(config: pb.ContainerConfig) -> ContainerRequest:
    linux = config.linux
    return ContainerRequest(
        name=config.metadata.name,
        attempt=config.metadata.attempt,
        image=config.image.image,
        command=tuple(config.command),
        args=tuple(config.args),
        working_dir=config.working_dir,
        envs=tuple((e.key, e.value) for e in config.envs),
        mounts=tuple(
            MountRequest(
                container_path=m.container_path,
                host_path=m.host_path,
                readonly=m.readonly,
                recursive_read_only=m.recursive_read_only,
                propagation=_PROPAGATIONS.get(m.propagation, Propagation.PRIVATE),
                selinux_relabel=m.selinux_relabel,
                image=m.image.image,
                image_sub_path=m.image_sub_path,
            )
            for m in config.mounts
        ),
        devices=tuple(
            DeviceRequest(d.container_path, d.host_path, d.permissions) for d in config.devices
        ),
        labels=dict(config.labels),
        annotations=dict(config.annotations),
        log_path=config.log_path,
        stdin=config.stdin,
        stdin_once=config.stdin_once,
        tty=config.tty,
        resources=resources(linux.resources),
        security=_security(linux.security_context),
        stop_signal=_signal_name(config.stop_signal),
    )


def container_filter(wanted: pb.ContainerFilter, has_state: bool) -> ContainerFilter:
    return ContainerFilter(
        id=wanted.id,
        state=_STATE_NAMES.get(wanted.state.state) if has_state else None,
        pod_id=wanted.pod_sandbox_id,
        labels=dict(wanted.label_selector),
    )


def _metadata(container: Container) -> pb.ContainerMetadata:
    return pb.ContainerMetadata(name=container.name, attempt=container.attempt)


def _listed_message(container: Container, state: str) -> pb.Container:
    return pb.Container(
        id=container.id,
        pod_sandbox_id=container.pod_id,
        metadata=_metadata(container),
        image=pb.ImageSpec(image=container.image),
        image_ref=container.image_id,
        image_id=container.image_id,
        state=_STATES[state],
        created_at=container.created_ns,
        labels=container.labels,
        annotations=container.annotations,
    )


def _resources_message(container: Container) -> pb.ContainerResources:
    r = container.resources
    return pb.ContainerResources(
        linux=pb.LinuxContainerResources(
            cpu_period=r.get("cpu_period", 0),
            cpu_quota=r.get("cpu_quota", 0),
            cpu_shares=r.get("cpu_shares", 0),
            memory_limit_in_bytes=r.get("memory_limit", 0),
            memory_swap_limit_in_bytes=r.get("memory_swap_limit", 0),
            oom_score_adj=r.get("oom_score_adj", 0),
            cpuset_cpus=r.get("cpuset_cpus", ""),
            cpuset_mems=r.get("cpuset_mems", ""),
            hugepage_limits=[
                pb.HugepageLimit(page_size=h["page_size"], limit=h["limit"])
                for h in r.get("hugepage_limits", ())
            ],
            unified=r.get("unified", {}),
        )
    )


def _recorded_status(container: Container) -> pb.ContainerStatus:
    """The part of a container's status that its record holds (not its process's state)."""
    user = container.process_user()
    return pb.ContainerStatus(
        id=container.id,
        metadata=_metadata(container),
        created_at=container.created_ns,
        image=pb.ImageSpec(image=container.image),
        image_ref=container.image_id,
        image_id=container.image_id,
        labels=container.labels,
        annotations=container.annotations,
        mounts=[
            pb.Mount(
                container_path=m.container_path,
                host_path=m.host_path,
                readonly=m.readonly,
                recursive_read_only=m.recursive_read_only,
                selinux_relabel=m.selinux_relabel,
                propagation=_PROPAGATION_VALUES[m.propagation],
                image=pb.ImageSpec(image=m.image) if m.image else None,
                image_sub_path=m.image_sub_path,
            )
            for m in container.mount_requests()
        ],
        log_path=container.log_path,
        resources=_resources_message(container),
        user=pb.ContainerUser(
            linux=pb.LinuxContainerUser(
                uid=user.uid, gid=user.gid, supplemental_groups=list(user.additional_gids)
            )
        ),
        stop_signal=_signal_value(container.stop_signal),
    )


def _observe_into(message: pb.ContainerStatus, observed: Observed) -> pb.ContainerStatus:
    message.state = _STATES[observed.state]
    message.started_at = observed.started_ns
    message.finished_at = observed.finished_ns
    message.exit_code = observed.exit_code
    message.reason = observed.reason
    message.message = observed.message
    return message


def container_status(container: Container, observed: Observed) -> pb.ContainerStatus:
    return _observe_into(_recorded_status(container), observed)


def _info(status: ContainerStatus) -> dict[str, str]:
    return {} if status.info is None else {"info": json.dumps(status.info)}


class ContainerMessages:
    """Container and ContainerStatus messages, the part from a container's record built once
    per record (see cri/message_cache.py)."""

    def __init__(self) -> None:
        self._statuses: MessageCache[Container, pb.ContainerStatus] = MessageCache()
        self._listed: MessageCache[Container, pb.Container] = MessageCache()

    def container_status(self, container: Container, observed: Observed) -> pb.ContainerStatus:
        message = pb.ContainerStatus()
        message.CopyFrom(self._recorded_status(container))
        return _observe_into(message, observed)

    def status_response(self, status: ContainerStatus) -> pb.ContainerStatusResponse:
        response = pb.ContainerStatusResponse(info=_info(status))
        # Filled in place: building the status apart would copy it once more.
        response.status.CopyFrom(self._recorded_status(status.container))
        _observe_into(response.status, status.observed)
        return response

    def _recorded_status(self, container: Container) -> pb.ContainerStatus:
        return self._statuses.get(container.id, container, lambda: _recorded_status(container))

    def containers(self, listed: Iterable[ListedContainer]) -> list[pb.Container]:
        """Read-only messages: they are shared with later calls."""
        return [self._listed_message(item.container, item.observed.state) for item in listed]

    def _listed_message(self, container: Container, state: str) -> pb.Container:
        return self._listed.get(
            (container.id, state), container, lambda: _listed_message(container, state)
        )


# --- stats ---


def stats_filter(wanted: pb.ContainerStatsFilter) -> StatsFilter:
    return StatsFilter(
        id=wanted.id, pod_id=wanted.pod_sandbox_id, labels=dict(wanted.label_selector)
    )


def _u64(value: int) -> pb.UInt64Value:
    return pb.UInt64Value(value=max(value, 0))


def _cpu(usage: Usage) -> pb.CpuUsage:
    return pb.CpuUsage(
        timestamp=usage.timestamp_ns,
        usage_core_nano_seconds=_u64(usage.cpu_usage_ns),
        usage_nano_cores=_u64(usage.cpu_nano_cores),
    )


def _memory(usage: Usage) -> pb.MemoryUsage:
    return pb.MemoryUsage(
        timestamp=usage.timestamp_ns,
        working_set_bytes=_u64(usage.memory_working_set),
        available_bytes=_u64(usage.memory_available),
        usage_bytes=_u64(usage.memory_usage),
        rss_bytes=_u64(usage.memory_rss),
        page_faults=_u64(usage.page_faults),
        major_page_faults=_u64(usage.major_page_faults),
    )


def container_stats(item: ContainerUsage, mountpoint: str) -> pb.ContainerStats:
    c = item.container
    return pb.ContainerStats(
        attributes=pb.ContainerAttributes(
            id=c.id, metadata=_metadata(c), labels=c.labels, annotations=c.annotations
        ),
        cpu=_cpu(item.usage),
        memory=_memory(item.usage),
        writable_layer=pb.FilesystemUsage(
            timestamp=item.usage.timestamp_ns,
            fs_id=pb.FilesystemIdentifier(mountpoint=mountpoint),
            used_bytes=_u64(item.writable_bytes),
            inodes_used=_u64(item.writable_inodes),
        ),
    )


def pod_stats(item: PodUsage, mountpoint: str) -> pb.PodSandboxStats:
    pod = item.pod
    meta = pod.config.metadata
    return pb.PodSandboxStats(
        attributes=pb.PodSandboxAttributes(
            id=pod.id,
            metadata=pb.PodSandboxMetadata(
                name=meta.name, uid=meta.uid, namespace=meta.namespace, attempt=meta.attempt
            ),
            labels=pod.config.labels,
            annotations=pod.config.annotations,
        ),
        linux=pb.LinuxPodSandboxStats(
            cpu=_cpu(item.usage),
            memory=_memory(item.usage),
            process=pb.ProcessUsage(
                timestamp=item.usage.timestamp_ns, process_count=_u64(item.usage.pids)
            ),
            containers=[container_stats(c, mountpoint) for c in item.containers],
        ),
    )


# --- metrics ---

_METRIC_TYPES = {"gauge": pb.GAUGE, "counter": pb.COUNTER}


def descriptors() -> list[pb.MetricDescriptor]:
    return [
        pb.MetricDescriptor(name=d.name, help=d.help, label_keys=LABEL_KEYS) for d in DESCRIPTORS
    ]


def pod_metrics(item: PodUsage) -> pb.PodSandboxMetrics:
    return pb.PodSandboxMetrics(
        pod_sandbox_id=item.pod.id,
        container_metrics=[
            pb.ContainerMetrics(
                container_id=c.container.id,
                metrics=[
                    pb.Metric(
                        name=s.name,
                        timestamp=s.timestamp_ns,
                        metric_type=_METRIC_TYPES[s.kind],
                        label_values=s.labels,
                        value=_u64(s.value),
                    )
                    for s in container_samples(item, c)
                ],
            )
            for c in item.containers
        ],
    )
