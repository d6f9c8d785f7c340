"""Checks on a RunPodSandbox config before anything is made; each failure names the field."""

from __future__ import annotations

import ipaddress
import re

from runtime.cgroups.manager import normalize
from sandbox.errors import InvalidArgument, Unimplemented
from sandbox.pod import NamespaceMode, PodConfig

# RFC 1123 labels joined by dots; sethostname(2) takes at most 64 bytes.
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_HOSTNAME_MAX = 64
_SYSCTL_NAME = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9_.\-/]*$")
_PROTOCOLS = ("tcp", "udp", "sctp")

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
    if config.user_namespace is NamespaceMode.POD:
        raise Unimplemented(
            f"{where}.userns_options: user namespaces (mode POD with uid/gid mappings) are not "
            "supported by crisp"
        )
    if config.user_namespace is not NamespaceMode.NODE:
        raise InvalidArgument(
            f"{where}.userns_options: mode {config.user_namespace.name} is not valid for a pod"
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
