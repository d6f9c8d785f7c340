"""What a client asks of a container, in domain terms (the CRI ContainerConfig without protobuf).

cri/ converts the protobuf message into these; sandbox/ decides what they mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from runtime.spec import IdMapping


class Propagation(Enum):
    PRIVATE = "private"
    HOST_TO_CONTAINER = "host-to-container"
    BIDIRECTIONAL = "bidirectional"


class NamespaceMode(Enum):
    POD = "pod"
    CONTAINER = "container"
    NODE = "node"
    TARGET = "target"


@dataclass(frozen=True)
class MountRequest:
    container_path: str
    host_path: str = ""
    readonly: bool = False
    recursive_read_only: bool = False
    propagation: Propagation = Propagation.PRIVATE
    selinux_relabel: bool = False
    image: str = ""  # an image volume: mount this image's root instead of a host path
    image_sub_path: str = ""


@dataclass(frozen=True)
class DeviceRequest:
    container_path: str
    host_path: str
    permissions: str = "rwm"


@dataclass(frozen=True)
class HugepageLimit:
    page_size: str
    limit: int


@dataclass(frozen=True)
class Resources:
    cpu_period: int = 0
    cpu_quota: int = 0
    cpu_shares: int = 0
    memory_limit: int = 0
    memory_swap_limit: int = 0
    oom_score_adj: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    hugepage_limits: tuple[HugepageLimit, ...] = ()
    unified: Mapping[str, str] = field(default_factory=dict)


ProfileKind = Literal["runtime-default", "unconfined", "localhost"]


@dataclass(frozen=True)
class SecurityProfile:
    kind: ProfileKind
    localhost_ref: str = ""


@dataclass(frozen=True)
class UserNamespaceRequest:
    mode: NamespaceMode
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()


@dataclass(frozen=True)
class NamespaceOptions:
    network: NamespaceMode = NamespaceMode.POD
    pid: NamespaceMode = NamespaceMode.CONTAINER
    ipc: NamespaceMode = NamespaceMode.POD
    target_id: str = ""
    user: UserNamespaceRequest | None = None  # None: the pod's, whatever it is


@dataclass(frozen=True)
class SecurityContext:
    privileged: bool = False
    add_capabilities: tuple[str, ...] = ()
    drop_capabilities: tuple[str, ...] = ()
    add_ambient_capabilities: tuple[str, ...] = ()
    namespaces: NamespaceOptions = field(default_factory=NamespaceOptions)
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_username: str = ""
    readonly_rootfs: bool = False
    supplemental_groups: tuple[int, ...] = ()
    supplemental_groups_policy: Literal["merge", "strict"] = "merge"
    no_new_privs: bool = False
    # Empty means the defaults (as on the wire, where an empty list cannot be told from none).
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    seccomp: SecurityProfile | None = None
    apparmor: SecurityProfile | None = None


@dataclass(frozen=True)
class ContainerRequest:
    name: str
    attempt: int = 0
    image: str = ""
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    working_dir: str = ""
    envs: tuple[tuple[str, str], ...] = ()
    mounts: tuple[MountRequest, ...] = ()
    devices: tuple[DeviceRequest, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    log_path: str = ""
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    resources: Resources = field(default_factory=Resources)
    security: SecurityContext = field(default_factory=SecurityContext)
    stop_signal: str = ""  # e.g. "SIGTERM"; empty means the image's, then SIGTERM
