"""Checks on a RunPodSandbox config before anything is made; each failure names the field."""

from __future__ import annotations

import ipaddress
import re

from runtime.cgroups.manager import normalize
from runtime.spec import IdMapping
from sandbox.errors import InvalidArgument
from sandbox.pod import NamespaceMode, PodConfig

# RFC 1123 labels joined by dots; sethostname(2) takes at most 64 bytes.
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_HOSTNAME_MAX = 64
_SYSCTL_NAME = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9_.\-/]*$")
_PROTOCOLS = ("tcp", "udp", "sctp")
# kubelet gives every pod with its own user namespace 65536 ids: all an image's files use.
_MIN_USERNS_IDS = 65536
_ID_LIMIT = 1 << 32  # ids are 32-bit; (uid_t)-1 is never valid

# Sysctls that belong to a namespace a pod can own (as kubelet and runc classify them).
_IPC_SYSCTLS = frozenset(
    (
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
    )
)


def sysctl_namespace(name: str) -> str | None:
    """ "net" or "ipc" for a namespaced sysctl, None for a node-wide one."""
    dotted = name.replace("/", ".")
    if dotted.startswith("net."):
        return "net"
    if dotted in _IPC_SYSCTLS or dotted.startswith("fs.mqueue."):
        return "ipc"
    return None


def validate(config: PodConfig) -> None:
    meta = config.metadata
    for field_name in ("name", "namespace", "uid"):
        if not getattr(meta, field_name):
            raise InvalidArgument(f"pod sandbox config: metadata.{field_name} is required")
    hostname = config.hostname
    if hostname and (len(hostname) > _HOSTNAME_MAX or not _HOSTNAME.match(hostname)):
        raise InvalidArgument(
            f"pod sandbox config: hostname {hostname!r} is not a valid host name "
            f"(RFC 1123, at most {_HOSTNAME_MAX} characters)"
        )
    _validate_namespaces(config)
    _validate_dns(config)
    for index, port in enumerate(config.port_mappings):
        where = f"pod sandbox config: port_mappings[{index}]"
        if not 0 < port.container_port < 65536:
            raise InvalidArgument(f"{where}: container_port {port.container_port} out of range")
        if not 0 <= port.host_port < 65536:
            raise InvalidArgument(f"{where}: host_port {port.host_port} out of range")
        if port.protocol not in _PROTOCOLS:
            raise InvalidArgument(f"{where}: unknown protocol {port.protocol!r}")
        if port.host_ip:
            _ip(port.host_ip, f"{where}: host_ip")
    if config.cgroup_parent:
        try:
            normalize(config.cgroup_parent)
        except ValueError as e:
            raise InvalidArgument(f"pod sandbox config: linux.cgroup_parent: {e}") from None
    for name, value in config.sysctls.items():
        _validate_sysctl(config, name, value)


def _validate_namespaces(config: PodConfig) -> None:
    where = "pod sandbox config: linux.security_context.namespace_options"
    for field_name, mode in (("network", config.network), ("ipc", config.ipc)):
        if mode not in (NamespaceMode.POD, NamespaceMode.NODE):
            raise InvalidArgument(f"{where}.{field_name}: mode {mode.name} is not valid for a pod")
    if config.pid is NamespaceMode.TARGET:
        raise InvalidArgument(f"{where}.pid: mode TARGET is only valid for containers")
    _validate_user_namespace(config, f"{where}.userns_options")


def _validate_user_namespace(config: PodConfig, where: str) -> None:
    mode = config.user_namespace
    if mode is NamespaceMode.NODE:
        if config.uid_mappings or config.gid_mappings:
            raise InvalidArgument(
                f"{where}: uids/gids mappings are given but mode is NODE (the node's user "
                "namespace cannot be mapped); use mode POD"
            )
        return
    if mode is not NamespaceMode.POD:
        raise InvalidArgument(
            f"{where}: mode {mode.name} is not supported for a pod (only NODE, or POD with "
            "uids/gids mappings)"
        )
    for kind, namespace_mode in (
        ("network", config.network),
        ("pid", config.pid),
        ("ipc", config.ipc),
    ):
        if namespace_mode is NamespaceMode.NODE:
            raise InvalidArgument(
                f"{where}: a pod with its own user namespace cannot use the node's {kind} "
                "namespace (hostUsers: false excludes hostNetwork, hostPID and hostIPC)"
            )
    for kind, mappings in (("uids", config.uid_mappings), ("gids", config.gid_mappings)):
        _validate_mappings(mappings, f"{where}.{kind}")


def _validate_mappings(mappings: tuple[IdMapping, ...], where: str) -> None:
    if len(mappings) != 1:
        raise InvalidArgument(
            f"{where}: mode POD needs exactly one mapping (kubelet sends one), got {len(mappings)}"
        )
    mapping = mappings[0]
    if mapping.container_id != 0:
        raise InvalidArgument(
            f"{where}[0]: container_id must be 0 (root of the pod must be mapped), got "
            f"{mapping.container_id}"
        )
    if mapping.size < _MIN_USERNS_IDS:
        raise InvalidArgument(
            f"{where}[0]: length {mapping.size} is too short: at least {_MIN_USERNS_IDS} ids "
            "(0-65535, the ids an image's files may use) must be mapped"
        )
    if mapping.host_id == 0:
        raise InvalidArgument(
            f"{where}[0]: host_id 0 would make root of the pod the node's root; map it to "
            "an unprivileged range"
        )
    if mapping.host_id + mapping.size >= _ID_LIMIT:
        raise InvalidArgument(
            f"{where}[0]: host ids {mapping.host_id}-{mapping.host_id + mapping.size - 1} go "
            f"beyond the largest id {_ID_LIMIT - 2}"
        )


def _validate_dns(config: PodConfig) -> None:
    where = "pod sandbox config: dns_config"
    for server in config.dns.servers:
        _ip(server, f"{where}.servers")
    for field_name, values in (("searches", config.dns.searches), ("options", config.dns.options)):
        for value in values:
            # each entry is one word of resolv.conf: whitespace would forge another one
            if not value or any(c.isspace() for c in value) or "#" in value or ";" in value:
                raise InvalidArgument(f"{where}.{field_name}: invalid entry {value!r}")


def _ip(value: str, where: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise InvalidArgument(f"{where}: {value!r} is not an IP address") from None


def _validate_sysctl(config: PodConfig, name: str, value: str) -> None:
    where = "pod sandbox config: linux.sysctls"
    if not _SYSCTL_NAME.match(name) or ".." in name or "//" in name:
        raise InvalidArgument(f"{where}: invalid sysctl name {name!r}")
    if "\n" in value or "\0" in value:
        raise InvalidArgument(f"{where}: invalid value for {name}: {value!r}")
    namespace = sysctl_namespace(name)
    if namespace is None:
        raise InvalidArgument(
            f"{where}: {name} is not namespaced; a pod can only set net.*, kernel.shm*, "
            "kernel.msg*, kernel.sem and fs.mqueue.* sysctls"
        )
    if namespace == "net" and config.host_network:
        raise InvalidArgument(f"{where}: {name} needs the pod's own network namespace")
    if namespace == "ipc" and config.host_ipc:
        raise InvalidArgument(f"{where}: {name} needs the pod's own IPC namespace")
