"""libseccomp through ctypes: compile an OCI `linux.seccomp` object into a filter and load it.

`compile()` builds the filter without touching the calling process, so the daemon can
`validate()` a profile at create time; `apply()` compiles and loads it into the calling
thread, last thing before execve in the container init. Most of the cost is libseccomp
generating BPF at load time (~10 ms for RuntimeDefault), so a caller may instead export
`Filter.bpf()` once per distinct profile and install it in each child with `load_bpf()`.

Semantics follow runc, so a profile behaves the same under crisp as under runc/crun:
- syscall names libseccomp does not know are skipped (the profile may be newer than the
  library or name another architecture's calls); `Filter.skipped` lists them;
- rules whose action equals the default action are dropped (libseccomp refuses them);
- conditions of one rule are ANDed, unless an argument index repeats, in which case each
  condition becomes its own rule (ORed), as runc has always done;
- no_new_privs is NOT set by loading: the runtime decides it from `process.noNewPrivileges`.
  Without it the kernel only accepts a filter from a thread with CAP_SYS_ADMIN, so a caller
  that drops capabilities first must set no_new_privs, or load before dropping them.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from runtime import syscalls


class SeccompError(ValueError):
    """A profile that cannot be compiled; the message names the offending field."""


# Actions (seccomp.h); ERRNO and TRACE carry a 16-bit value in the low bits.
ACT_KILL_THREAD = 0x00000000
ACT_KILL_PROCESS = 0x80000000
ACT_TRAP = 0x00030000
ACT_ERRNO = 0x00050000
ACT_TRACE = 0x7FF00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000
_ACTIONS: Mapping[str, int] = {
    "SCMP_ACT_KILL": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": ACT_TRAP,
    "SCMP_ACT_ERRNO": ACT_ERRNO,
    "SCMP_ACT_TRACE": ACT_TRACE,
    "SCMP_ACT_LOG": ACT_LOG,
    "SCMP_ACT_ALLOW": ACT_ALLOW,
}
_WITH_VALUE = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})

# enum scmp_compare.
_OPS: Mapping[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# enum scmp_filter_attr.
_ATTR_CTL_NNP = 3
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_API_SYSRAWRC = 9

_FLAG_ATTRS: Mapping[str, int] = {
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
}
# TSYNC only matters to a multi-threaded loader (the container init is single-threaded);
# WAIT_KILLABLE_RECV only to SCMP_ACT_NOTIFY, which is refused anyway. runc ignores both.
_IGNORED_FLAGS = frozenset({"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"})

_BPF_MAXINSNS = 4096
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_NR_SCMP_ERROR = -1
_MAX_ARGS = 6
_U64 = (1 << 64) - 1


class _ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class _Version(ctypes.Structure):
    _fields_ = (("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint))


@functools.cache
def _lib() -> ctypes.CDLL:
    # Loaded on first use so that importing this module never fails on a host without it.
    lib = ctypes.CDLL("libseccomp.so.2")
    ctx, u32, c_int = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "seccomp_init": (ctx, [u32]),
        "seccomp_release": (None, [ctx]),
        "seccomp_arch_add": (c_int, [ctx, u32]),
        "seccomp_arch_native": (u32, []),
        "seccomp_arch_resolve_name": (u32, [ctypes.c_char_p]),
        "seccomp_syscall_resolve_name": (c_int, [ctypes.c_char_p]),
        "seccomp_attr_set": (c_int, [ctx, c_int, u32]),
        "seccomp_rule_add_array": (c_int, [ctx, u32, c_int, ctypes.c_uint, ctypes.c_void_p]),
        "seccomp_load": (c_int, [ctx]),
        "seccomp_export_bpf": (c_int, [ctx, c_int]),
        "seccomp_version": (ctypes.POINTER(_Version), []),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    return lib


def library_version() -> tuple[int, int, int]:
    """The loaded libseccomp's (major, minor, micro)."""
    version = _lib().seccomp_version().contents
    return (version.major, version.minor, version.micro)


def syscall_number(name: str) -> int | None:
    """The native architecture's number for syscall `name`, or None if it has none."""
    number: int = _lib().seccomp_syscall_resolve_name(name.encode())
    return number if number >= 0 else None


def _os_error(rc: int, call: str) -> OSError:
    return OSError(-rc, f"{call}: {os.strerror(-rc)}")


