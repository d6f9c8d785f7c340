"""Network configuration lists: parsing, validation, loading from a conf dir, and change
detection so the daemon can reload when an operator (or a CNI daemonset) drops a file."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cni import version as cniver
from cni.errors import ConfigError

CONF_EXTENSIONS = (".conf", ".conflist", ".json")
# Spec: network names and container ids share this alphabet.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
# A file larger than this is not a network config; refuse before reading it all.
MAX_CONF_BYTES = 1 << 20


@dataclass(frozen=True)
class PluginConfig:
    type: str
    capabilities: frozenset[str]  # only those declared `true`
    raw: Mapping[str, Any]  # the plugin object as written; sent (amended) on stdin

    def __repr__(self) -> str:
        return f"PluginConfig(type={self.type!r}, capabilities={sorted(self.capabilities)})"


@dataclass(frozen=True)
class NetworkConfigList:
    name: str
    cni_version: str
    plugins: tuple[PluginConfig, ...]
    disable_check: bool = False
    disable_gc: bool = False
    source: str = ""
    raw: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    @property
    def capabilities(self) -> frozenset[str]:
        caps: set[str] = set()
        for plugin in self.plugins:
            caps |= plugin.capabilities
        return frozenset(caps)

    def to_bytes(self) -> bytes:
        """The list as JSON, as stored in the result cache for a later DEL."""
        return json.dumps(dict(self.raw), sort_keys=True).encode()


@dataclass(frozen=True)
class LoadResult:
    networks: list[NetworkConfigList]  # valid ones, lexical file order
    errors: list[ConfigError]  # invalid files, for logs and status messages


def parse_conflist(
    data: bytes | str | Mapping[str, Any], source: str = "<memory>"
) -> NetworkConfigList:
    obj = _decode(data, source)
    if "plugins" not in obj:
        raise ConfigError(source, "no 'plugins' key (is this a single-plugin .conf?)")
    name = _name(obj, source)
    ver = _version(obj, source)
    plugins_raw = obj["plugins"]
    if not isinstance(plugins_raw, list) or not plugins_raw:
        raise ConfigError(source, "'plugins' must be a non-empty list")
    plugins = tuple(_plugin(p, i, source) for i, p in enumerate(plugins_raw))
    return NetworkConfigList(
        name=name,
        cni_version=ver,
        plugins=plugins,
        disable_check=_flag(obj, "disableCheck", source),
        disable_gc=_flag(obj, "disableGC", source),
        source=source,
        raw=_freeze(obj),
    )


def parse_conf(
    data: bytes | str | Mapping[str, Any], source: str = "<memory>"
) -> NetworkConfigList:
    """A single-plugin config, wrapped into a one-element list as libcni does."""
    obj = _decode(data, source)
    if "type" not in obj:
        raise ConfigError(source, "no 'type' key (is this a .conflist?)")
    wrapped: dict[str, Any] = {"name": obj.get("name"), "plugins": [obj]}
    for key in ("cniVersion", "cniVersions"):
        if key in obj:
            wrapped[key] = obj[key]
    return parse_conflist(wrapped, source)


def parse_any(data: bytes | str | Mapping[str, Any], source: str = "<memory>") -> NetworkConfigList:
    obj = _decode(data, source)
    return parse_conflist(obj, source) if "plugins" in obj else parse_conf(obj, source)


def load_file(path: Path | str) -> NetworkConfigList:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONF_BYTES + 1)
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_CONF_BYTES:
        raise ConfigError(path, f"larger than {MAX_CONF_BYTES} bytes")
    if path.suffix == ".conflist":
        return parse_conflist(data, str(path))
    return parse_any(data, str(path))


def conf_files(conf_dir: Path | str) -> list[Path]:
    """Candidate files in lexical order (the order every CNI runtime uses)."""
    try:
        names = sorted(os.listdir(conf_dir))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        path = Path(conf_dir, name)
        if path.suffix in CONF_EXTENSIONS and not name.startswith(".") and path.is_file():
            out.append(path)
    return out


def load_conf_dir(conf_dir: Path | str) -> LoadResult:
    networks: list[NetworkConfigList] = []
    errors: list[ConfigError] = []
    for path in conf_files(conf_dir):
        try:
            networks.append(load_file(path))
        except ConfigError as exc:
            errors.append(exc)
    return LoadResult(networks, errors)


def first_valid(conf_dir: Path | str, name: str | None = None) -> NetworkConfigList:
    """The network a pod joins: the first valid file, or the one called `name`."""
    loaded = load_conf_dir(conf_dir)
    for net in loaded.networks:
        if name is None or net.name == name:
            return net
    wanted = f"network {name!r}" if name else "valid network config"
    detail = "; ".join(str(e) for e in loaded.errors)
    raise ConfigError(conf_dir, f"no {wanted} found" + (f" ({detail})" if detail else ""))


class ConfigWatcher:
    """Tells whether the conf dir changed since the last call, with a few stat()s.

    The directory's mtime catches files added, removed or renamed; each candidate's
    (inode, size, mtime) catches in-place edits, which do not touch the directory.
    """

    def __init__(self, conf_dir: Path | str) -> None:
        self.conf_dir = Path(conf_dir)
        self._last: object = None
        self._primed = False

    def fingerprint(self) -> object:
        try:
            st = os.stat(self.conf_dir)
        except OSError:
            return None
        files = []
        for path in conf_files(self.conf_dir):
            try:
                fst = os.stat(path)
            except OSError:
                continue
            files.append((path.name, fst.st_ino, fst.st_size, fst.st_mtime_ns))
        return (st.st_ino, st.st_mtime_ns, tuple(files))

    def changed(self) -> bool:
        """True on the first call and whenever the fingerprint moved since the last."""
        current = self.fingerprint()
        if self._primed and current == self._last:
            return False
        self._primed = True
        self._last = current
        return True


def _decode(data: bytes | str | Mapping[str, Any], source: str) -> dict[str, Any]:
    if isinstance(data, Mapping):
        return dict(data)
    if not data or not data.strip():
        raise ConfigError(source, "empty file")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(source, f"invalid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ConfigError(source, "top level is not a JSON object")
    return obj


def _name(obj: Mapping[str, Any], source: str) -> str:
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(source, "missing network 'name'")
    if not NAME_RE.match(name):
        raise ConfigError(source, f"network name {name!r} has characters outside [a-zA-Z0-9_.-]")
    return name


def _version(obj: Mapping[str, Any], source: str) -> str:
    supported = ", ".join(cniver.SUPPORTED)
    versions = obj.get("cniVersions")
    if versions is not None:
        # 1.1.0: a config may list several versions; we take the highest we speak.
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise ConfigError(source, "'cniVersions' must be a list of strings")
        best = cniver.highest_supported(versions)
        if best is not None:
            return best
        if "cniVersion" not in obj:
            raise ConfigError(source, f"none of cniVersions {versions} is supported ({supported})")
    ver = obj.get("cniVersion")
    if not isinstance(ver, str) or not ver:
        raise ConfigError(source, "missing 'cniVersion'")
    if not cniver.is_supported(ver):
        raise ConfigError(source, f"unsupported cniVersion {ver!r} (supported: {supported})")
    return ver


def _flag(obj: Mapping[str, Any], key: str, source: str) -> bool:
    value = obj.get(key, False)
    if isinstance(value, bool):
        return value
    # libcni also accepts the strings, and configs in the wild use them.
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(source, f"{key!r} must be a boolean, got {value!r}")


def _plugin(raw: Any, index: int, source: str) -> PluginConfig:
    where = f"plugin {index}"
    if not isinstance(raw, dict):
        raise ConfigError(source, f"{where} is not a JSON object")
    ptype = raw.get("type")
    if not isinstance(ptype, str) or not ptype:
        raise ConfigError(source, f"{where} has no 'type'")
    # The type names an executable in the bin dirs; a path would escape them.
    if "/" in ptype or ptype in (".", "..") or "\0" in ptype:
        raise ConfigError(source, f"{where} type {ptype!r} is not a plain executable name")
    caps_raw = raw.get("capabilities", {})
    if not isinstance(caps_raw, dict) or not all(isinstance(v, bool) for v in caps_raw.values()):
        raise ConfigError(source, f"{where} ({ptype}) 'capabilities' must map names to booleans")
    caps = frozenset(k for k, v in caps_raw.items() if v)
    return PluginConfig(type=ptype, capabilities=caps, raw=_freeze(raw))


def _freeze(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    # A read-only view keeps shared configs from being mutated by one invocation;
    # a deep copy via JSON detaches it from the caller's dict.
    return MappingProxyType(json.loads(json.dumps(obj)))
