"""Plugin invocation against fake plugins: stdin, environment, chaining, errors."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cni.attachment import Attachment, k8s_args
from cni.cache import ResultCache
from cni.client import CNIClient
from cni.config import parse_conflist
from cni.errors import (
    CNIError,
    InvalidResultError,
    PluginError,
    PluginNotFoundError,
    PluginTimeoutError,
)
from cni.invoke import Runner, build_stdin, find_plugin, plugin_env, runtime_config
from cni.result import parse_result

MakePlugin = Callable[..., Path]
Calls = Callable[[], list[str]]
EnvOf = Callable[[str, str], dict[str, str]]
StdinOf = Callable[[str, str], dict[str, Any]]
ResultDoc = Callable[..., dict[str, Any]]

CAPS = {
    "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
    "bandwidth": {"ingressRate": 1000},
    "dns": {"servers": ["10.96.0.10"]},
    "cgroupPath": "/kubepods/pod1",
}


def network(version: str = "1.0.0", **extra: Any) -> Any:
    doc: dict[str, Any] = {
        "cniVersion": version,
        "name": "testnet",
        "plugins": [
            {"type": "first", "setting": 1, "capabilities": {"portMappings": True}},
            {"type": "second", "capabilities": {"bandwidth": True, "dns": False}},
        ],
    }
    doc.update(extra)
    return parse_conflist(doc, "test")


def attachment(netns: str = "/var/run/netns/pod", **kw: Any) -> Attachment:
    return Attachment(
        "abc123",
        netns,
        "eth0",
        k8s_args("default", "web-0", "abc123", "uid-1"),
        kw.pop("caps", CAPS),
    )


@pytest.fixture
def client(fake_bin: Path, tmp_path: Path) -> CNIClient:
    return CNIClient([str(tmp_path / "empty"), str(fake_bin)], ResultCache(tmp_path / "cache"))


def test_runtime_config_only_declared_capabilities() -> None:
    net = network()
    assert runtime_config(net.plugins[0], CAPS) == {"portMappings": CAPS["portMappings"]}
    # "dns": false in the config means not declared.
    assert runtime_config(net.plugins[1], CAPS) == {"bandwidth": {"ingressRate": 1000}}


def test_build_stdin_injects_name_version_prev_and_runtime_config(result_doc: ResultDoc) -> None:
    net = network("0.4.0")
    prev = parse_result(result_doc(version="1.0.0"))
    doc = json.loads(build_stdin(net.plugins[0], net.name, net.cni_version, prev, CAPS))
    assert doc["name"] == "testnet"
    assert doc["cniVersion"] == "0.4.0"
    assert doc["setting"] == 1
    assert doc["runtimeConfig"] == {"portMappings": CAPS["portMappings"]}
    # prevResult is converted to the list's version.
    assert doc["prevResult"]["cniVersion"] == "0.4.0"
    assert doc["prevResult"]["ips"][0]["version"] == "4"
    # No capability matched: no runtimeConfig key at all.
    bare = json.loads(build_stdin(net.plugins[0], "n", "1.0.0", None, {"bandwidth": {}}))
    assert "runtimeConfig" not in bare and "prevResult" not in bare


def test_cni_args_format() -> None:
    assert attachment().cni_args == (
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;"
        "K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=uid-1"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"container_id": "-bad"},
        {"container_id": ""},
        {"container_id": "a/b"},
        {"ifname": ""},
        {"ifname": "x" * 16},
        {"ifname": "a b"},
        {"ifname": ".."},
        {"ifname": "a/b"},
        {"args": (("K8S_POD_NAME", "a;b"),)},
        {"args": (("K8S_POD_NAME", "a=b"),)},
        {"args": (("", "x"),)},
    ],
)
def test_attachment_validation(kwargs: dict[str, Any]) -> None:
    base: dict[str, Any] = {"container_id": "abc", "netns": "/n", "ifname": "eth0"}
    with pytest.raises(CNIError):
        Attachment(**{**base, **kwargs})


def test_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNI_STALE", "1")
    monkeypatch.setenv("PATH", "/usr/sbin:/usr/bin")
    env = plugin_env("ADD", ["/a", "/b"], attachment())
    assert env["CNI_COMMAND"] == "ADD"
    assert env["CNI_CONTAINERID"] == "abc123"
    assert env["CNI_NETNS"] == "/var/run/netns/pod"
    assert env["CNI_IFNAME"] == "eth0"
    assert env["CNI_PATH"] == "/a:/b"
    assert env["CNI_ARGS"].startswith("IgnoreUnknown=1;")
    assert env["PATH"] == "/usr/sbin:/usr/bin"
    assert "CNI_STALE" not in env
    # A vanished netns is not passed at all.
    assert "CNI_NETNS" not in plugin_env("DEL", ["/a"], attachment(netns=""))
    with pytest.raises(CNIError, match="unknown CNI command"):
        plugin_env("FROB", ["/a"])


def test_find_plugin_searches_dirs_in_order(tmp_path: Path, make_plugin: MakePlugin) -> None:
    path = make_plugin("first")
    assert find_plugin("first", [str(tmp_path / "none"), str(path.parent)]) == str(path)
    path.chmod(0o644)
    with pytest.raises(PluginNotFoundError, match="'first' not found in"):
        find_plugin("first", [str(path.parent)])


def test_add_chains_in_order_and_caches(
    client: CNIClient,
    make_plugin: MakePlugin,
    calls: Calls,
    env_of: EnvOf,
    stdin_of: StdinOf,
    result_doc: ResultDoc,
) -> None:
    make_plugin("first", add=result_doc(ip="10.88.0.5/24"))
    make_plugin("second", add=result_doc(ip="10.88.0.6/24"))
    net = network()
    res = client.add(net, attachment())
    assert calls() == ["first ADD", "second ADD"]
    assert str(res.ips[0].address) == "10.88.0.6/24"  # the last plugin's result wins
    first_in = stdin_of("first", "ADD")
    assert "prevResult" not in first_in
    assert first_in["runtimeConfig"] == {"portMappings": CAPS["portMappings"]}
    second_in = stdin_of("second", "ADD")
    assert second_in["prevResult"]["ips"][0]["address"] == "10.88.0.5/24"
    assert second_in["runtimeConfig"] == {"bandwidth": {"ingressRate": 1000}}
    assert env_of("second", "ADD")["CNI_CONTAINERID"] == "abc123"
    entry = client.cache.load("testnet", "abc123", "eth0")
    assert entry is not None and entry.result == res


def test_del_reverse_order_with_cached_prev_result(
    client: CNIClient, make_plugin: MakePlugin, calls: Calls, stdin_of: StdinOf
) -> None:
    make_plugin("first")
    make_plugin("second")
    net = network()
    client.add(net, attachment())
    client.delete(net, attachment())
    assert calls()[2:] == ["second DEL", "first DEL"]
    assert stdin_of("first", "DEL")["prevResult"]["ips"][0]["address"] == "10.88.0.5/24"
    assert client.cache.load("testnet", "abc123", "eth0") is None
    # DEL again (idempotent): no cache, so no prevResult.
    client.delete(net, attachment())
    assert "prevResult" not in stdin_of("first", "DEL")


def test_del_of_pre_040_list_has_no_prev_result(
    client: CNIClient, make_plugin: MakePlugin, stdin_of: StdinOf, result_doc: ResultDoc
) -> None:
    make_plugin("first", add=result_doc(version="0.3.1"))
    make_plugin("second", add=result_doc(version="0.3.1"))
    net = network("0.3.1")
    client.add(net, attachment())
    client.delete(net, attachment())
    assert "prevResult" not in stdin_of("second", "DEL")


def test_failed_del_keeps_cache_for_retry(client: CNIClient, make_plugin: MakePlugin) -> None:
    make_plugin("first", **{"DEL.rc": "1"})
    make_plugin("second")
    net = network()
    client.add(net, attachment())
    with pytest.raises(PluginError):
        client.delete(net, attachment())
    assert client.cache.load("testnet", "abc123", "eth0") is not None


def test_plugin_error_json(client: CNIClient, make_plugin: MakePlugin, calls: Calls) -> None:
    err = {"cniVersion": "1.0.0", "code": 7, "msg": "bad config", "details": "no bridge"}
    make_plugin("first", **{"ADD.out": json.dumps(err), "ADD.rc": "1"})
    make_plugin("second")
    with pytest.raises(PluginError) as info:
        client.add(network(), attachment())
    assert (info.value.plugin, info.value.code, info.value.msg) == ("first", 7, "bad config")
    assert info.value.details == "no bridge"
    assert str(info.value) == "CNI plugin first ADD failed (code 7): bad config: no bridge"
    assert calls() == ["first ADD"]  # the chain stops


def test_plugin_error_without_json_uses_stderr(tmp_path: Path) -> None:
    script = tmp_path / "crash"
    script.write_text("#!/bin/sh\necho 'panic: boom' >&2\nexit 2\n")
    script.chmod(0o755)
    with pytest.raises(PluginError, match="panic: boom"):
        Runner().run(str(script), "ADD", b"{}", {})


def test_garbage_result(client: CNIClient, make_plugin: MakePlugin) -> None:
    make_plugin("first", **{"ADD.out": "not json"})
    with pytest.raises(InvalidResultError, match="CNI plugin first printed invalid JSON"):
        client.add(network(), attachment())
    make_plugin("first", **{"ADD.out": ""})
    with pytest.raises(InvalidResultError, match="printed no result"):
        client.add(network(), attachment())


def test_timeout_kills_plugin_and_children(
    make_plugin: MakePlugin, fake_bin: Path, tmp_path: Path
) -> None:
    make_plugin("first", **{"ADD.sleep": "31.4159"})
    client = CNIClient([str(fake_bin)], ResultCache(tmp_path / "c"), Runner(timeout=0.5))
    start = time.monotonic()
    with pytest.raises(PluginTimeoutError, match=r"first ADD timed out after 0\.5s"):
        client.add(network(), attachment())
    assert time.monotonic() - start < 5
    # The sleep child was in the plugin's process group and died with it.
    assert not [pid for pid in _pids() if _cmdline(pid) == [b"sleep", b"31.4159"]]


def _pids() -> list[str]:
    return [p for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: str) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().split(b"\0")[:-1]
    except OSError:
        return []


def test_missing_plugin(client: CNIClient, make_plugin: MakePlugin) -> None:
    make_plugin("first")
    with pytest.raises(PluginNotFoundError, match="'second' not found"):
        client.add(network(), attachment())


def test_check(client: CNIClient, make_plugin: MakePlugin, calls: Calls, stdin_of: StdinOf) -> None:
    make_plugin("first")
    make_plugin("second")
    net = network()
    with pytest.raises(CNIError, match="no cached ADD result"):
        client.check(net, attachment())
    client.add(net, attachment())
    client.check(net, attachment())
    assert calls()[-2:] == ["first CHECK", "second CHECK"]
    assert stdin_of("second", "CHECK")["prevResult"]["ips"][0]["address"] == "10.88.0.5/24"
    n = len(calls())
    client.check(network(disableCheck=True), attachment())
    assert len(calls()) == n
    with pytest.raises(CNIError, match="has no CHECK"):
        client.check(network("0.3.1"), attachment())


def test_status_only_for_110_plugins(
    client: CNIClient, make_plugin: MakePlugin, calls: Calls, env_of: EnvOf
) -> None:
    make_plugin("first", versions=["0.4.0", "1.0.0"])
    make_plugin("second")
    client.status(network("1.0.0"))
    assert calls() == []  # lists before 1.1.0 have no STATUS
    client.status(network("1.1.0"))
    assert calls() == ["first VERSION", "second VERSION", "second STATUS"]
    env = env_of("second", "STATUS")
    assert "CNI_CONTAINERID" not in env and env["CNI_COMMAND"] == "STATUS"
    client.status(network("1.1.0"))
    assert calls()[-1] == "second STATUS"
    assert calls().count("second VERSION") == 1  # VERSION answers are cached


def test_status_error(client: CNIClient, make_plugin: MakePlugin) -> None:
    err = {"code": 50, "msg": "plugin not available"}
    make_plugin("first", **{"STATUS.out": json.dumps(err), "STATUS.rc": "1"})
    make_plugin("second")
    with pytest.raises(PluginError) as info:
        client.status(network("1.1.0"))
    assert info.value.code == 50


def test_gc_deletes_stale_and_sends_valid_attachments(
    client: CNIClient, make_plugin: MakePlugin, calls: Calls, stdin_of: StdinOf, env_of: EnvOf
) -> None:
    make_plugin("first", versions=["1.0.0"])  # too old for GC
    make_plugin("second")
    net = network("1.1.0")
    keep = Attachment("keep1", "/n", "eth0")
    stale = Attachment("stale1", "/n", "eth0")
    client.add(net, keep)
    client.add(net, stale)
    client.gc(net, [("keep1", "eth0")])
    assert client.cache.load("testnet", "keep1", "eth0") is not None
    assert client.cache.load("testnet", "stale1", "eth0") is None
    assert env_of("first", "DEL")["CNI_CONTAINERID"] == "stale1"
    assert "CNI_NETNS" not in env_of("first", "DEL")
    assert "first GC" not in calls()
    assert calls()[-1] == "second GC"
    gc_in = stdin_of("second", "GC")
    assert gc_in["cni.dev/valid-attachments"] == [{"containerID": "keep1", "ifname": "eth0"}]
    assert gc_in["name"] == "testnet" and gc_in["cniVersion"] == "1.1.0"


def test_gc_skipped_when_disabled_or_old(
    client: CNIClient, make_plugin: MakePlugin, calls: Calls
) -> None:
    make_plugin("first")
    make_plugin("second")
    client.add(network("1.1.0", disableGC=True), Attachment("stale1", "/n"))
    client.gc(network("1.1.0", disableGC=True), [])
    assert calls() == ["first ADD", "second ADD"]
    client.gc(network("1.0.0"), [("stale1", "eth0")])
    assert not [c for c in calls() if c.endswith(" GC")]


def test_gc_reports_all_failures(client: CNIClient, make_plugin: MakePlugin) -> None:
    make_plugin("first", **{"GC.rc": "1", "GC.out": json.dumps({"code": 5, "msg": "io"})})
    make_plugin("second", **{"GC.rc": "1", "GC.out": json.dumps({"code": 5, "msg": "io2"})})
    with pytest.raises(CNIError) as info:
        client.gc(network("1.1.0"), [])
    assert "io" in str(info.value) and "io2" in str(info.value)