class Filter:
    """A compiled libseccomp filter context; release it (or use `with`) when done."""

    def __init__(self, ctx: int, skipped: Sequence[str], flags: Sequence[str]) -> None:
        self._ctx: int | None = ctx
        self.skipped = tuple(skipped)
        # Kernel filter flags set from the profile; `load_bpf()` cannot pass them.
        self.flags = tuple(flags)

    def _handle(self) -> int:
        if self._ctx is None:
            raise ValueError("seccomp filter already released")
        return self._ctx

    def load(self) -> None:
        """Install the filter in the calling thread; irreversible."""
        rc = _lib().seccomp_load(self._handle())
        if rc == -errno.EACCES:
            raise OSError(
                errno.EACCES,
                "seccomp_load: needs no_new_privs or CAP_SYS_ADMIN in the calling thread",
            )
        if rc < 0:
            raise _os_error(rc, "seccomp_load")

    def export_bpf(self, fd: int) -> None:
        """Write the BPF program (struct sock_filter[]) to `fd`."""
        rc = _lib().seccomp_export_bpf(self._handle(), fd)
        if rc < 0:
            raise _os_error(rc, f"seccomp_export_bpf(fd={fd})")

    def bpf(self) -> bytes:
        """The BPF program, 8 bytes per instruction."""
        fd = os.memfd_create("crisp-seccomp-bpf", os.MFD_CLOEXEC)
        try:
            self.export_bpf(fd)
            size = os.lseek(fd, 0, os.SEEK_END)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._ctx is not None:
            _lib().seccomp_release(self._ctx)
            self._ctx = None

    def __enter__(self) -> Filter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _uint(value: object, field: str, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise SeccompError(f"{field}: expected an integer in 0..{top}, got {value!r}")
    return value


def _list(value: object, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SeccompError(f"{field}: expected a list, got {type(value).__name__}")
    return value


def _action(name: object, value: object, field: str, value_field: str) -> int:
    if name == "SCMP_ACT_NOTIFY":
        raise SeccompError(f"{field}: SCMP_ACT_NOTIFY (seccomp agents) is not supported")
    if not isinstance(name, str) or name not in _ACTIONS:
        raise SeccompError(f"{field}: unknown action {name!r}")
    if name not in _WITH_VALUE:
        if value is not None:
            raise SeccompError(f"{value_field}: only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE")
        return _ACTIONS[name]
    # Without an explicit value both default to EPERM, as in runc.
    code = errno.EPERM if value is None else _uint(value, value_field, 0xFFFF)
    return _ACTIONS[name] | code


def _conditions(args: list[Any], field: str) -> list[list[_ArgCmp]]:
    """The argument groups to add as separate rules (see the module docstring)."""
    conditions: list[_ArgCmp] = []
    for index, arg in enumerate(args):
        where = f"{field}[{index}]"
        if not isinstance(arg, Mapping):
            raise SeccompError(f"{where}: expected an object")
        op = arg.get("op")
        if not isinstance(op, str) or op not in _OPS:
            raise SeccompError(f"{where}.op: unknown operator {op!r}")
        conditions.append(
            _ArgCmp(
                _uint(arg.get("index"), f"{where}.index", _MAX_ARGS - 1),
                _OPS[op],
                _uint(arg.get("value"), f"{where}.value", _U64),
                _uint(arg.get("valueTwo", 0), f"{where}.valueTwo", _U64),
            )
        )
    if len({c.arg for c in conditions}) < len(conditions):
        return [[c] for c in conditions]
    return [conditions]


def _check(rc: int, message: str) -> None:
    if rc < 0:
        raise SeccompError(f"{message}: {os.strerror(-rc)}")


def _version() -> str:
    return ".".join(map(str, library_version()))


def _add_architectures(lib: ctypes.CDLL, ctx: int, names: list[Any]) -> None:
    for index, name in enumerate(names):
        field = f"architectures[{index}]"
        token = 0
        if isinstance(name, str) and name.startswith("SCMP_ARCH_"):
            token = lib.seccomp_arch_resolve_name(name.removeprefix("SCMP_ARCH_").lower().encode())
        if not token:
            raise SeccompError(f"{field}: unknown architecture {name!r} (libseccomp {_version()})")
        rc = lib.seccomp_arch_add(ctx, token)
        if rc != -errno.EEXIST:  # the native one, or a repeat: already there is fine
            _check(rc, f"{field}: cannot add {name}")


def _set_flags(lib: ctypes.CDLL, ctx: int, flags: list[Any]) -> list[str]:
    kept: list[str] = []
    for index, flag in enumerate(flags):
        field = f"flags[{index}]"
        if flag in _IGNORED_FLAGS:
            continue
        if not isinstance(flag, str) or flag not in _FLAG_ATTRS:
            raise SeccompError(f"{field}: unknown flag {flag!r}")
        _check(lib.seccomp_attr_set(ctx, _FLAG_ATTRS[flag], 1), f"{field}: {flag} unsupported")
        kept.append(flag)
    return kept


def _add_rules(lib: ctypes.CDLL, ctx: int, entries: list[Any], default: int) -> list[str]:
    skipped: list[str] = []
    for index, entry in enumerate(entries):
        field = f"syscalls[{index}]"
        if not isinstance(entry, Mapping):
            raise SeccompError(f"{field}: expected an object")
        names = _list(entry.get("names"), f"{field}.names")
        if not names or not all(isinstance(n, str) and n for n in names):
            raise SeccompError(f"{field}.names: expected a non-empty list of syscall names")
        action = _action(
            entry.get("action"), entry.get("errnoRet"), f"{field}.action", f"{field}.errnoRet"
        )
        groups = _conditions(_list(entry.get("args"), f"{field}.args"), f"{field}.args")
        if action == default:
            continue
        for name in names:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number == _NR_SCMP_ERROR:
                skipped.append(name)
                continue
            for group in groups:
                array = (_ArgCmp * len(group))(*group)
                rc = lib.seccomp_rule_add_array(ctx, action, number, len(group), array)
                _check(rc, f"{field}: rule for {name!r} rejected by libseccomp")
    return skipped


def compile(profile: Mapping[str, Any]) -> Filter:
    """Build a filter from an OCI `linux.seccomp` object without loading it."""
    if not isinstance(profile, Mapping):
        raise SeccompError("linux.seccomp: expected an object")
    default = _action(
        profile.get("defaultAction"),
        profile.get("defaultErrnoRet"),
        "defaultAction",
        "defaultErrnoRet",
    )
    lib = _lib()
    ctx = lib.seccomp_init(default)
    if not ctx:  # the name is known, so this kernel or library lacks the action
        action = profile["defaultAction"]
        raise SeccompError(f"defaultAction: {action} unsupported here (libseccomp {_version()})")
    try:
        # The runtime owns no_new_privs; raw return codes keep the kernel's errno on load.
        _check(lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0), "seccomp_attr_set(CTL_NNP)")
        _check(lib.seccomp_attr_set(ctx, _ATTR_API_SYSRAWRC, 1), "seccomp_attr_set(SYSRAWRC)")
        _add_architectures(lib, ctx, _list(profile.get("architectures"), "architectures"))
        flags = _set_flags(lib, ctx, _list(profile.get("flags"), "flags"))
        skipped = _add_rules(lib, ctx, _list(profile.get("syscalls"), "syscalls"), default)
    except BaseException:
        lib.seccomp_release(ctx)
        raise
    return Filter(ctx, skipped, flags)


_PROGRAMS: dict[str, bytes] = {}
_PROGRAMS_KEPT = 64


def program(profile: Mapping[str, Any]) -> bytes:
    """The BPF program of `profile`, for `load_bpf` in a child.

    Compiled in the daemon once per distinct profile: libseccomp is not inside the
    container's rootfs, and generating the BPF costs ~15 ms that a container start should
    not pay each time. Profiles with kernel filter flags are refused (prctl cannot pass them).
    """
    key = json.dumps(profile, sort_keys=True)
    cached = _PROGRAMS.get(key)
    if cached is not None:
        return cached
    with compile(profile) as compiled:
        if compiled.flags:
            raise SeccompError(f"flags: {', '.join(compiled.flags)} are not supported by crisp")
        bpf = compiled.bpf()
    if len(_PROGRAMS) >= _PROGRAMS_KEPT:
        _PROGRAMS.pop(next(iter(_PROGRAMS)))
    _PROGRAMS[key] = bpf
    return bpf


def validate(profile: Mapping[str, Any]) -> tuple[str, ...]:
    """Raise SeccompError if `profile` cannot be compiled here; return the syscall names
    that would be skipped. Loads nothing, so it is safe in the daemon."""
    with compile(profile) as compiled:
        return compiled.skipped


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def load_bpf(program: bytes) -> None:
    """Install a program from `Filter.bpf()` in the calling thread.

    libseccomp generates the BPF inside `Filter.load()`, which is most of its cost; a
    caller that compiles each distinct profile once and hands children the bytes skips
    that. Only for filters without `flags` (prctl cannot pass them)."""
    if not program or len(program) % 8:
        raise ValueError(f"not a BPF program: {len(program)} bytes")
    if len(program) // 8 > _BPF_MAXINSNS:
        raise ValueError(f"BPF program of {len(program) // 8} instructions, over the kernel's 4096")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    try:
        syscalls.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
    except PermissionError as exc:
        raise PermissionError(
            exc.errno, "prctl(PR_SET_SECCOMP): needs no_new_privs or CAP_SYS_ADMIN"
        ) from None


def apply(profile: Mapping[str, Any]) -> None:
    """Compile `profile` and load it into the calling thread."""
    with compile(profile) as compiled:
        compiled.load()
