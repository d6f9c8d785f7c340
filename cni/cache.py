"""On-disk record of each successful ADD, so a DEL (even after a daemon restart, or after
the conf dir changed) runs with the same config, arguments and prevResult.

Layout and fields follow libcni's `cniCacheV1` (`<dir>/results/<net>-<id>-<ifname>`), so
the cache stays readable by CNI tooling that knows it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cni.attachment import Attachment, validate_container_id, validate_ifname
from cni.config import NAME_RE, NetworkConfigList, parse_conflist
from cni.errors import CNIError, InvalidResultError
from cni.result import Result, parse_result

log = logging.getLogger(__name__)

KIND = "cniCacheV1"


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    network_name: str
    container_id: str
    ifname: str
    netns: str
    config: bytes
    cni_args: tuple[tuple[str, str], ...] = ()
    capability_args: Mapping[str, Any] = field(default_factory=dict)
    result: Result | None = None

    def network(self) -> NetworkConfigList:
        return parse_conflist(self.config, f"cached config {self.path}")

    def attachment(self, netns: str | None = None) -> Attachment:
        return Attachment(
            container_id=self.container_id,
            netns=self.netns if netns is None else netns,
            ifname=self.ifname,
            args=self.cni_args,
            capability_args=dict(self.capability_args),
        )


class ResultCache:
    def __init__(self, cache_dir: Path | str) -> None:
        self.dir = Path(cache_dir) / "results"

    def path(self, network_name: str, container_id: str, ifname: str) -> Path:
        # The parts end up in a file name; validation keeps '/' and '..' out.
        if not NAME_RE.match(network_name):
            raise CNIError(f"invalid network name {network_name!r}")
        validate_container_id(container_id)
        validate_ifname(ifname)
        return self.dir / f"{network_name}-{container_id}-{ifname}"

    def save(self, net: NetworkConfigList, att: Attachment, result: Result) -> Path:
        doc = {
            "kind": KIND,
            "containerId": att.container_id,
            # libcni stores the raw config bytes, which Go's JSON encodes as base64.
            "config": base64.b64encode(net.to_bytes()).decode(),
            "ifName": att.ifname,
            "networkName": net.name,
            "netns": att.netns,
            "cniArgs": [list(pair) for pair in att.args],
            "capabilityArgs": dict(att.capability_args),
            "result": result.to_dict(),
        }
        path = self.path(net.name, att.container_id, att.ifname)
        _write_atomic(path, json.dumps(doc).encode())
        return path

    def load(self, network_name: str, container_id: str, ifname: str) -> CacheEntry | None:
        path = self.path(network_name, container_id, ifname)
        try:
            return _read(path)
        except FileNotFoundError:
            return None

    def delete(self, network_name: str, container_id: str, ifname: str) -> None:
        path = self.path(network_name, container_id, ifname)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    def entries(self, container_id: str | None = None) -> list[CacheEntry]:
        """Readable entries, optionally of one container; unreadable files are logged."""
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.startswith(".") or (container_id and f"-{container_id}-" not in name):
                continue
            try:
                entry = _read(self.dir / name)
            except FileNotFoundError:
                continue
            except CNIError as exc:
                log.warning("skipping CNI cache entry: %s", exc)
                continue
            if container_id is None or entry.container_id == container_id:
                out.append(entry)
        return out


def _read(path: Path) -> CacheEntry:
    data = path.read_bytes()
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise ValueError(f"kind is not {KIND}")
        raw_result = doc.get("result")
        result = parse_result(raw_result, f"cache {path}") if raw_result else None
        args = tuple((str(k), str(v)) for k, v in doc.get("cniArgs") or [])
        caps = doc.get("capabilityArgs") or {}
        if not isinstance(caps, dict):
            raise ValueError("capabilityArgs is not an object")
        return CacheEntry(
            path=path,
            network_name=str(doc["networkName"]),
            container_id=str(doc["containerId"]),
            ifname=str(doc["ifName"]),
            netns=str(doc.get("netns") or ""),
            config=base64.b64decode(doc["config"], validate=True),
            cni_args=args,
            capability_args=caps,
            result=result,
        )
    except InvalidResultError as exc:
        raise CNIError(f"corrupt CNI cache entry {path}: {exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise CNIError(f"corrupt CNI cache entry {path}: {exc}") from exc


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
