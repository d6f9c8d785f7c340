"""Rendering of the files a pod's containers see as /etc/resolv.conf, /etc/hosts and
/etc/hostname."""

from __future__ import annotations

from pathlib import Path

from sandbox import pod_files
from sandbox.pod import DNSSettings


def test_resolv_conf_from_dns_config() -> None:
    dns = DNSSettings(
        servers=("10.96.0.10", "fd00::a"),
        searches=("ns.svc.cluster.local", "svc.cluster.local"),
        options=("ndots:5", "edns0"),
    )
    assert pod_files.resolv_conf(dns) == (
        "search ns.svc.cluster.local svc.cluster.local\n"
        "nameserver 10.96.0.10\n"
        "nameserver fd00::a\n"
        "options ndots:5 edns0\n"
    )


def test_resolv_conf_parts_are_optional() -> None:
    assert pod_files.render_resolv_conf(DNSSettings(servers=("1.1.1.1",))) == "nameserver 1.1.1.1\n"
    assert pod_files.render_resolv_conf(DNSSettings(options=("ndots:2",))) == "options ndots:2\n"


def test_resolv_conf_without_dns_config_is_the_hosts(tmp_path: Path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 192.0.2.53\n")
    assert pod_files.resolv_conf(DNSSettings(), host) == "nameserver 192.0.2.53\n"
    assert pod_files.resolv_conf(DNSSettings(), tmp_path / "missing") == ""


def test_hosts_names_the_pod_ips() -> None:
    text = pod_files.hosts(["10.1.2.3", "fd00::3"], "web-0", host_network=False)
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert "::1\tlocalhost ip6-localhost ip6-loopback" in lines
    assert lines[-2:] == ["10.1.2.3\tweb-0", "fd00::3\tweb-0"]


def test_hosts_of_a_host_network_pod_is_the_nodes(tmp_path: Path) -> None:
    host = tmp_path / "hosts"
    host.write_text("127.0.0.1 localhost node-1\n")
    text = pod_files.hosts([], "node-1", host_network=True, host_file=host)
    assert text == "127.0.0.1 localhost node-1\n"


def test_write_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "hostname"
    pod_files.write(target, "a\n")
    pod_files.write(target, "b\n")
    assert target.read_text() == "b\n"
    assert target.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostname"]
