"""NetworkManager against fake plugins: selection, readiness, setup/teardown flows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cni.errors import CNIError, PluginError
from cni.network import Bandwidth, NetworkManager, PodDNS, PortMapping

MakePlugin = Callable[..., Path]
WriteConf = Callable[..., Path]
Calls = Callable[[], list[str]]
EnvOf = Callable[[str, str], dict[str, str]]
StdinOf = Callable[[str, str], dict[str, Any]]
ResultDoc = Callable[..., dict[str, Any]]


def conflist(
    name: str = "podnet", version: str = "1.0.0", types: tuple[str, ...] = ("main", "ports")
) -> dict[str, Any]:
    plugins: list[dict[str, Any]] = [{"type": t} for t in types]
    plugins[-1]["capabilities"] = {"portMappings": True, "bandwidth": True, "dns": True}
    return {"cniVersion": version, "name": name, "plugins": plugins}


@pytest.fixture
def conf_dir(write_conf: WriteConf) -> Path:
    return write_conf("00-placeholder.txt", "").parent


@pytest.fixture
def manager_for(conf_dir: Path, fake_bin: Path, tmp_path: Path) -> Callable[..., NetworkManager]:
    def make(**kw: Any) -> NetworkManager:
        return NetworkManager(conf_dir, [str(fake_bin)], tmp_path / "cache", **kw)

    return make


@pytest.fixture
def plugins(make_plugin: MakePlugin, result_doc: ResultDoc) -> None:
    make_plugin("loopback", add=result_doc(ip="127.0.0.1/8", ifname="lo"))
    make_plugin("main")
    make_plugin("ports")


def setup_pod(m: NetworkManager, netns: str = "/proc/self/ns/net", **kw: Any) -> Any:
    return m.setup("pod1", netns, "default", "web-0", "uid-1", **kw)


def test_status_without_config(
    manager_for: Callable[..., NetworkManager], write_conf: WriteConf, plugins: None
) -> None:
    write_conf("10-bad.conflist", "{")
    st = manager_for().status()
    assert not st.ready
    assert st.reason == "NetworkPluginNotReady"
    assert "no valid CNI network config in" in st.message
    assert "10-bad.conflist" in st.message and "invalid JSON" in st.message


def test_status_reloads_when_config_appears(
    manager_for: Callable[..., NetworkManager], write_conf: WriteConf, plugins: None
) -> None:
    m = manager_for()
    assert not m.status().ready
    write_conf("10-net.conflist", conflist())
    assert m.status().ready
    assert m.network is not None and m.network.name == "podnet"


def test_status_missing_plugin(
    manager_for: Callable[..., NetworkManager], write_conf: WriteConf, make_plugin: MakePlugin
) -> None:
    make_plugin("main")
    write_conf("10-net.conflist", conflist())
    st = manager_for().status()
    assert not st.ready
    assert "CNI plugins ports, loopback not found in" in st.message
    assert not manager_for(loopback=False).status().ready
    make_plugin("ports")
    assert manager_for(loopback=False).status().ready


def test_status_runs_plugin_status_for_110(
    manager_for: Callable[..., NetworkManager],
    write_conf: WriteConf,
    plugins: None,
    make_plugin: MakePlugin,
) -> None:
    write_conf("10-net.conflist", conflist(version="1.1.0"))
    assert manager_for().status().ready
    err = {"code": 50, "msg": "daemon not running"}
    make_plugin("ports", **{"STATUS.out": json.dumps(err), "STATUS.rc": "1"})
    st = manager_for().status()
    assert not st.ready
    assert "daemon not running" in st.message and "code 50" in st.message


def test_selection_prefers_installed_plugins_and_honours_default(
    manager_for: Callable[..., NetworkManager], write_conf: WriteConf, plugins: None
) -> None:
    write_conf("10-exotic.conflist", conflist(name="exotic", types=("absent",)))
    write_conf("20-net.conflist", conflist(name="podnet"))
    write_conf("30-other.conflist", conflist(name="other"))
    m = manager_for()
    assert m.network is not None and m.network.name == "podnet"
    named = manager_for(default_network="other")
    assert named.network is not None and named.network.name == "other"
    absent = manager_for(default_network="nope")
    assert absent.network is None
    assert "network 'nope'" in absent.status().message


def test_setup_runs_loopback_then_network(
    manager_for: Callable[..., NetworkManager],
    write_conf: WriteConf,
    plugins: None,
    calls: Calls,
    env_of: EnvOf,
    stdin_of: StdinOf,
) -> None:
    write_conf("10-net.conflist", conflist())
    res = setup_pod(
        manager_for(),
        port_mappings=[PortMapping(8080, 80), PortMapping(5353, 53, "UDP", "127.0.0.1")],
        bandwidth=Bandwidth(ingress_rate=1_000_000, ingress_burst=0),
        dns=PodDNS(servers=["10.96.0.10"], searches=["svc"]),
    )
    assert calls() == ["loopback ADD", "main ADD", "ports ADD"]
    assert str(res.pod_ip) == "10.88.0.5"
    assert res.pod_ips == ["10.88.0.5"]
    assert res.network == "podnet" and res.ifname == "eth0"
    assert env_of("loopback", "ADD")["CNI_IFNAME"] == "lo"
    env = env_of("main", "ADD")
    assert env["CNI_IFNAME"] == "eth0"
    assert env["CNI_NETNS"] == "/proc/self/ns/net"
    assert env["CNI_ARGS"] == (
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;"
        "K8S_POD_INFRA_CONTAINER_ID=pod1;K8S_POD_UID=uid-1"
    )
    assert "runtimeConfig" not in stdin_of("main", "ADD")
    rc = stdin_of("ports", "ADD")["runtimeConfig"]
    assert rc["portMappings"] == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
    ]
    assert rc["bandwidth"] == {"ingressRate": 1_000_000}
    assert rc["dns"] == {"servers": ["10.96.0.10"], "searches": ["svc"], "options": []}


def test_setup_failure_cleans_up(
    manager_for: Callable[..., NetworkManager],
    write_conf: WriteConf,
    plugins: None,
    make_plugin: MakePlugin,
    calls: Calls,
) -> None:
    write_conf("10-net.conflist", conflist())
    make_plugin("ports", **{"ADD.rc": "1", "ADD.out": json.dumps({"code": 11, "msg": "busy"})})
    m = manager_for()
    with pytest.raises(PluginError, match="busy"):
        setup_pod(m)
    assert calls() == [
        "loopback ADD",
        "main ADD",
        "ports ADD",
        "ports DEL",
        "main DEL",
        "loopback DEL",
    ]
    assert m.client.cache.entries() == []


def test_setup_without_network(manager_for: Callable[..., NetworkManager]) -> None:
    with pytest.raises(CNIError, match="no valid CNI network config"):
        setup_pod(manager_for())


def test_teardown_after_restart_uses_cache_only(
    manager_for: Callable[..., NetworkManager],
    write_conf: WriteConf,
    plugins: None,
    calls: Calls,
    env_of: EnvOf,
    stdin_of: StdinOf,
) -> None:
    path = write_conf("10-net.conflist", conflist())
    setup_pod(manager_for(), port_mappings=[PortMapping(8080, 80)])
    path.unlink()  # the config is gone; only the cache knows the network
    restarted = manager_for()
    assert restarted.network is None
    cached = restarted.cached_result("pod1")
    assert cached is not None and str(cached.pod_ip) == "10.88.0.5"
    restarted.teardown("pod1", "/var/run/netns/gone-already")
    assert calls()[3:] == ["ports DEL", "main DEL", "loopback DEL"]
    env = env_of("main", "DEL")
    assert "CNI_NETNS" not in env  # the netns is gone: plugins clean up what they can
    assert "K8S_POD_NAME=web-0" in env["CNI_ARGS"]  # arguments from ADD time
    ports_in = stdin_of("ports", "DEL")
    assert ports_in["prevResult"]["ips"][0]["address"] == "10.88.0.5/24"
    assert ports_in["runtimeConfig"]["portMappings"][0]["hostPort"] == 8080
    assert restarted.client.cache.entries() == []
    restarted.teardown("pod1", "")  # idempotent, nothing left to do
    assert calls()[6:] == []


def test_teardown_without_cache_uses_current_config(
    manager_for: Callable[..., NetworkManager],
    write_conf: WriteConf,
    plugins: None,
    calls: Calls,
    stdin_of: StdinOf,
    env_of: EnvOf,
) -> None:
    write_conf("10-net.conflist", conflist())
    manager_for().teardown("pod1", "/proc/self/ns/net", "default", "web-0", "uid-1")
    assert calls() == ["ports DEL", "main DEL"]
    assert "prevResult" not in stdin_of("main", "DEL")
    assert env_of("main", "DEL")["CNI_NETNS"] == "/proc/self/ns/net"


def test_teardown_error_is_raised_and_cache_kept(
    manager_for: Callable[..., NetworkManager],
    write_conf: WriteConf,
    plugins: None,
    make_plugin: MakePlugin,
    calls: Calls,
) -> None:
    write_conf("10-net.conflist", conflist())
    m = manager_for()
    setup_pod(m)
    make_plugin("main", **{"DEL.rc": "1"})
    with pytest.raises(PluginError):
        m.teardown("pod1", "")
    assert "loopback DEL" in calls()  # other networks still torn down
    assert [e.ifname for e in m.client.cache.entries("pod1")] == ["eth0"]


def test_check_and_gc(
    manager_for: Callable[..., NetworkManager],
    write_conf: WriteConf,
    plugins: None,
    calls: Calls,
) -> None:
    write_conf("10-net.conflist", conflist(version="1.1.0"))
    m = manager_for()
    setup_pod(m)
    m.check("pod1", "/proc/self/ns/net")
    assert calls()[-2:] == ["main CHECK", "ports CHECK"]
    m.gc(["pod1"])
    assert len(m.client.cache.entries("pod1")) == 2
    m.gc([])
    assert m.client.cache.entries() == []
    assert "main GC" in calls() and "loopback DEL" in calls()
