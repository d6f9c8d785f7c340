"""A pod on the CNI network: what the sandbox hands to NetworkManager, and what it keeps."""

from __future__ import annotations

import re

from cni.errors import CNIError
from cni.network import Bandwidth, NetworkManager, PodDNS, PortMapping
from sandbox.errors import InvalidArgument, Unavailable
from sandbox.pod import PodSandbox

INGRESS_BANDWIDTH = "kubernetes.io/ingress-bandwidth"
EGRESS_BANDWIDTH = "kubernetes.io/egress-bandwidth"
# As CRI-O and containerd: a rate-limited pod may burst by 4 Gib before it is throttled.
_BURST_BITS = 2**32 - 1

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)$")
_SUFFIXES = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def parse_quantity(text: str) -> int:
    """A Kubernetes resource quantity ("10M", "1.5Gi", "1000") as an integer."""
    # Imported here, not at module level: only pods with bandwidth annotations get here,
    # and decimal (with its C library) would cost every daemon ~0.3 MB of memory.
    from decimal import Decimal, InvalidOperation

    match = _QUANTITY.match(text.strip())
    if match is None or match.group(2) not in _SUFFIXES:
        raise ValueError(f"{text!r} is not a quantity")
    try:
        value = Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a quantity") from None
    return int(value)


def bandwidth(annotations: dict[str, str]) -> Bandwidth | None:
    rates: dict[str, int] = {}
    for key in (INGRESS_BANDWIDTH, EGRESS_BANDWIDTH):
        if key in annotations:
            try:
                rates[key] = parse_quantity(annotations[key])
            except ValueError as e:
                raise InvalidArgument(f"pod sandbox config: annotation {key}: {e}") from None
            if rates[key] <= 0:
                raise InvalidArgument(f"pod sandbox config: annotation {key} must be positive")
    if not rates:
        return None
    ingress, egress = rates.get(INGRESS_BANDWIDTH, 0), rates.get(EGRESS_BANDWIDTH, 0)
    return Bandwidth(
        ingress_rate=ingress,
        ingress_burst=_BURST_BITS if ingress else 0,
        egress_rate=egress,
        egress_burst=_BURST_BITS if egress else 0,
    )


def _port_mappings(pod: PodSandbox) -> list[PortMapping]:
    # Ports without a host port are informational only (kubelet sends every declared port).
    return [
        PortMapping(p.host_port, p.container_port, p.protocol, p.host_ip)
        for p in pod.config.port_mappings
        if p.host_port
    ]


def attach(network: NetworkManager, pod: PodSandbox) -> None:
    config = pod.config
    meta = config.metadata
    dns = config.dns
    pod_dns = PodDNS(list(dns.servers), list(dns.searches), list(dns.options))
    try:
        result = network.setup(
            pod.id,
            pod.netns_path,
            meta.namespace,
            meta.name,
            meta.uid,
            port_mappings=_port_mappings(pod),
            bandwidth=bandwidth(config.annotations),
            dns=None if dns.empty() else pod_dns,
            cgroup_path=pod.cgroup_parent,
            annotations=config.annotations,
        )
    except CNIError as e:
        raise Unavailable(f"pod sandbox {pod.id}: network setup failed: {e}") from e
    pod.network_attached = True
    pod.network_name = result.network
    pod.ips = result.pod_ips


def detach(network: NetworkManager, pod: PodSandbox) -> None:
    meta = pod.config.metadata
    try:
        network.teardown(
            pod.id,
            pod.netns_path,
            meta.namespace,
            meta.name,
            meta.uid,
            port_mappings=_port_mappings(pod),
        )
    except CNIError as e:
        raise Unavailable(f"pod sandbox {pod.id}: network teardown failed: {e}") from e
    pod.network_attached = False
