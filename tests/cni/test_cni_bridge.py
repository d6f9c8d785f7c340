"""Integration with the real plugins (bridge + host-local + loopback + portmap) in a
network namespace this test creates. Traffic only flows between the host and that netns.
Everything created (netns, bridge, iptables chains, ip_forward) is undone even on failure.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute, NetNS, netns

from cni.errors import PluginError
from cni.network import NetworkManager, PodNetworkResult, PortMapping
from tests.hostnet import free_subnet, remove_portmap_chains, temporary_bridge

PLUGIN_DIR = "/usr/lib/cni"
CONTAINER_PORT = 8080

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0
    or not all(
        os.path.exists(f"{PLUGIN_DIR}/{p}") for p in ("bridge", "host-local", "loopback", "portmap")
    )
    or shutil.which("iptables-save") is None,
    reason="needs root, iptables and the CNI plugins in /usr/lib/cni",
)

Conflist = Callable[..., Path]


def _iptables_nat() -> str:
    out = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True)
    return out.stdout


@pytest.fixture
def host_guard() -> Iterator[None]:
    """Restores what the plugins change host-wide: ip_forward (bridge isGateway) and
    portmap's shared chains (which it creates once and never removes)."""
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    saved_forward = forward.read_text()
    had_portmap = "CNI-HOSTPORT-DNAT" in _iptables_nat()
    try:
        yield
    finally:
        forward.write_text(saved_forward)
        if not had_portmap:
            remove_portmap_chains()


@pytest.fixture
def pod_netns() -> Iterator[str]:
    name = f"crisp-cni-{secrets.token_hex(4)}"
    netns.create(name)
    path = f"/var/run/netns/{name}"
    try:
        yield path
    finally:
        if os.path.exists(path):
            netns.remove(name)


@pytest.fixture
def bridge_name() -> Iterator[str]:
    with temporary_bridge("crbr") as name:
        yield name


@pytest.fixture
def subnet() -> ipaddress.IPv4Network:
    return free_subnet()


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    path = tmp_path / "net.d"
    path.mkdir()
    return path


@pytest.fixture
def write_bridge_conf(
    conf_dir: Path, tmp_path: Path, bridge_name: str, subnet: ipaddress.IPv4Network
) -> Conflist:
    def write(version: str = "1.0.0", portmap: bool = True) -> Path:
        plugins: list[dict[str, Any]] = [
            {
                "type": "bridge",
                "bridge": bridge_name,
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(subnet)}]],
                    "dataDir": str(tmp_path / "ipam"),
                },
            }
        ]
        if portmap:
            plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
        doc = {"cniVersion": version, "name": "crisp-it", "plugins": plugins}
        path = conf_dir / "10-crisp-it.conflist"
        path.write_text(json.dumps(doc))
        return path

    return write


@pytest.fixture
def manager_for(conf_dir: Path, tmp_path: Path) -> Callable[[], NetworkManager]:
    def make() -> NetworkManager:
        return NetworkManager(conf_dir, [PLUGIN_DIR], tmp_path / "cache", plugin_timeout=30)

    return make


@pytest.fixture
def pod_id() -> str:
    return f"crisptest{secrets.token_hex(8)}"


@pytest.fixture
def torn_down(
    manager_for: Callable[[], NetworkManager], pod_id: str, pod_netns: str, host_guard: None
) -> Iterator[None]:
    """Runs teardown after the test whatever happened, then checks nothing is left."""
    try:
        yield
    finally:
        manager_for().teardown(pod_id, pod_netns)
        assert pod_id not in _iptables_nat()


def _addresses(netns_path: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with NetNS(netns_path) as ns:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ns.get_links()}
        for addr in ns.get_addr(family=socket.AF_INET):
            out.setdefault(names[addr["index"]], []).append(addr.get_attr("IFA_ADDRESS"))
    return out


def _link_up(netns_path: str, ifname: str) -> bool:
    with NetNS(netns_path) as ns:
        (link,) = ns.get_links(ifname=ifname)
        return bool(link["flags"] & 1)  # IFF_UP


def _host_link_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def _listener_in(netns_path: str) -> socket.socket:
    """A TCP listener inside the pod netns: a socket belongs to the netns of the thread
    that created it, so a short-lived thread enters the netns and makes it."""
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter() -> None:
        try:
            netns.setns(netns_path, flags=0)
            sock = socket.create_server(("0.0.0.0", CONTAINER_PORT))
            made.append(sock)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


def _exchange(listener: socket.socket, host: str, port: int) -> bytes:
    listener.settimeout(5)
    with socket.create_connection((host, port), timeout=5) as client:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"hello from the pod")
            return client.recv(100)


