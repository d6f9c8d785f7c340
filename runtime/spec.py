"""The parts of an OCI runtime-spec config.json that crisp runs, as typed frozen dataclasses.

`parse()` turns the JSON object into a `Spec`; any field of the wrong type or value raises
`SpecError` naming it by its JSON path (e.g. "process.user.uid"). Keys crisp does not know
are ignored, as newer spec versions add optional ones.
"""

from __future__ import annotations

import json
import resource
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

# Capabilities (ctypes, libc) and the cgroup resource model (which loads every cgroup
# module) are imported where a spec is parsed or written: what only reads container state,
# as `crisp-runtime state` or `list`, then pays for neither.
if TYPE_CHECKING:
    from runtime.capabilities import CapabilitySet
    from runtime.cgroups.resources import LinuxResources


class SpecError(ValueError):
    """config.json is missing, unreadable, or has a field crisp cannot honour."""


NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
PROPAGATIONS = ("", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable")
DEVICE_TYPES = ("c", "b", "u", "p")
_UINT32_MAX = 2**32 - 1
_RLIM_MAX = 2**64 - 1


@dataclass(frozen=True)
class User:
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    umask: int | None = None


@dataclass(frozen=True)
class Rlimit:
    type: str  # "RLIMIT_NOFILE", …
    soft: int
    hard: int

    @property
    def resource(self) -> int:
        value: int = getattr(resource, self.type)
        return value


@dataclass(frozen=True)
class Process:
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    terminal: bool = False
    user: User = field(default_factory=User)
    capabilities: CapabilitySet | None = None  # None: keep what the runtime has
    no_new_privileges: bool = False
    rlimits: tuple[Rlimit, ...] = ()
    oom_score_adj: int | None = None

    def env_value(self, name: str) -> str | None:
        for entry in reversed(self.env):
            key, _, value = entry.partition("=")
            if key == name:
                return value
        return None


@dataclass(frozen=True)
class IdMapping:
    container_id: int
    host_id: int
    size: int


def id_map_text(mappings: tuple[IdMapping, ...]) -> str:
    """Mappings as the kernel takes them in /proc/<pid>/uid_map and gid_map."""
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)


@dataclass(frozen=True)
class Mount:
    destination: str
    type: str = ""
    source: str = ""
    options: tuple[str, ...] = ()
    # An idmapped bind mount shows file owners through these (the container's own).
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()


@dataclass(frozen=True)
class Namespace:
    type: str
    path: str | None = None  # None: create a new one


@dataclass(frozen=True)
class Device:
    path: str
    type: str
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


def _no_resources() -> LinuxResources:
    from runtime.cgroups.resources import LinuxResources

    return LinuxResources()


@dataclass(frozen=True)
class Linux:
    namespaces: tuple[Namespace, ...] = ()
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()
    devices: tuple[Device, ...] = ()
    resources: LinuxResources = field(default_factory=_no_resources)
    cgroups_path: str = ""
    sysctl: Mapping[str, str] = field(default_factory=dict)
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    rootfs_propagation: str = ""
    seccomp: Mapping[str, Any] | None = None  # raw; runtime/seccomp.py interprets it

    def namespace(self, kind: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.type == kind:
                return ns
        return None


@dataclass(frozen=True)
class Spec:
    root_path: str
    process: Process | None = None
    root_readonly: bool = False
    hostname: str = ""
    domainname: str = ""
    mounts: tuple[Mount, ...] = ()
    linux: Linux = field(default_factory=Linux)

    def rootfs(self, bundle: Path) -> Path:
        """root.path, relative to the bundle unless absolute."""
        return bundle / self.root_path


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be an object, got {type(value).__name__}")
    return value


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"{where} must be a list, got {type(value).__name__}")
    return value


def _str(obj: Mapping[str, Any], key: str, where: str, default: str = "") -> str:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise SpecError(f"{where}.{key} must be a string, got {value!r}")
    return value


def _strings(obj: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    items = _list(obj.get(key), f"{where}.{key}")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise SpecError(f"{where}.{key}[{i}] must be a string, got {item!r}")
    return tuple(items)


def _bool(obj: Mapping[str, Any], key: str, where: str) -> bool:
    value = obj.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise SpecError(f"{where}.{key} must be a boolean, got {value!r}")
    return value


def _int(
    obj: Mapping[str, Any], key: str, where: str, low: int, high: int, default: int | None = None
) -> int | None:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where}.{key} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise SpecError(f"{where}.{key}={value} is out of range [{low}, {high}]")
    return value


