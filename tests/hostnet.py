"""Host network facts and clean-up shared by the tests and benchmarks that run real CNI
plugins: a free private subnet, and portmap's host-wide iptables chains."""

from __future__ import annotations

import contextlib
import ipaddress
import random
import secrets
import socket
import subprocess
from collections.abc import Iterator

from pyroute2 import IPRoute


@contextlib.contextmanager
def temporary_bridge(prefix: str) -> Iterator[str]:
    """A fresh bridge name for a test; the bridge, if something made it, is deleted after."""
    name = f"{prefix}{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=name):
                ipr.link("del", index=index)


def free_subnet() -> ipaddress.IPv4Network:
    """A 10.199.x.0/24 no address of this host is in (10.199.250-255 are kept for fixed
    configs in the tests)."""
    with IPRoute() as ipr:
        used = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=socket.AF_INET)}
    for third in random.sample(range(250), 250):
        net = ipaddress.IPv4Network(f"10.199.{third}.0/24")
        if not any(ipaddress.ip_address(u) in net for u in used):
            return net
    raise RuntimeError("no free 10.199.x.0/24")


def remove_portmap_chains() -> None:
    """Remove the chains the portmap plugin shares between all pods; only for callers that
    saw them absent before they started."""

    def ipt(*args: str) -> None:
        subprocess.run(["iptables", "-t", "nat", *args], capture_output=True, check=False)

    for hook in ("PREROUTING", "OUTPUT"):
        ipt("-D", hook, "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT")
    ipt(
        "-D", "POSTROUTING", "-m", "comment", "--comment",
        "CNI portfwd requiring masquerade", "-j", "CNI-HOSTPORT-MASQ",
    )  # fmt: skip
    for chain in ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"):
        ipt("-F", chain)
        ipt("-X", chain)
