from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cni.config import (
    ConfigWatcher,
    first_valid,
    load_conf_dir,
    load_file,
    parse_conf,
    parse_conflist,
)
from cni.errors import ConfigError

WriteConf = Callable[..., Path]


def conflist(name: str = "net", version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "cniVersion": version,
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
            {"type": "portmap", "capabilities": {"portMappings": True, "other": False}},
        ],
    }
    doc.update(extra)
    return doc


def test_parse_conflist_fields() -> None:
    net = parse_conflist(json.dumps(conflist(disableCheck=True, disableGC="true")), "x.conflist")
    assert net.name == "net"
    assert net.cni_version == "1.0.0"
    assert [p.type for p in net.plugins] == ["bridge", "portmap"]
    assert net.plugins[0].capabilities == frozenset()
    assert net.plugins[1].capabilities == {"portMappings"}
    assert net.capabilities == {"portMappings"}
    assert net.disable_check and net.disable_gc
    assert net.plugins[0].raw["bridge"] == "cni0"
    assert json.loads(net.to_bytes())["plugins"][0]["ipam"] == {"type": "host-local"}


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_supported_versions(version: str) -> None:
    assert parse_conflist(conflist(version=version)).cni_version == version


def test_cni_versions_list_picks_highest_supported() -> None:
    doc = conflist(version="0.4.0", cniVersions=["0.4.0", "1.0.0", "1.1.0", "9.9.9"])
    assert parse_conflist(doc).cni_version == "1.1.0"


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (conflist(name=""), "missing network 'name'"),
        (conflist(name="bad/name"), "characters outside"),
        ({k: v for k, v in conflist().items() if k != "cniVersion"}, "missing 'cniVersion'"),
        (conflist(version="0.2.0"), "unsupported cniVersion '0.2.0'"),
        (conflist(version="2.0.0"), "unsupported cniVersion"),
        (conflist(plugins=[]), "'plugins' must be a non-empty list"),
        (conflist(plugins={"type": "x"}), "'plugins' must be a non-empty list"),
        (conflist(plugins=[{"bridge": "x"}]), "plugin 0 has no 'type'"),
        (conflist(plugins=[{"type": "a"}, "x"]), "plugin 1 is not a JSON object"),
        (conflist(plugins=[{"type": "../../bin/sh"}]), "not a plain executable name"),
        (conflist(plugins=[{"type": "a", "capabilities": {"x": 1}}]), "'capabilities'"),
        (conflist(disableCheck="maybe"), "'disableCheck' must be a boolean"),
        (conflist(cniVersions=["0.1.0"], cniVersion=None), "missing 'cniVersion'"),
    ],
)
def test_invalid_conflists_name_reason(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_conflist(json.dumps(doc), "/etc/cni/net.d/10-x.conflist")
    assert reason in str(info.value)
    assert "/etc/cni/net.d/10-x.conflist" in str(info.value)
    assert info.value.source == "/etc/cni/net.d/10-x.conflist"


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "empty file"), ("{nope", "invalid JSON"), ("[1]", "not a JSON object")],
)
def test_undecodable_files(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_conflist(text, "f")


def test_single_plugin_conf_is_wrapped() -> None:
    net = parse_conf({"cniVersion": "0.3.1", "name": "single", "type": "bridge", "isGateway": True})
    assert net.name == "single"
    assert net.cni_version == "0.3.1"
    assert len(net.plugins) == 1
    assert net.plugins[0].type == "bridge"
    assert net.plugins[0].raw["isGateway"] is True


def test_conf_without_type_hints_at_conflist() -> None:
    with pytest.raises(ConfigError, match=r"is this a \.conflist"):
        parse_conf({"cniVersion": "1.0.0", "name": "n"})


def test_load_file_by_extension(write_conf: WriteConf) -> None:
    single = {"cniVersion": "1.0.0", "name": "one", "type": "ptp"}
    assert load_file(write_conf("10-one.conf", single)).plugins[0].type == "ptp"
    assert load_file(write_conf("20-one.json", single)).name == "one"
    assert load_file(write_conf("30-list.json", conflist(name="lst"))).name == "lst"
    with pytest.raises(ConfigError, match="no 'plugins' key"):
        load_file(write_conf("40-bad.conflist", single))


def test_load_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_file(tmp_path / "absent.conflist")


def test_conf_dir_lexical_order_first_valid_wins(write_conf: WriteConf) -> None:
    path = write_conf("20-b.conflist", conflist(name="b"))
    write_conf("10-a.conflist", conflist(name="a"))
    write_conf("05-broken.conflist", "{")
    write_conf("01-ignored.txt", json.dumps(conflist(name="txt")))
    write_conf(".hidden.conflist", json.dumps(conflist(name="hidden")))
    write_conf("30-c.conf", {"cniVersion": "1.0.0", "name": "c", "type": "ptp"})
    loaded = load_conf_dir(path.parent)
    assert [n.name for n in loaded.networks] == ["a", "b", "c"]
    assert len(loaded.errors) == 1
    assert "05-broken.conflist" in str(loaded.errors[0])
    assert first_valid(path.parent).name == "a"
    assert first_valid(path.parent, name="c").name == "c"


def test_first_valid_reports_every_error(write_conf: WriteConf) -> None:
    path = write_conf("10-bad.conflist", conflist(version="0.1.0"))
    with pytest.raises(ConfigError) as info:
        first_valid(path.parent)
    assert "no valid network config" in str(info.value)
    assert "10-bad.conflist" in str(info.value)
    assert "unsupported cniVersion '0.1.0'" in str(info.value)
    with pytest.raises(ConfigError, match="no network 'zzz'"):
        first_valid(path.parent, name="zzz")


def test_missing_conf_dir_is_empty(tmp_path: Path) -> None:
    loaded = load_conf_dir(tmp_path / "nope")
    assert loaded.networks == [] and loaded.errors == []


def test_plugin_raw_is_read_only() -> None:
    net = parse_conflist(conflist())
    with pytest.raises(TypeError):
        net.plugins[0].raw["type"] = "evil"  # type: ignore[index]


def test_watcher_sees_add_edit_remove(write_conf: WriteConf) -> None:
    path = write_conf("10-a.conflist", conflist(name="a"))
    watcher = ConfigWatcher(path.parent)
    assert watcher.changed()  # first call: load
    assert not watcher.changed()

    other = write_conf("20-b.conflist", conflist(name="b"))
    assert watcher.changed()
    assert not watcher.changed()

    # An in-place rewrite leaves the directory alone; size/mtime catch it.
    st = os.stat(path)
    path.write_text(json.dumps(conflist(name="a2")))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert watcher.changed()
    assert not watcher.changed()

    other.unlink()
    assert watcher.changed()


def test_watcher_on_missing_dir(tmp_path: Path) -> None:
    watcher = ConfigWatcher(tmp_path / "later")
    assert watcher.changed()
    assert not watcher.changed()
    (tmp_path / "later").mkdir()
    assert watcher.changed()