def _required_int(obj: Mapping[str, Any], key: str, where: str, low: int, high: int) -> int:
    value = _int(obj, key, where, low, high)
    if value is None:
        raise SpecError(f"{where}.{key} is required")
    return value


def container_path(value: str, where: str) -> str:
    """An absolute path inside the container, refusing '..' so it cannot climb out."""
    if not value.startswith("/"):
        raise SpecError(f"{where} must be an absolute path, got {value!r}")
    if ".." in PurePosixPath(value).parts or "\0" in value:
        raise SpecError(f"{where} must not contain '..', got {value!r}")
    return value


def _user(obj: Mapping[str, Any], where: str) -> User:
    gids = _list(obj.get("additionalGids"), f"{where}.additionalGids")
    for i, gid in enumerate(gids):
        if isinstance(gid, bool) or not isinstance(gid, int) or not 0 <= gid <= _UINT32_MAX:
            raise SpecError(f"{where}.additionalGids[{i}] must be a gid, got {gid!r}")
    return User(
        uid=_int(obj, "uid", where, 0, _UINT32_MAX, 0) or 0,
        gid=_int(obj, "gid", where, 0, _UINT32_MAX, 0) or 0,
        additional_gids=tuple(gids),
        umask=_int(obj, "umask", where, 0, 0o777),
    )


def _rlimit(obj: Mapping[str, Any], where: str) -> Rlimit:
    kind = _str(obj, "type", where)
    if not kind.startswith("RLIMIT_") or not isinstance(getattr(resource, kind, None), int):
        raise SpecError(f"{where}.type: unknown rlimit {kind!r}")
    soft = _required_int(obj, "soft", where, 0, _RLIM_MAX)
    hard = _required_int(obj, "hard", where, 0, _RLIM_MAX)
    if soft > hard:
        raise SpecError(f"{where}: soft limit {soft} is above hard limit {hard}")
    return Rlimit(kind, soft, hard)


def parse_process(raw: object, where: str = "process") -> Process:
    """OCI `process` (also the body of an exec request)."""
    obj = _object(raw, where)
    args = _strings(obj, "args", where)
    if not args or not args[0]:
        raise SpecError(f"{where}.args must name an executable")
    env = _strings(obj, "env", where)
    for i, entry in enumerate(env):
        if "=" not in entry:
            raise SpecError(f"{where}.env[{i}] must be NAME=VALUE, got {entry!r}")
    from runtime.capabilities import CapabilitySet, UnknownCapabilityError

    caps = obj.get("capabilities")
    try:
        capabilities = None if caps is None else CapabilitySet.from_oci(_object(caps, where))
    except (UnknownCapabilityError, ValueError) as exc:
        raise SpecError(str(exc)) from None
    rlimits = _list(obj.get("rlimits"), f"{where}.rlimits")
    parsed_rlimits = tuple(
        _rlimit(_object(r, f"{where}.rlimits[{i}]"), f"{where}.rlimits[{i}]")
        for i, r in enumerate(rlimits)
    )
    kinds = [r.type for r in parsed_rlimits]
    duplicates = sorted({k for k in kinds if kinds.count(k) > 1})
    if duplicates:
        raise SpecError(f"{where}.rlimits: {', '.join(duplicates)} given more than once")
    return Process(
        args=args,
        env=env,
        cwd=container_path(_str(obj, "cwd", where, "/") or "/", f"{where}.cwd"),
        terminal=_bool(obj, "terminal", where),
        user=_user(_object(obj.get("user") or {}, f"{where}.user"), f"{where}.user"),
        capabilities=capabilities,
        no_new_privileges=_bool(obj, "noNewPrivileges", where),
        rlimits=parsed_rlimits,
        oom_score_adj=_int(obj, "oomScoreAdj", where, -1000, 1000),
    )


def _mount(obj: Mapping[str, Any], where: str) -> Mount:
    return Mount(
        destination=container_path(_str(obj, "destination", where), f"{where}.destination"),
        type=_str(obj, "type", where),
        source=_str(obj, "source", where),
        options=_strings(obj, "options", where),
        uid_mappings=_mappings(obj.get("uidMappings"), f"{where}.uidMappings"),
        gid_mappings=_mappings(obj.get("gidMappings"), f"{where}.gidMappings"),
    )


