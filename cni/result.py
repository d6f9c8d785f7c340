"""Typed CNI results, decoded from any supported spec version and encoded to any.

Internally a result always has the 1.1.0 shape; 0.3.x/0.4.0 differ only in the per-IP
`version` field (dropped since 1.0.0), and 1.1.0 added optional interface/route fields.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cni import version as cniver
from cni.errors import InvalidResultError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""  # empty for host-side interfaces
    mtu: int = 0  # 1.1.0
    socket_path: str = ""  # 1.1.0
    pci_id: str = ""  # 1.1.0


@dataclass(frozen=True)
class IPConfig:
    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None  # index into Result.interfaces


@dataclass(frozen=True)
class Route:
    dst: IPNetwork
    gw: IPAddress | None = None
    mtu: int = 0  # the remaining fields are 1.1.0
    advmss: int = 0
    priority: int = 0
    table: int | None = None
    scope: int | None = None


@dataclass(frozen=True)
class DNS:
    nameservers: list[str] = field(default_factory=list)
    domain: str = ""
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.nameservers or self.domain or self.search or self.options)


@dataclass(frozen=True)
class Result:
    cni_version: str
    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: DNS = field(default_factory=DNS)

    def ips_of(self, ifname: str) -> list[IPConfig]:
        """IPs of the sandbox interface `ifname`; results without interface indexes
        (IPAM-style) are taken to describe that interface entirely."""
        idx = {i for i, itf in enumerate(self.interfaces) if itf.name == ifname and itf.sandbox}
        if not idx:
            idx = {i for i, itf in enumerate(self.interfaces) if itf.name == ifname}
        return [ip for ip in self.ips if ip.interface is None or ip.interface in idx]

    def to_dict(self, version: str | None = None) -> dict[str, Any]:
        """Encode for `version` (default: the result's own), e.g. as a prevResult."""
        ver = version or self.cni_version
        if not cniver.is_supported(ver):
            raise InvalidResultError(f"cannot encode a result as unsupported version {ver!r}")
        new = cniver.at_least(ver, "1.1.0")
        out: dict[str, Any] = {"cniVersion": ver}
        if self.interfaces:
            out["interfaces"] = [_encode_interface(i, new) for i in self.interfaces]
        out["ips"] = [_encode_ip(ip, legacy=not cniver.at_least(ver, "1.0.0")) for ip in self.ips]
        if self.routes:
            out["routes"] = [_encode_route(r, new) for r in self.routes]
        if not self.dns.is_empty():
            out["dns"] = _encode_dns(self.dns)
        return out


def parse_result(data: Any, source: str = "plugin") -> Result:
    """Decode a result as printed by a plugin (or stored in the cache)."""
    if not isinstance(data, Mapping):
        raise InvalidResultError(f"{source}: result is not a JSON object")
    ver = data.get("cniVersion")
    if not isinstance(ver, str) or not cniver.is_supported(ver):
        raise InvalidResultError(
            f"{source}: result has unsupported cniVersion {ver!r} "
            f"(supported: {', '.join(cniver.SUPPORTED)})"
        )
    try:
        interfaces = [_decode_interface(i) for i in _list(data, "interfaces")]
        ips = [_decode_ip(ip) for ip in _list(data, "ips")]
        routes = [_decode_route(r) for r in _list(data, "routes")]
        dns = _decode_dns(data.get("dns") or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidResultError(f"{source}: malformed {ver} result: {exc}") from exc
    for ip in ips:
        if ip.interface is not None and not 0 <= ip.interface < len(interfaces):
            raise InvalidResultError(
                f"{source}: ip {ip.address} refers to interface {ip.interface}, "
                f"but the result has {len(interfaces)} interfaces"
            )
    return Result(ver, interfaces, ips, routes, dns)


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"field {key!r} is not a list")
    return value


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise TypeError(f"field {key!r} must be a string")
    return value


def _int(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"field {key!r} must be an integer")
    return value


def _strs(obj: Mapping[str, Any], key: str) -> list[str]:
    value = obj.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"field {key!r} must be a list of strings")
    return list(value)


def _addr(value: Any) -> IPAddress | None:
    if value in (None, ""):
        return None
    return ipaddress.ip_address(value)


def _decode_interface(obj: Any) -> Interface:
    if not isinstance(obj, Mapping):
        raise TypeError("interface is not an object")
    name = _str(obj, "name")
    if not name:
        raise ValueError("interface without a name")
    return Interface(
        name=name,
        mac=_str(obj, "mac"),
        sandbox=_str(obj, "sandbox"),
        mtu=_int(obj, "mtu") or 0,
        socket_path=_str(obj, "socketPath"),
        pci_id=_str(obj, "pciID"),
    )


def _decode_ip(obj: Any) -> IPConfig:
    if not isinstance(obj, Mapping):
        raise TypeError("ip is not an object")
    address = ipaddress.ip_interface(obj["address"])
    legacy = obj.get("version")  # 0.3.x/0.4.0 only; must agree with the address
    if legacy is not None and str(legacy) != str(address.version):
        raise ValueError(f"ip {address} declares version {legacy!r}")
    return IPConfig(
        address=address, gateway=_addr(obj.get("gateway")), interface=_int(obj, "interface")
    )


def _decode_route(obj: Any) -> Route:
    if not isinstance(obj, Mapping):
        raise TypeError("route is not an object")
    return Route(
        dst=ipaddress.ip_network(obj["dst"], strict=False),
        gw=_addr(obj.get("gw")),
        mtu=_int(obj, "mtu") or 0,
        advmss=_int(obj, "advmss") or 0,
        priority=_int(obj, "priority") or 0,
        table=_int(obj, "table"),
        scope=_int(obj, "scope"),
    )


def _decode_dns(obj: Any) -> DNS:
    if not isinstance(obj, Mapping):
        raise TypeError("dns is not an object")
    return DNS(
        nameservers=_strs(obj, "nameservers"),
        domain=_str(obj, "domain"),
        search=_strs(obj, "search"),
        options=_strs(obj, "options"),
    )


def _encode_interface(itf: Interface, new: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": itf.name}
    if itf.mac:
        out["mac"] = itf.mac
    if new and itf.mtu:
        out["mtu"] = itf.mtu
    if itf.sandbox:
        out["sandbox"] = itf.sandbox
    if new and itf.socket_path:
        out["socketPath"] = itf.socket_path
    if new and itf.pci_id:
        out["pciID"] = itf.pci_id
    return out


def _encode_ip(ip: IPConfig, legacy: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if legacy:
        out["version"] = str(ip.address.version)
    if ip.interface is not None:
        out["interface"] = ip.interface
    out["address"] = str(ip.address)
    if ip.gateway is not None:
        out["gateway"] = str(ip.gateway)
    return out


def _encode_route(route: Route, new: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"dst": str(route.dst)}
    if route.gw is not None:
        out["gw"] = str(route.gw)
    if new:
        for key, value in (
            ("mtu", route.mtu),
            ("advmss", route.advmss),
            ("priority", route.priority),
        ):
            if value:
                out[key] = value
        if route.table is not None:
            out["table"] = route.table
        if route.scope is not None:
            out["scope"] = route.scope
    return out


def _encode_dns(dns: DNS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if dns.nameservers:
        out["nameservers"] = list(dns.nameservers)
    if dns.domain:
        out["domain"] = dns.domain
    if dns.search:
        out["search"] = list(dns.search)
    if dns.options:
        out["options"] = list(dns.options)
    return out
