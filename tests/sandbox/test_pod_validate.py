"""Validation of RunPodSandbox configs: each refusal names the field at fault."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from runtime.spec import IdMapping
from sandbox.errors import InvalidArgument
from sandbox.pod import DNSSettings, NamespaceMode, PodConfig, PodMetadata, PortMapping
from sandbox.pod_validate import sysctl_namespace, validate

GOOD = PodConfig(PodMetadata(name="web", uid="u1", namespace="default"))


def config(**changes: Any) -> PodConfig:
    return dataclasses.replace(GOOD, **changes)


def test_a_minimal_config_is_valid() -> None:
    validate(GOOD)
    validate(config(hostname="web-0.example", sysctls={"net.core.somaxconn": "1024"}))


@pytest.mark.parametrize("missing", ["name", "uid", "namespace"])
def test_metadata_fields_are_required(missing: str) -> None:
    blank: dict[str, Any] = {missing: ""}
    meta = dataclasses.replace(GOOD.metadata, **blank)
    with pytest.raises(InvalidArgument, match=f"metadata.{missing} is required"):
        validate(config(metadata=meta))


@pytest.mark.parametrize("hostname", ["Web", "-web", "web_0", "a" * 65, "web..x", "web-"])
def test_bad_hostnames(hostname: str) -> None:
    with pytest.raises(InvalidArgument, match="hostname"):
        validate(config(hostname=hostname))


@pytest.mark.parametrize(
    ("name", "namespace"),
    [
        ("net.ipv4.ip_forward", "net"),
        ("net/ipv4/ping_group_range", "net"),
        ("kernel.shmmax", "ipc"),
        ("kernel.msgmni", "ipc"),
        ("kernel.sem", "ipc"),
        ("fs.mqueue.msg_max", "ipc"),
        ("kernel.panic", None),
        ("vm.swappiness", None),
        ("kernel.shmfoo", None),
    ],
)
def test_sysctl_namespaces(name: str, namespace: str | None) -> None:
    assert sysctl_namespace(name) == namespace


def test_sysctls_must_fit_the_pods_namespaces() -> None:
    with pytest.raises(InvalidArgument, match=r"kernel\.panic is not namespaced"):
        validate(config(sysctls={"kernel.panic": "1"}))
    with pytest.raises(InvalidArgument, match="own network namespace"):
        validate(config(network=NamespaceMode.NODE, sysctls={"net.core.somaxconn": "1"}))
    with pytest.raises(InvalidArgument, match="own IPC namespace"):
        validate(config(ipc=NamespaceMode.NODE, sysctls={"kernel.shmmax": "1"}))
    for name in ("net.ipv4/../../x", "net..x", "../net.x", "net.x y"):
        with pytest.raises(InvalidArgument, match="invalid sysctl name"):
            validate(config(sysctls={name: "1"}))
    with pytest.raises(InvalidArgument, match="invalid value"):
        validate(config(sysctls={"net.core.somaxconn": "1\nnet.x=2"}))


def test_namespace_modes() -> None:
    validate(config(network=NamespaceMode.NODE, ipc=NamespaceMode.NODE, pid=NamespaceMode.NODE))
    validate(config(pid=NamespaceMode.CONTAINER))
    with pytest.raises(InvalidArgument, match="network: mode CONTAINER"):
        validate(config(network=NamespaceMode.CONTAINER))
    with pytest.raises(InvalidArgument, match="pid: mode TARGET"):
        validate(config(pid=NamespaceMode.TARGET))


def test_user_namespace_mappings() -> None:
    ids = (IdMapping(0, 200000, 65536),)
    validate(config(user_namespace=NamespaceMode.POD, uid_mappings=ids, gid_mappings=ids))
    longer = (IdMapping(0, 1000, 100000),)  # what upstream critest sends
    validate(config(user_namespace=NamespaceMode.POD, uid_mappings=longer, gid_mappings=longer))
    bad: list[tuple[dict[str, Any], str]] = [
        ({"user_namespace": NamespaceMode.NODE, "uid_mappings": ids}, "mode is NODE"),
        ({"user_namespace": NamespaceMode.CONTAINER}, "mode CONTAINER is not supported"),
        ({"uid_mappings": ids}, "gids: mode POD needs exactly one mapping"),
        ({"uid_mappings": ids * 2, "gid_mappings": ids}, "uids: mode POD needs exactly one"),
        ({"uid_mappings": (IdMapping(1, 200000, 65536),), "gid_mappings": ids}, "container_id"),
        ({"uid_mappings": (IdMapping(0, 200000, 4096),), "gid_mappings": ids}, "too short"),
        ({"uid_mappings": (IdMapping(0, 0, 65536),), "gid_mappings": ids}, "node's root"),
        ({"uid_mappings": (IdMapping(0, 2**32 - 10, 65536),), "gid_mappings": ids}, "beyond"),
        ({"uid_mappings": ids, "gid_mappings": ids, "pid": NamespaceMode.NODE}, "node's pid"),
    ]
    for fields, words in bad:
        with pytest.raises(InvalidArgument, match=words):
            validate(config(**{"user_namespace": NamespaceMode.POD, **fields}))


def test_dns_entries() -> None:
    validate(config(dns=DNSSettings(servers=("10.0.0.10", "fd00::10"), options=("ndots:5",))))
    with pytest.raises(InvalidArgument, match=r"dns_config.servers: 'dns.example'"):
        validate(config(dns=DNSSettings(servers=("dns.example",))))
    with pytest.raises(InvalidArgument, match=r"dns_config\.searches"):
        validate(config(dns=DNSSettings(searches=("a.example\nnameserver 6.6.6.6",))))
    with pytest.raises(InvalidArgument, match=r"dns_config\.options"):
        validate(config(dns=DNSSettings(options=("",))))


def test_port_mappings() -> None:
    validate(config(port_mappings=(PortMapping(80, 8080, "udp", "127.0.0.1"),)))
    with pytest.raises(InvalidArgument, match=r"port_mappings\[0\]: container_port 0"):
        validate(config(port_mappings=(PortMapping(0),)))
    with pytest.raises(InvalidArgument, match="host_port 70000"):
        validate(config(port_mappings=(PortMapping(80, 70000),)))
    with pytest.raises(InvalidArgument, match="unknown protocol"):
        validate(config(port_mappings=(PortMapping(80, 80, "icmp"),)))
    with pytest.raises(InvalidArgument, match="host_ip"):
        validate(config(port_mappings=(PortMapping(80, 80, "tcp", "localhost"),)))


def test_cgroup_parent_cannot_climb() -> None:
    validate(config(cgroup_parent="/kubepods/besteffort/pod123"))
    with pytest.raises(InvalidArgument, match="cgroup_parent"):
        validate(config(cgroup_parent="/kubepods/../../etc"))