def _namespaces(raw: object, where: str) -> tuple[Namespace, ...]:
    result: list[Namespace] = []
    for i, item in enumerate(_list(raw, where)):
        w = f"{where}[{i}]"
        obj = _object(item, w)
        kind = _str(obj, "type", w)
        if kind not in NAMESPACE_TYPES:
            raise SpecError(f"{w}.type: unknown namespace {kind!r} (one of {NAMESPACE_TYPES})")
        if any(ns.type == kind for ns in result):
            raise SpecError(f"{where}: namespace {kind!r} given more than once")
        path = _str(obj, "path", w) or None
        if path is not None and not path.startswith("/"):
            raise SpecError(f"{w}.path must be absolute, got {path!r}")
        result.append(Namespace(kind, path))
    return tuple(result)


def _mappings(raw: object, where: str) -> tuple[IdMapping, ...]:
    result = []
    for i, item in enumerate(_list(raw, where)):
        w = f"{where}[{i}]"
        obj = _object(item, w)
        result.append(
            IdMapping(
                container_id=_required_int(obj, "containerID", w, 0, _UINT32_MAX),
                host_id=_required_int(obj, "hostID", w, 0, _UINT32_MAX),
                size=_required_int(obj, "size", w, 1, _UINT32_MAX),
            )
        )
    return tuple(result)


def _device(obj: Mapping[str, Any], where: str) -> Device:
    kind = _str(obj, "type", where)
    if kind not in DEVICE_TYPES:
        raise SpecError(f"{where}.type must be one of {DEVICE_TYPES}, got {kind!r}")
    return Device(
        path=container_path(_str(obj, "path", where), f"{where}.path"),
        type=kind,
        major=_int(obj, "major", where, 0, _UINT32_MAX, 0) or 0,
        minor=_int(obj, "minor", where, 0, _UINT32_MAX, 0) or 0,
        file_mode=_int(obj, "fileMode", where, 0, 0o7777),
        uid=_int(obj, "uid", where, 0, _UINT32_MAX),
        gid=_int(obj, "gid", where, 0, _UINT32_MAX),
    )


