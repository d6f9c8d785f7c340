"""Typed ctypes wrappers for the Linux syscalls that Python 3.11's `os` lacks.

Every wrapper raises `OSError` (the errno-specific subclass, e.g. `PermissionError`)
whose message names the call and its arguments, so a failure deep in container
setup can be traced without a debugger.

Namespace calls act on the calling *thread* (unshare of CLONE_NEWNS/CLONE_FS) or
refuse to work in a multi-threaded process (CLONE_NEWUSER, setns into a mount or
user namespace); callers must run them in a single-threaded child.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

_libc = ctypes.CDLL(None, use_errno=True)

# Namespace flags (linux/sched.h).
CLONE_NEWTIME = 0x00000080
CLONE_FS = 0x00000200
CLONE_FILES = 0x00000400
CLONE_NEWNS = 0x00020000
CLONE_SYSVSEM = 0x00040000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Mount flags (linux/mount.h).
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_POSIXACL = 1 << 16
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_KERNMOUNT = 1 << 22
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

# umount2 flags.
MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# prctl options (linux/prctl.h).
PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_GET_KEEPCAPS = 7
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_GET_NAME = 16
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_SET_MEMORY_MERGE = 67  # Linux 6.4+
PR_GET_MEMORY_MERGE = 68
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_LOWER = 3
PR_CAP_AMBIENT_CLEAR_ALL = 4

# personality(2) domains the OCI spec allows (linux/personality.h).
PER_LINUX = 0x0000
PER_LINUX32 = 0x0008
PERSONALITY_QUERY = 0xFFFFFFFF

# capget/capset ABI version with two 32-bit words per set (64 capabilities).
LINUX_CAPABILITY_VERSION_3 = 0x20080522

# glibc has no pivot_root wrapper, so it goes through syscall(2).
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}

_CLONE_NAMES = {value: name for name, value in globals().items() if name.startswith("CLONE_")}
_MS_NAMES = {value: name for name, value in globals().items() if name.startswith("MS_")}
_PR_NAMES = {
    value: name
    for name, value in globals().items()
    if name.startswith("PR_") and not name.startswith("PR_CAP_AMBIENT_")
}
_AMBIENT_NAMES = {
    value: name for name, value in globals().items() if name.startswith("PR_CAP_AMBIENT_")
}
_MNT_NAMES = {
    MNT_FORCE: "MNT_FORCE",
    MNT_DETACH: "MNT_DETACH",
    MNT_EXPIRE: "MNT_EXPIRE",
    UMOUNT_NOFOLLOW: "UMOUNT_NOFOLLOW",
}


def format_flags(flags: int, names: Mapping[int, str]) -> str:
    """Render a bit mask as `A|B|0x…` for error messages."""
    parts = []
    rest = flags
    for bit, name in sorted(names.items()):
        if bit and flags & bit == bit:
            parts.append(name)
            rest &= ~bit
    if rest or not parts:
        parts.append(hex(rest))
    return "|".join(parts)


def _fail(call: str) -> OSError:
    err = ctypes.get_errno()
    # OSError(errno, msg) yields the matching subclass (PermissionError, …).
    return OSError(err, f"{call}: {os.strerror(err)}")


def _check(result: int, call: str) -> int:
    if result == -1:
        raise _fail(call)
    return result


def _path(value: str | os.PathLike[str] | None) -> bytes | None:
    if value is None:
        return None
    return os.fsencode(value)


def unshare(flags: int) -> None:
    """Move the calling thread/process into new namespaces given by CLONE_* flags."""
    # The message only on failure: monitors call this, and its making costs them memory.
    if _libc.unshare(ctypes.c_int(flags)) == -1:
        raise _fail(f"unshare({format_flags(flags, _CLONE_NAMES)})")


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace referred to by `fd` (an open /proc/PID/ns/* file or pidfd)."""
    if _libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)) == -1:  # as unshare: message on failure
        raise _fail(f"setns(fd={fd}, {format_flags(nstype, _CLONE_NAMES) if nstype else '0'})")


