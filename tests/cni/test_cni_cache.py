from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cni.attachment import Attachment, k8s_args
from cni.cache import ResultCache
from cni.config import parse_conflist
from cni.errors import CNIError
from cni.result import parse_result

ResultDoc = Callable[..., dict[str, Any]]

NET = parse_conflist(
    {"cniVersion": "1.0.0", "name": "net1", "plugins": [{"type": "bridge", "bridge": "b0"}]}
)


def att(cid: str = "c1", ifname: str = "eth0") -> Attachment:
    return Attachment(cid, "/var/run/netns/p", ifname, k8s_args("ns", "n", cid, "u"), {"x": [1]})


def test_round_trip_libcni_layout(tmp_path: Path, result_doc: ResultDoc) -> None:
    cache = ResultCache(tmp_path)
    res = parse_result(result_doc())
    path = cache.save(NET, att(), res)
    assert path == tmp_path / "results" / "net1-c1-eth0"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    doc = json.loads(path.read_text())
    assert doc["kind"] == "cniCacheV1"
    assert json.loads(base64.b64decode(doc["config"]))["plugins"][0]["bridge"] == "b0"
    entry = cache.load("net1", "c1", "eth0")
    assert entry is not None
    assert entry.result == res
    assert entry.network().plugins[0].raw["bridge"] == "b0"
    assert entry.attachment() == att()
    assert entry.attachment(netns="").netns == ""
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]


def test_entries_filter_and_delete(tmp_path: Path, result_doc: ResultDoc) -> None:
    cache = ResultCache(tmp_path)
    res = parse_result(result_doc())
    cache.save(NET, att("c1"), res)
    cache.save(NET, att("c1", "lo"), res)
    cache.save(NET, att("c2"), res)
    assert sorted((e.container_id, e.ifname) for e in cache.entries()) == [
        ("c1", "eth0"),
        ("c1", "lo"),
        ("c2", "eth0"),
    ]
    assert {e.ifname for e in cache.entries("c1")} == {"eth0", "lo"}
    cache.delete("net1", "c1", "eth0")
    cache.delete("net1", "c1", "eth0")  # idempotent
    assert cache.load("net1", "c1", "eth0") is None
    assert ResultCache(tmp_path / "none").entries() == []


def test_overwrite_is_atomic_replace(tmp_path: Path, result_doc: ResultDoc) -> None:
    cache = ResultCache(tmp_path)
    path = cache.save(NET, att(), parse_result(result_doc(ip="10.0.0.1/24")))
    inode = os.stat(path).st_ino
    cache.save(NET, att(), parse_result(result_doc(ip="10.0.0.2/24")))
    assert os.stat(path).st_ino != inode  # a new file renamed over, never a partial write
    entry = cache.load("net1", "c1", "eth0")
    assert entry is not None and entry.result is not None
    assert str(entry.result.ips[0].address) == "10.0.0.2/24"


@pytest.mark.parametrize(
    "content",
    ["", "{", '{"kind": "other"}', '{"kind": "cniCacheV1", "networkName": "n"}'],
)
def test_corrupt_entries(tmp_path: Path, content: str) -> None:
    cache = ResultCache(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "net1-c1-eth0").write_text(content)
    with pytest.raises(CNIError, match="corrupt CNI cache entry"):
        cache.load("net1", "c1", "eth0")
    assert cache.entries() == []  # skipped, logged


@pytest.mark.parametrize(("net", "cid", "ifname"), [("../x", "c", "eth0"), ("n", "../c", "eth0")])
def test_path_traversal_rejected(tmp_path: Path, net: str, cid: str, ifname: str) -> None:
    with pytest.raises(CNIError):
        ResultCache(tmp_path).path(net, cid, ifname)