def _sysctl(raw: object, where: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in _object(raw or {}, where).items():
        parts = key.replace(".", "/").split("/")
        if not key or any(p in ("", "..") for p in parts):
            raise SpecError(f"{where}: invalid sysctl name {key!r}")
        if not isinstance(value, str):
            raise SpecError(f"{where}.{key} must be a string, got {value!r}")
        result[key] = value
    return result


def _linux(obj: Mapping[str, Any], where: str) -> Linux:
    from runtime.cgroups.resources import InvalidResourcesError, from_oci

    try:
        resources = from_oci(obj.get("resources"), f"{where}.resources")
    except InvalidResourcesError as exc:
        raise SpecError(str(exc)) from None
    propagation = _str(obj, "rootfsPropagation", where)
    if propagation not in PROPAGATIONS:
        raise SpecError(f"{where}.rootfsPropagation must be one of {PROPAGATIONS[1:]}")
    seccomp = obj.get("seccomp")
    if seccomp is not None:
        seccomp = _object(seccomp, f"{where}.seccomp")
    cgroups_path = _str(obj, "cgroupsPath", where)
    if ".." in cgroups_path.split("/"):
        raise SpecError(f"{where}.cgroupsPath must not contain '..', got {cgroups_path!r}")
    devices = _list(obj.get("devices"), f"{where}.devices")
    return Linux(
        namespaces=_namespaces(obj.get("namespaces"), f"{where}.namespaces"),
        uid_mappings=_mappings(obj.get("uidMappings"), f"{where}.uidMappings"),
        gid_mappings=_mappings(obj.get("gidMappings"), f"{where}.gidMappings"),
        devices=tuple(
            _device(_object(d, f"{where}.devices[{i}]"), f"{where}.devices[{i}]")
            for i, d in enumerate(devices)
        ),
        resources=resources,
        cgroups_path=cgroups_path,
        sysctl=_sysctl(obj.get("sysctl"), f"{where}.sysctl"),
        masked_paths=tuple(
            container_path(p, f"{where}.maskedPaths[{i}]")
            for i, p in enumerate(_strings(obj, "maskedPaths", where))
        ),
        readonly_paths=tuple(
            container_path(p, f"{where}.readonlyPaths[{i}]")
            for i, p in enumerate(_strings(obj, "readonlyPaths", where))
        ),
        rootfs_propagation=propagation,
        seccomp=seccomp,
    )


def _check_consistency(spec: Spec) -> None:
    linux = spec.linux
    if "time" in (ns.type for ns in linux.namespaces):
        raise SpecError("linux.namespaces: the time namespace is not supported")
    user_ns = linux.namespace("user")
    # With a joined user namespace the mappings describe it (as containerd writes them).
    if (linux.uid_mappings or linux.gid_mappings) and user_ns is None:
        raise SpecError("linux.uidMappings/gidMappings need a user namespace")
    new_user_ns = user_ns is not None and user_ns.path is None
    if new_user_ns and (not linux.uid_mappings or not linux.gid_mappings):
        raise SpecError("a new user namespace needs linux.uidMappings and gidMappings")
    for index, mount in enumerate(spec.mounts):
        _check_idmapped_mount(spec, mount, f"mounts[{index}]")
    # As runc: a joined uts namespace is fine too (the name is then set in it).
    if (spec.hostname or spec.domainname) and linux.namespace("uts") is None:
        raise SpecError("hostname/domainname need a uts namespace in linux.namespaces")
    mnt = linux.namespace("mount")
    if mnt is None or mnt.path is not None:
        raise SpecError("linux.namespaces must create a new mount namespace for the rootfs")


def is_idmapped(mount: Mount) -> bool:
    return bool(mount.uid_mappings or {"idmap", "ridmap"} & set(mount.options))


def _check_idmapped_mount(spec: Spec, mount: Mount, where: str) -> None:
    if not is_idmapped(mount):
        return
    user_ns = spec.linux.namespace("user")
    if mount.type != "bind" and not {"bind", "rbind"} & set(mount.options):
        raise SpecError(f"{where}: only bind mounts can be idmapped")
    # The mapping is made from the host before the init enters the namespace, which
    # therefore has to exist already.
    if user_ns is None or user_ns.path is None:
        raise SpecError(f"{where}: an idmapped mount needs a joined user namespace (a path)")
    given = (mount.uid_mappings, mount.gid_mappings)
    if any(given) and given != (spec.linux.uid_mappings, spec.linux.gid_mappings):
        raise SpecError(
            f"{where}: idmapped mounts with mappings other than the container's user "
            "namespace's are not supported"
        )


def parse(raw: object) -> Spec:
    """Validate and convert a decoded config.json."""
    obj = _object(raw, "config.json")
    root = _object(obj.get("root") or {}, "root")
    root_path = _str(root, "path", "root")
    if not root_path:
        raise SpecError("root.path is required")
    process = obj.get("process")
    mounts = _list(obj.get("mounts"), "mounts")
    spec = Spec(
        root_path=root_path,
        process=None if process is None else parse_process(process),
        root_readonly=_bool(root, "readonly", "root"),
        hostname=_str(obj, "hostname", "config.json"),
        domainname=_str(obj, "domainname", "config.json"),
        mounts=tuple(
            _mount(_object(m, f"mounts[{i}]"), f"mounts[{i}]") for i, m in enumerate(mounts)
        ),
        linux=_linux(_object(obj.get("linux") or {}, "linux"), "linux"),
    )
    _check_consistency(spec)
    return spec


def load(bundle: Path) -> Spec:
    """Read and parse bundle/config.json."""
    path = bundle / "config.json"
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise SpecError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot read {path}: {exc}") from None
    return parse(raw)


def process_to_oci(process: Process) -> dict[str, Any]:
    """The JSON form of `process`, which parse_process() reads back unchanged."""
    user: dict[str, Any] = {
        "uid": process.user.uid,
        "gid": process.user.gid,
        "additionalGids": list(process.user.additional_gids),
    }
    if process.user.umask is not None:
        user["umask"] = process.user.umask
    result: dict[str, Any] = {
        "args": list(process.args),
        "env": list(process.env),
        "cwd": process.cwd,
        "terminal": process.terminal,
        "user": user,
        "noNewPrivileges": process.no_new_privileges,
        "rlimits": [{"type": r.type, "soft": r.soft, "hard": r.hard} for r in process.rlimits],
    }
    caps = process.capabilities
    if caps is not None:
        from runtime.capabilities import to_names

        result["capabilities"] = {
            name: to_names(getattr(caps, name))
            for name in ("bounding", "effective", "inheritable", "permitted", "ambient")
        }
    if process.oom_score_adj is not None:
        result["oomScoreAdj"] = process.oom_score_adj
    return result