def setns_path(path: str | os.PathLike[str], nstype: int = 0) -> None:
    """Join the namespace at `path` (e.g. a pinned /run/…/netns/x bind mount)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, nstype)
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror} (namespace {os.fspath(path)!r})") from None
    finally:
        os.close(fd)


def mount(
    source: str | os.PathLike[str] | None,
    target: str | os.PathLike[str],
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """mount(2). Use flags=MS_BIND|MS_REMOUNT|… for bind remounts and MS_PRIVATE etc for
    propagation changes (source and fstype may then be None)."""
    call = (
        f"mount({None if source is None else os.fspath(source)!r}, {os.fspath(target)!r}, "
        f"{fstype!r}, {format_flags(flags, _MS_NAMES)}, {data!r})"
    )
    result = _libc.mount(
        _path(source),
        _path(target),
        None if fstype is None else fstype.encode(),
        ctypes.c_ulong(flags),
        None if data is None else data.encode(),
    )
    _check(result, call)


def umount2(target: str | os.PathLike[str], flags: int = 0) -> None:
    """umount2(2); MNT_DETACH for a lazy unmount of a busy mount."""
    flag_text = format_flags(flags, _MNT_NAMES) if flags else "0"
    call = f"umount2({os.fspath(target)!r}, {flag_text})"
    _check(_libc.umount2(_path(target), ctypes.c_int(flags)), call)


def pivot_root(new_root: str | os.PathLike[str], put_old: str | os.PathLike[str]) -> None:
    """pivot_root(2). Passing "." for both stacks the old root on top of the new one,
    which is then detached with umount2(".", MNT_DETACH) — no put_old directory needed."""
    machine = os.uname().machine
    try:
        number = _SYS_PIVOT_ROOT[machine]
    except KeyError:
        raise OSError(0, f"pivot_root: syscall number unknown for {machine}") from None
    call = f"pivot_root({os.fspath(new_root)!r}, {os.fspath(put_old)!r})"
    _check(_libc.syscall(ctypes.c_long(number), _path(new_root), _path(put_old)), call)


# mount_setattr(2) came after the syscall tables were unified: the same number everywhere.
_SYS_MOUNT_SETATTR = 442
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x00100000
# The new mount API (Linux 5.2+, idmapped mounts 5.12+): one number on every architecture.
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
MOVE_MOUNT_F_EMPTY_PATH = 0x4


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def mount_setattr(
    path: str | os.PathLike[str], attr_set: int, attr_clr: int = 0, recursive: bool = True
) -> None:
    """Change the attributes of the mount at `path` (and every mount below it when
    `recursive`): the only way to make a whole mount tree read-only (Linux 5.12+)."""
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    call = f"mount_setattr({os.fspath(path)!r}, set={attr_set:#x}, clr={attr_clr:#x})"
    result = _libc.syscall(
        ctypes.c_long(_SYS_MOUNT_SETATTR),
        ctypes.c_int(AT_FDCWD),
        _path(path),
        ctypes.c_uint(flags),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    _check(result, call)


def open_tree(path: str | os.PathLike[str], recursive: bool = False) -> int:
    """A detached copy of the mount at `path` (its whole tree when `recursive`), as a
    close-on-exec fd to change with mount_setattr_idmap and attach with move_mount."""
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    call = f"open_tree({os.fspath(path)!r}, recursive={recursive})"
    result = _libc.syscall(
        ctypes.c_long(_SYS_OPEN_TREE), ctypes.c_int(AT_FDCWD), _path(path), ctypes.c_uint(flags)
    )
    return _check(result, call)


def mount_setattr_idmap(tree_fd: int, userns_fd: int, recursive: bool = False) -> None:
    """Make the detached mount `tree_fd` (from open_tree) show its files' owners through the
    id mappings of the user namespace `userns_fd`: host id H appears as the container id
    that H is mapped to. Needs CAP_SYS_ADMIN where the filesystem was mounted."""
    attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    call = f"mount_setattr(fd={tree_fd}, MOUNT_ATTR_IDMAP, userns_fd={userns_fd})"
    result = _libc.syscall(
        ctypes.c_long(_SYS_MOUNT_SETATTR),
        ctypes.c_int(tree_fd),
        b"",
        ctypes.c_uint(flags),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    _check(result, call)


def move_mount(tree_fd: int, target: str | os.PathLike[str]) -> None:
    """Attach the detached mount `tree_fd` at `target`."""
    call = f"move_mount(fd={tree_fd}, {os.fspath(target)!r})"
    result = _libc.syscall(
        ctypes.c_long(_SYS_MOVE_MOUNT),
        ctypes.c_int(tree_fd),
        b"",
        ctypes.c_int(AT_FDCWD),
        _path(target),
        ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
    )
    _check(result, call)


def sethostname(name: str) -> None:
    """sethostname(2) in the caller's UTS namespace."""
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), f"sethostname({name!r})")


def setdomainname(name: str) -> None:
    """setdomainname(2) in the caller's UTS namespace (OCI `domainname`)."""
    raw = name.encode()
    _check(_libc.setdomainname(raw, ctypes.c_size_t(len(raw))), f"setdomainname({name!r})")


# Typed once, so a call converts its integers in C: every monitor calls prctl, and Python-level
# argument objects (and an error message made in advance) would cost each some 60 KiB of the
# memory monitors share.
_prctl = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    use_errno=True,
)(("prctl", _libc))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """Raw prctl(2); prefer the named helpers below."""
    result: int = _prctl(option, arg2, arg3, arg4, arg5)
    if result == -1:
        raise _fail(_prctl_call(option, arg2, arg3, arg4, arg5))
    return result


