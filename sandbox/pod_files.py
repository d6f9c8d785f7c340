"""The files a pod's containers bind-mount: /etc/hostname, /etc/hosts, /etc/resolv.conf."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from sandbox.pod import DNSSettings

HOST_RESOLV_CONF = Path("/etc/resolv.conf")
HOST_HOSTS = Path("/etc/hosts")

_LOCALHOST = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


def render_resolv_conf(dns: DNSSettings) -> str:
    lines = []
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    lines.extend(f"nameserver {server}" for server in dns.servers)
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "".join(line + "\n" for line in lines)


def render_hosts(ips: Sequence[str], hostname: str) -> str:
    return _LOCALHOST + "".join(f"{ip}\t{hostname}\n" for ip in ips)


def resolv_conf(dns: DNSSettings, host_file: Path = HOST_RESOLV_CONF) -> str:
    """The pod's resolv.conf: from its DNS config, or the host's when it gives none."""
    if dns.empty():
        return _read_host(host_file)
    return render_resolv_conf(dns)


def hosts(
    ips: Sequence[str], hostname: str, host_network: bool, host_file: Path = HOST_HOSTS
) -> str:
    """Host-network pods see the node's hosts file, like any process on the node."""
    if host_network:
        return _read_host(host_file)
    return render_hosts(ips, hostname)


def _read_host(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def write(path: str | Path, content: str) -> None:
    """Write via rename, so that a crash never leaves a half-written file."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(content)
    os.chmod(temporary, 0o644)
    os.replace(temporary, target)
