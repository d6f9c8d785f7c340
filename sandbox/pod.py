"""What a pod sandbox is in the domain: the config it was asked for, and the persisted
record of what crisp made for it (enough to tear it all down after a daemon restart)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from runtime.spec import IdMapping

# Record states. CREATING is persisted before the first host change, so that a crash in
# the middle of RunPodSandbox is found and undone at the next start.
CREATING = "creating"
READY = "ready"
NOTREADY = "notready"


class NamespaceMode(Enum):
    POD = "pod"
    CONTAINER = "container"
    NODE = "node"
    TARGET = "target"


@dataclass(frozen=True)
class PodMetadata:
    name: str
    uid: str
    namespace: str
    attempt: int = 0


@dataclass(frozen=True)
class PortMapping:
    container_port: int
    host_port: int = 0
    protocol: str = "tcp"
    host_ip: str = ""


@dataclass(frozen=True)
class DNSSettings:
    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def empty(self) -> bool:
        return not (self.servers or self.searches or self.options)


@dataclass(frozen=True)
class Resources:
    """The pod-level subset of CRI's LinuxContainerResources; 0 / "" means unset."""

    cpu_period: int = 0
    cpu_quota: int = 0
    cpu_shares: int = 0
    memory_limit_in_bytes: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""


@dataclass(frozen=True)
class PodConfig:
    metadata: PodMetadata
    hostname: str = ""
    log_directory: str = ""
    dns: DNSSettings = field(default_factory=DNSSettings)
    port_mappings: tuple[PortMapping, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    cgroup_parent: str = ""
    sysctls: dict[str, str] = field(default_factory=dict)
    network: NamespaceMode = NamespaceMode.POD
    pid: NamespaceMode = NamespaceMode.POD
    ipc: NamespaceMode = NamespaceMode.POD
    target_id: str = ""
    user_namespace: NamespaceMode = NamespaceMode.NODE
    # With user_namespace POD: how the pod's user namespace maps its ids to the host's.
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()
    overhead: Resources | None = None
    resources: Resources | None = None
    privileged: bool = False

    @property
    def host_network(self) -> bool:
        return self.network is NamespaceMode.NODE

    @property
    def host_ipc(self) -> bool:
        return self.ipc is NamespaceMode.NODE

    @property
    def shares_pid(self) -> bool:
        return self.pid is NamespaceMode.POD

    @property
    def own_user_namespace(self) -> bool:
        return self.user_namespace is NamespaceMode.POD

    def host_root(self) -> tuple[int, int]:
        """The host uid and gid that root of the pod's user namespace is."""
        uid = next(m.host_id for m in self.uid_mappings if m.container_id == 0)
        gid = next(m.host_id for m in self.gid_mappings if m.container_id == 0)
        return uid, gid

    def to_doc(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        for key in ("network", "pid", "ipc", "user_namespace"):
            doc[key] = getattr(self, key).value
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> PodConfig:
        def resources(raw: dict[str, Any] | None) -> Resources | None:
            return None if raw is None else Resources(**raw)

        return cls(
            metadata=PodMetadata(**doc["metadata"]),
            hostname=doc["hostname"],
            log_directory=doc["log_directory"],
            dns=DNSSettings(**{k: tuple(v) for k, v in doc["dns"].items()}),
            port_mappings=tuple(PortMapping(**p) for p in doc["port_mappings"]),
            labels=dict(doc["labels"]),
            annotations=dict(doc["annotations"]),
            cgroup_parent=doc["cgroup_parent"],
            sysctls=dict(doc["sysctls"]),
            network=NamespaceMode(doc["network"]),
            pid=NamespaceMode(doc["pid"]),
            ipc=NamespaceMode(doc["ipc"]),
            target_id=doc["target_id"],
            user_namespace=NamespaceMode(doc["user_namespace"]),
            uid_mappings=tuple(IdMapping(**m) for m in doc.get("uid_mappings", ())),
            gid_mappings=tuple(IdMapping(**m) for m in doc.get("gid_mappings", ())),
            overhead=resources(doc["overhead"]),
            resources=resources(doc["resources"]),
            privileged=doc["privileged"],
        )


@dataclass
class PodSandbox:
    """One pod as persisted under kind "pod". Paths are decided before anything is made,
    so that teardown knows where to look even when creation stopped half-way."""

    id: str
    config: PodConfig
    runtime_handler: str
    state: str
    created_ns: int
    dir: str  # run_dir/pods/<id>: pins, shm and the pod files
    hostname: str  # the effective one (config's, or derived)
    pins: dict[str, str] = field(default_factory=dict)  # "net"/"ipc"/"uts" → pin path
    pause_pid: int = 0  # the pause process (PID 1 when the pod shares PID); 0 = none
    pause_start_time: int = 0
    shm_path: str = ""  # the pod's /dev/shm tmpfs; "" with host IPC
    cgroup_parent: str = ""  # the pod cgroup: containers go below it; "" = unmanaged
    cgroup_owned: bool = False  # crisp made the pod cgroup (no cgroup_parent given)
    infra_cgroup: str = ""  # the pause process's cgroup below cgroup_parent
    network_attached: bool = False  # CNI ADD done and not yet torn down
    network_name: str = ""
    ips: list[str] = field(default_factory=list)  # primary first

    @property
    def netns_path(self) -> str:
        return self.pins.get("net", "")

    @property
    def hostname_path(self) -> str:
        return f"{self.dir}/hostname"

    @property
    def hosts_path(self) -> str:
        return f"{self.dir}/hosts"

    @property
    def resolv_conf_path(self) -> str:
        return f"{self.dir}/resolv.conf"

    def to_doc(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        doc["config"] = self.config.to_doc()
        for key in ("id", "state", "created_ns"):
            del doc[key]  # the record holds these itself
        return doc

    @classmethod
    def from_doc(cls, id: str, state: str, created_ns: int, doc: dict[str, Any]) -> PodSandbox:
        fields = {f.name for f in dataclasses.fields(cls)} - {"id", "state", "created_ns"}
        values = {k: v for k, v in doc.items() if k in fields}
        values["config"] = PodConfig.from_doc(doc["config"])
        return cls(id=id, state=state, created_ns=created_ns, **values)
