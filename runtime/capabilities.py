"""Linux capability names and numbers, and applying an OCI `process.capabilities` set.

Order matters and follows the kernel's rules:
1. drop the bounding set (needs CAP_SETPCAP, so it goes first),
2. if the process will change uid: set keepcaps, switch user, clear keepcaps,
3. capset effective/permitted/inheritable,
4. raise ambient capabilities (each must already be permitted and inheritable).
`apply()` does 1, 3 and 4; a caller that changes uid calls the steps itself.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime import syscalls

# From linux/capability.h; the numbers are ABI and never change.
CAPABILITIES: Mapping[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}
NAMES: Mapping[int, str] = {number: name for name, number in CAPABILITIES.items()}


class UnknownCapabilityError(ValueError):
    """A capability name that no Linux kernel defines (typo, missing CAP_ prefix, …)."""

    def __init__(self, names: Iterable[str], where: str = "") -> None:
        self.names = sorted(set(names))
        place = f" in {where}" if where else ""
        super().__init__(f"unknown capabilities{place}: {', '.join(self.names)}")


@functools.cache
def last_cap() -> int:
    """Highest capability the running kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return max(NAMES)


def number(name: str) -> int:
    """Capability number for `name` (e.g. "CAP_CHOWN"); exact spelling as in the OCI spec."""
    try:
        return CAPABILITIES[name]
    except KeyError:
        raise UnknownCapabilityError([name]) from None


def to_mask(names: Iterable[str], where: str = "") -> int:
    """Bit mask of `names`, leaving out those newer than the running kernel (as runc
    does: an image built for a newer kernel still runs). Unknown names raise."""
    names = list(names)
    unknown = [n for n in names if n not in CAPABILITIES]
    if unknown:
        raise UnknownCapabilityError(unknown, where)
    top = last_cap()
    result = 0
    for name in names:
        bit = CAPABILITIES[name]
        if bit <= top:
            result |= 1 << bit
    return result


def to_names(mask: int) -> list[str]:
    """Names of the bits set in `mask`, unknown bits as "CAP_<n>"."""
    return [NAMES.get(bit, f"CAP_{bit}") for bit in range(64) if mask >> bit & 1]


@dataclass(frozen=True)
class CapabilitySet:
    """OCI `process.capabilities` as bit masks; a list missing from the JSON is empty."""

    bounding: int = 0
    effective: int = 0
    inheritable: int = 0
    permitted: int = 0
    ambient: int = 0
    ignored: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_oci(cls, spec: Mapping[str, Any]) -> CapabilitySet:
        masks: dict[str, int] = {}
        ignored: set[str] = set()
        top = last_cap()
        for key in ("bounding", "effective", "inheritable", "permitted", "ambient"):
            names = spec.get(key) or []
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"process.capabilities.{key} must be a list of strings")
            masks[key] = to_mask(names, f"process.capabilities.{key}")
            ignored.update(n for n in names if CAPABILITIES[n] > top)
        return cls(**masks, ignored=tuple(sorted(ignored)))


def drop_bounding(keep: int) -> None:
    """Drop every capability not in `keep` from the bounding set."""
    for bit in range(last_cap() + 1):
        if not keep >> bit & 1 and syscalls.capbset_read(bit):
            syscalls.capbset_drop(bit)


def set_process_caps(caps: CapabilitySet) -> None:
    """capset effective/permitted/inheritable, then replace the ambient set."""
    syscalls.capset(caps.effective, caps.permitted, caps.inheritable)
    syscalls.ambient_clear_all()
    for bit in range(last_cap() + 1):
        if caps.ambient >> bit & 1:
            syscalls.ambient_raise(bit)


def apply(caps: CapabilitySet) -> None:
    """Apply `caps` to the calling thread, which keeps its uid."""
    drop_bounding(caps.bounding)
    set_process_caps(caps)


def current() -> CapabilitySet:
    """The calling thread's sets, read back from the kernel."""
    effective, permitted, inheritable = syscalls.capget()
    top = last_cap()
    bounding = sum(1 << b for b in range(top + 1) if syscalls.capbset_read(b))
    ambient = sum(1 << b for b in range(top + 1) if syscalls.ambient_is_set(b))
    return CapabilitySet(bounding, effective, inheritable, permitted, ambient)
