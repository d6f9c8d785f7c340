"""OCI `linux.resources` as typed dataclasses, and the converter from its JSON form.

A field left as None (or an empty list) means "do not touch", so the same object
serves for the first set and for partial live updates. Numbers keep OCI's
conventions: -1 is "unlimited" for memory limit/swap, pids limit and CPU quota.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class InvalidResourcesError(ValueError):
    """The resources JSON has a field of the wrong type or out of range."""


@dataclass(frozen=True)
class DeviceRule:
    allow: bool
    type: str = "a"  # a (all), c (char), b (block)
    major: int | None = None  # None = any
    minor: int | None = None
    access: str = "rwm"


@dataclass(frozen=True)
class Memory:
    limit: int | None = None
    reservation: int | None = None
    swap: int | None = None  # memory + swap, as in OCI and cgroup v1's memsw
    swappiness: int | None = None
    disable_oom_killer: bool | None = None


@dataclass(frozen=True)
class Cpu:
    shares: int | None = None
    quota: int | None = None
    burst: int | None = None
    period: int | None = None
    realtime_runtime: int | None = None
    realtime_period: int | None = None
    cpus: str | None = None
    mems: str | None = None
    idle: int | None = None


@dataclass(frozen=True)
class Pids:
    limit: int


@dataclass(frozen=True)
class WeightDevice:
    major: int
    minor: int
    weight: int | None = None
    leaf_weight: int | None = None


@dataclass(frozen=True)
class ThrottleDevice:
    major: int
    minor: int
    rate: int


@dataclass(frozen=True)
class BlockIO:
    weight: int | None = None
    leaf_weight: int | None = None
    weight_device: tuple[WeightDevice, ...] = ()
    throttle_read_bps_device: tuple[ThrottleDevice, ...] = ()
    throttle_write_bps_device: tuple[ThrottleDevice, ...] = ()
    throttle_read_iops_device: tuple[ThrottleDevice, ...] = ()
    throttle_write_iops_device: tuple[ThrottleDevice, ...] = ()


@dataclass(frozen=True)
class HugepageLimit:
    page_size: str  # as the kernel names it: "2MB", "1GB", "64KB"
    limit: int


@dataclass(frozen=True)
class LinuxResources:
    devices: tuple[DeviceRule, ...] = ()
    memory: Memory | None = None
    cpu: Cpu | None = None
    pids: Pids | None = None
    block_io: BlockIO | None = None
    hugepage_limits: tuple[HugepageLimit, ...] = ()
    unified: Mapping[str, str] = field(default_factory=dict)


_PAGE_SIZE = re.compile(r"^[1-9][0-9]*[KMG]B$")
_UINT64_MAX = 2**64 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidResourcesError(f"{where} must be an object, got {type(value).__name__}")
    return value


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidResourcesError(f"{where} must be a list, got {type(value).__name__}")
    return value


def _int(
    obj: Mapping[str, Any], key: str, where: str, *, low: int = _INT64_MIN, high: int = _INT64_MAX
) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidResourcesError(f"{where}.{key} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidResourcesError(f"{where}.{key}={value} is out of range [{low}, {high}]")
    return value


def _required_int(obj: Mapping[str, Any], key: str, where: str, **bounds: int) -> int:
    value = _int(obj, key, where, **bounds)
    if value is None:
        raise InvalidResourcesError(f"{where}.{key} is required")
    return value


def _str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidResourcesError(f"{where}.{key} must be a string, got {value!r}")
    return value


def _bool(obj: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidResourcesError(f"{where}.{key} must be a boolean, got {value!r}")
    return value


def _device(raw: object, where: str) -> DeviceRule:
    obj = _object(raw, where)
    allow = _bool(obj, "allow", where)
    if allow is None:
        raise InvalidResourcesError(f"{where}.allow is required")
    kind = _str(obj, "type", where) or "a"
    if kind not in ("a", "b", "c"):
        raise InvalidResourcesError(f"{where}.type must be a, b or c, got {kind!r}")
    access = _str(obj, "access", where) or "rwm"
    if not access or set(access) - set("rwm"):
        raise InvalidResourcesError(f"{where}.access must be letters of 'rwm', got {access!r}")
    return DeviceRule(
        allow=allow,
        type=kind,
        major=_int(obj, "major", where, low=-1),
        minor=_int(obj, "minor", where, low=-1),
        access=access,
    )


def _memory(obj: Mapping[str, Any], where: str) -> Memory:
    swappiness = _int(obj, "swappiness", where, low=0, high=_UINT64_MAX)
    # runtime-tools/docker send uint64 max for "unset"; the kernel accepts only 0..100.
    if swappiness is not None and swappiness > 100:
        swappiness = None if swappiness == _UINT64_MAX else swappiness
        if swappiness is not None:
            raise InvalidResourcesError(f"{where}.swappiness={swappiness} is above 100")
    return Memory(
        limit=_int(obj, "limit", where, low=-1),
        reservation=_int(obj, "reservation", where, low=-1),
        swap=_int(obj, "swap", where, low=-1),
        swappiness=swappiness,
        disable_oom_killer=_bool(obj, "disableOOMKiller", where),
    )


def _cpu(obj: Mapping[str, Any], where: str) -> Cpu:
    return Cpu(
        shares=_int(obj, "shares", where, low=0, high=_UINT64_MAX),
        quota=_int(obj, "quota", where, low=-1),
        burst=_int(obj, "burst", where, low=0, high=_UINT64_MAX),
        period=_int(obj, "period", where, low=0, high=_UINT64_MAX),
        realtime_runtime=_int(obj, "realtimeRuntime", where, low=-1),
        realtime_period=_int(obj, "realtimePeriod", where, low=0, high=_UINT64_MAX),
        cpus=_str(obj, "cpus", where),
        mems=_str(obj, "mems", where),
        idle=_int(obj, "idle", where, low=0, high=1),
    )


def _throttle(raw: object, where: str) -> tuple[ThrottleDevice, ...]:
    devices = []
    for i, item in enumerate(_list(raw, where)):
        obj = _object(item, f"{where}[{i}]")
        w = f"{where}[{i}]"
        devices.append(
            ThrottleDevice(
                major=_required_int(obj, "major", w, low=0),
                minor=_required_int(obj, "minor", w, low=0),
                rate=_required_int(obj, "rate", w, low=0, high=_UINT64_MAX),
            )
        )
    return tuple(devices)


def _block_io(obj: Mapping[str, Any], where: str) -> BlockIO:
    weights = []
    for i, item in enumerate(_list(obj.get("weightDevice"), f"{where}.weightDevice")):
        w = f"{where}.weightDevice[{i}]"
        dev = _object(item, w)
        weights.append(
            WeightDevice(
                major=_required_int(dev, "major", w, low=0),
                minor=_required_int(dev, "minor", w, low=0),
                weight=_int(dev, "weight", w, low=0, high=1000),
                leaf_weight=_int(dev, "leafWeight", w, low=0, high=1000),
            )
        )
    return BlockIO(
        weight=_int(obj, "weight", where, low=0, high=1000),
        leaf_weight=_int(obj, "leafWeight", where, low=0, high=1000),
        weight_device=tuple(weights),
        **{
            attr: _throttle(obj.get(key), f"{where}.{key}")
            for attr, key in (
                ("throttle_read_bps_device", "throttleReadBpsDevice"),
                ("throttle_write_bps_device", "throttleWriteBpsDevice"),
                ("throttle_read_iops_device", "throttleReadIOPSDevice"),
                ("throttle_write_iops_device", "throttleWriteIOPSDevice"),
            )
        },
    )


def _hugepage(raw: object, where: str) -> HugepageLimit:
    obj = _object(raw, where)
    size = _str(obj, "pageSize", where)
    if size is None or not _PAGE_SIZE.match(size):
        raise InvalidResourcesError(f"{where}.pageSize must look like '2MB' or '1GB', got {size!r}")
    return HugepageLimit(size, _required_int(obj, "limit", where, low=0, high=_UINT64_MAX))


def _unified(raw: object, where: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in _object(raw, where).items():
        # Keys name files in the cgroup directory: refuse anything that could escape it.
        if not isinstance(key, str) or "/" in key or key.startswith(".") or "." not in key:
            raise InvalidResourcesError(f"{where}: invalid cgroup file name {key!r}")
        if not isinstance(value, str):
            raise InvalidResourcesError(f"{where}.{key} must be a string, got {value!r}")
        result[key] = value
    return result


def from_oci(spec: Mapping[str, Any] | None, where: str = "linux.resources") -> LinuxResources:
    """Convert the JSON object of OCI `linux.resources`. Unknown keys are ignored (newer
    spec versions); wrong types raise InvalidResourcesError naming the field."""
    if spec is None:
        return LinuxResources()
    obj = _object(spec, where)

    def section(key: str) -> Mapping[str, Any] | None:
        value = obj.get(key)
        return None if value is None else _object(value, f"{where}.{key}")

    memory, cpu, pids, block_io = (section(k) for k in ("memory", "cpu", "pids", "blockIO"))
    pids_limit = None if pids is None else _int(pids, "limit", f"{where}.pids")
    return LinuxResources(
        devices=tuple(
            _device(d, f"{where}.devices[{i}]")
            for i, d in enumerate(_list(obj.get("devices"), f"{where}.devices"))
        ),
        memory=None if memory is None else _memory(memory, f"{where}.memory"),
        cpu=None if cpu is None else _cpu(cpu, f"{where}.cpu"),
        pids=None if pids_limit is None else Pids(pids_limit),
        block_io=None if block_io is None else _block_io(block_io, f"{where}.blockIO"),
        hugepage_limits=tuple(
            _hugepage(h, f"{where}.hugepageLimits[{i}]")
            for i, h in enumerate(_list(obj.get("hugepageLimits"), f"{where}.hugepageLimits"))
        ),
        unified={} if obj.get("unified") is None else _unified(obj["unified"], f"{where}.unified"),
    )