def _prctl_call(option: int, *args: int) -> str:
    """A prctl call as its error names it, e.g. prctl(PR_SET_CHILD_SUBREAPER, 1)."""
    shown = [_PR_NAMES.get(option, str(option)), *map(str, args)]
    if option == PR_CAP_AMBIENT:
        shown[1] = _AMBIENT_NAMES.get(args[0], shown[1])
    while len(shown) > 1 and shown[-1] == "0":
        shown.pop()
    return f"prctl({', '.join(shown)})"


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def get_no_new_privs() -> bool:
    return prctl(PR_GET_NO_NEW_PRIVS) == 1


def set_pdeathsig(signum: int) -> None:
    """Deliver `signum` to this process when the thread that forked it exits."""
    prctl(PR_SET_PDEATHSIG, signum)


def get_pdeathsig() -> int:
    value = ctypes.c_int()
    _check(
        _libc.prctl(ctypes.c_int(PR_GET_PDEATHSIG), ctypes.byref(value), 0, 0, 0),
        "prctl(PR_GET_PDEATHSIG)",
    )
    return value.value


def set_child_subreaper(enabled: bool = True) -> None:
    prctl(PR_SET_CHILD_SUBREAPER, int(enabled))


def set_memory_merge(enabled: bool = True) -> None:
    """Offer all of the process's anonymous memory to KSM (merged with identical pages of
    other processes that opted in, when the host runs ksmd). The setting is inherited by
    children and kept across execve(2). EINVAL before Linux 6.4."""
    prctl(PR_SET_MEMORY_MERGE, int(enabled))


def get_memory_merge() -> bool:
    return prctl(PR_GET_MEMORY_MERGE) == 1


def set_keepcaps(enabled: bool) -> None:
    """Keep permitted capabilities across a setuid away from root."""
    prctl(PR_SET_KEEPCAPS, int(enabled))


def set_name(name: str) -> None:
    """Set the thread's comm name (15 bytes max, truncated by the kernel), as
    prctl(PR_SET_NAME) does. Through /proc rather than ctypes: every monitor calls this,
    and ctypes' argument handling dirties some 80 KiB of the memory monitors share."""
    fd = os.open("/proc/thread-self/comm", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, name.encode())
    finally:
        os.close(fd)


def capbset_read(cap: int) -> bool:
    return prctl(PR_CAPBSET_READ, cap) == 1


def capbset_drop(cap: int) -> None:
    """Remove `cap` from the bounding set; needs CAP_SETPCAP in the effective set."""
    prctl(PR_CAPBSET_DROP, cap)


def ambient_raise(cap: int) -> None:
    """Needs `cap` in both the permitted and inheritable sets, else EPERM."""
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)


def ambient_is_set(cap: int) -> bool:
    return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap) == 1


def ambient_clear_all() -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def personality(persona: int) -> int:
    """Set the execution domain; returns the previous one. PERSONALITY_QUERY only reads."""
    result = _libc.personality(ctypes.c_ulong(persona))
    return _check(result, f"personality({persona:#x})")


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_CapDataPair = _CapData * 2


def capget(pid: int = 0) -> tuple[int, int, int]:
    """Return (effective, permitted, inheritable) as 64-bit masks for `pid` (0 = caller)."""
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, pid)
    data = _CapDataPair()
    _check(_libc.capget(ctypes.byref(header), data), f"capget(pid={pid})")
    return (
        data[0].effective | data[1].effective << 32,
        data[0].permitted | data[1].permitted << 32,
        data[0].inheritable | data[1].inheritable << 32,
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's capability sets from 64-bit masks."""
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = _CapDataPair()
    low, high = 0xFFFFFFFF, 32
    for index, shift in enumerate((0, high)):
        data[index].effective = (effective >> shift) & low
        data[index].permitted = (permitted >> shift) & low
        data[index].inheritable = (inheritable >> shift) & low
    call = f"capset(effective={effective:#x}, permitted={permitted:#x}, "
    call += f"inheritable={inheritable:#x})"
    _check(_libc.capset(ctypes.byref(header), data), call)


# Called with the GIL held, so the child starts in the state the caller left, holding it.
_libc_holding_gil = ctypes.PyDLL(None, use_errno=True)


def fork_single_threaded() -> int:
    """fork(2) without CPython's at-fork work; returns 0 in the child, its pid in the parent.

    os.fork() runs the interpreter's at-fork hooks in both processes (threading's and
    logging's re-initialisation, random's reseed), and running that Python code dirties
    some 450 KiB of pages the child shared with its parent: copies every fork-server child
    keeps for its whole life. The hooks repair what other threads held at the fork; a
    process with a single thread has nothing to repair, and must be the only caller."""
    return _check(_libc_holding_gil.fork(), "fork()")