def _host_veths(result: PodNetworkResult, bridge: str) -> list[str]:
    return [i.name for i in result.result.interfaces if not i.sandbox and i.name != bridge]


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_setup_connect_teardown(
    version: str,
    write_bridge_conf: Conflist,
    manager_for: Callable[[], NetworkManager],
    pod_netns: str,
    pod_id: str,
    bridge_name: str,
    subnet: ipaddress.IPv4Network,
    tmp_path: Path,
    torn_down: None,
) -> None:
    write_bridge_conf(version)
    manager = manager_for()
    assert manager.status().ready, manager.status().message
    host_port = random.randint(20000, 29999)
    res = manager.setup(
        pod_id, pod_netns, "default", "web-0", "uid-1", [PortMapping(host_port, CONTAINER_PORT)]
    )
    assert res.result.cni_version == version
    assert res.pod_ip is not None and res.pod_ip in subnet
    gateway = subnet.network_address + 1

    addrs = _addresses(pod_netns)
    assert addrs["eth0"] == [str(res.pod_ip)]
    assert addrs["lo"] == ["127.0.0.1"]
    assert _link_up(pod_netns, "lo")
    (veth,) = _host_veths(res, bridge_name)
    assert _host_link_exists(veth)
    assert (tmp_path / "ipam" / "crisp-it" / str(res.pod_ip)).exists()
    assert pod_id in _iptables_nat()

    with _listener_in(pod_netns) as listener:
        # Straight over the bridge to the pod...
        assert _exchange(listener, str(res.pod_ip), CONTAINER_PORT) == b"hello from the pod"
        # ...and through portmap's DNAT of the host port on the bridge address.
        assert _exchange(listener, str(gateway), host_port) == b"hello from the pod"

    manager.teardown(pod_id, pod_netns, "default", "web-0", "uid-1")
    assert not _host_link_exists(veth)
    assert "eth0" not in _addresses(pod_netns)
    assert not (tmp_path / "ipam" / "crisp-it" / str(res.pod_ip)).exists()
    assert pod_id not in _iptables_nat()
    assert manager.client.cache.entries() == []


def test_del_after_restart_and_netns_gone(
    write_bridge_conf: Conflist,
    manager_for: Callable[..., NetworkManager],
    pod_netns: str,
    pod_id: str,
    bridge_name: str,
    tmp_path: Path,
    torn_down: None,
) -> None:
    conf = write_bridge_conf("1.0.0")
    res = manager_for().setup(
        pod_id, pod_netns, "default", "web-0", "uid-1", [PortMapping(23456, CONTAINER_PORT)]
    )
    (veth,) = _host_veths(res, bridge_name)
    ip_file = tmp_path / "ipam" / "crisp-it" / str(res.pod_ip)
    assert ip_file.exists()

    # The daemon "restarts" with the config gone and the pod's netns already removed:
    # only the cache can tell which network, IP and port mappings to release.
    conf.unlink()
    netns.remove(os.path.basename(pod_netns))
    restarted = manager_for()
    assert not restarted.status().ready
    cached = restarted.cached_result(pod_id)
    assert cached is not None and cached.pod_ip == res.pod_ip
    restarted.teardown(pod_id, pod_netns)

    assert not _host_link_exists(veth)
    assert not ip_file.exists()
    assert pod_id not in _iptables_nat()
    assert restarted.client.cache.entries() == []
    restarted.teardown(pod_id, pod_netns)  # a second DEL is harmless


def test_check_detects_a_broken_pod(
    write_bridge_conf: Conflist,
    manager_for: Callable[[], NetworkManager],
    pod_netns: str,
    pod_id: str,
    torn_down: None,
) -> None:
    # portmap 1.1.1 fails CHECK on IPv4-only pods (containernetworking/plugins#819),
    # so CHECK is exercised on the bridge alone.
    write_bridge_conf("1.0.0", portmap=False)
    manager = manager_for()
    res = manager.setup(pod_id, pod_netns, "default", "web-0", "uid-1")
    manager.check(pod_id, pod_netns)
    with NetNS(pod_netns) as ns:
        (idx,) = ns.link_lookup(ifname="eth0")
        ns.addr("del", index=idx, address=str(res.pod_ip), prefixlen=24)
    with pytest.raises(PluginError, match="bridge CHECK failed"):
        manager.check(pod_id, pod_netns)


def test_status_with_real_plugins(
    write_bridge_conf: Conflist, conf_dir: Path, tmp_path: Path
) -> None:
    write_bridge_conf("1.0.0")
    assert NetworkManager(conf_dir, [PLUGIN_DIR], tmp_path / "c").status().ready
    empty = tmp_path / "nobin"
    empty.mkdir()
    st = NetworkManager(conf_dir, [str(empty)], tmp_path / "c").status()
    assert not st.ready and "bridge, portmap, loopback not found" in st.message


@pytest.fixture
def many_netns() -> Iterator[list[str]]:
    names = [f"crisp-cni-{secrets.token_hex(4)}" for _ in range(4)]
    try:
        for name in names:
            netns.create(name)
        yield [f"/var/run/netns/{n}" for n in names]
    finally:
        for name in names:
            if os.path.exists(f"/var/run/netns/{name}"):
                netns.remove(name)


def test_parallel_pods(
    write_bridge_conf: Conflist,
    manager_for: Callable[[], NetworkManager],
    many_netns: list[str],
    bridge_name: str,
    host_guard: None,
) -> None:
    write_bridge_conf("1.0.0")
    manager = manager_for()
    pods = {f"crisppar{i}{secrets.token_hex(4)}": path for i, path in enumerate(many_netns)}
    try:
        with ThreadPoolExecutor(len(pods)) as pool:
            results = dict(
                zip(
                    pods,
                    pool.map(
                        lambda item: manager.setup(item[0], item[1], "ns", item[0], "uid"),
                        pods.items(),
                    ),
                    strict=True,
                )
            )
        assert len({r.pod_ip for r in results.values()}) == len(pods)
        for pod, res in results.items():
            assert _addresses(pods[pod])["eth0"] == [str(res.pod_ip)]
    finally:
        with ThreadPoolExecutor(len(pods)) as pool:
            list(pool.map(lambda item: manager.teardown(item[0], item[1]), pods.items()))
    assert manager.client.cache.entries() == []
    with IPRoute() as ipr:
        (bridge,) = ipr.link_lookup(ifname=bridge_name)
        ports = [link for link in ipr.get_links() if link.get_attr("IFLA_MASTER") == bridge]
    assert ports == []  # every pod's veth is gone
