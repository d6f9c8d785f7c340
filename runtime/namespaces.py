"""Namespaces that outlive their processes: create net/ipc/uts (and pid) namespaces through
the fork server, pin them with bind mounts, and the private mount that holds the pins.

The daemon is threaded, so it never unshares itself: a child spawned by the zygote does, sets
the hostname and sysctls from inside, and either becomes the pause process or waits until
the daemon has pinned its namespaces and then exits. Mounts belong to a mount namespace, not a
thread, so the daemon bind-mounts /proc/<pid>/ns/* itself.

With id mappings, the child first makes a user namespace (the daemon writes its maps), and
the other namespaces are then made inside it, so that they belong to it: root of the user
namespace may then configure them, and nobody else.

The pin root is bind-mounted onto itself and made private: on a host whose / is shared
(systemd), pins would otherwise propagate into peer mount namespaces, and a copy left there
keeps the namespace alive after crisp unpins it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from runtime import pause, syscalls
from runtime.spec import IdMapping, id_map_text
from runtime.zygote import Zygote, entry_point

KINDS = ("net", "ipc", "uts")
PINNED_KINDS = ("user", *KINDS)  # every pin a pod directory may hold
_CLONE = {
    "net": syscalls.CLONE_NEWNET,
    "ipc": syscalls.CLONE_NEWIPC,
    "uts": syscalls.CLONE_NEWUTS,
}
_ENTRY = "namespace-holder"
_MAX_REPLY = 4096
_MAPPED = b"mapped"  # the daemon has written the holder's uid and gid maps


class NamespaceError(RuntimeError):
    """Namespaces could not be created, configured or pinned."""


class SysctlError(NamespaceError):
    """A sysctl could not be written inside the new namespaces (unknown name, bad value)."""


@dataclass(frozen=True)
class NamespaceSpec:
    new: tuple[str, ...]  # which of KINDS to create; the others stay the host's
    new_pid: bool = False  # the pause process becomes PID 1 of a new PID namespace
    hostname: str = ""  # set inside the new uts namespace
    sysctls: Mapping[str, str] = field(default_factory=dict)
    keep_process: bool = True  # run the pause process in them; else pins alone hold them
    # A new user namespace with these maps owns the others; none without mappings.
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()

    @property
    def new_user(self) -> bool:
        return bool(self.uid_mappings)


@dataclass(frozen=True)
class PinnedNamespaces:
    pins: dict[str, str]  # kind → pin path
    pid: int  # the pause process, 0 without one
    start_time: int  # of `pid`, to recognise it after pid reuse; 0 without one


def create(
    zygote: Zygote, spec: NamespaceSpec, pin_dir: Path, timeout: float = 10.0
) -> PinnedNamespaces:
    """Create and pin the namespaces of `spec` under `pin_dir` (one file per kind).
    On failure nothing is left: no pin, no process."""
    unknown = set(spec.new) - set(KINDS)
    if unknown:
        raise NamespaceError(f"unknown namespace kinds {sorted(unknown)}")
    if spec.new_pid and not spec.keep_process:
        raise NamespaceError("a new PID namespace needs the pause process as its init")
    if bool(spec.uid_mappings) != bool(spec.gid_mappings):
        raise NamespaceError("a user namespace needs both uid and gid mappings")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours:
        try:
            zygote.spawn(
                _ENTRY,
                {
                    "flags": sum(_CLONE[k] for k in spec.new),
                    "new_pid": spec.new_pid,
                    "hostname": spec.hostname,
                    "sysctls": dict(spec.sysctls),
                    "keep_process": spec.keep_process,
                    "new_user": spec.new_user,
                },
                [theirs.fileno()],
            )
        finally:
            theirs.close()
        ours.settimeout(timeout)
        reply = _expect(ours)
        if spec.new_user:
            _write_id_maps(int(reply["userns"]), spec.uid_mappings, spec.gid_mappings)
            ours.send(_MAPPED)
            reply = _expect(ours)
        pid = int(reply["pid"])
        pins: dict[str, str] = {}
        try:
            pin_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if spec.new_user:
                pins["user"] = str(pin(pid, "user", pin_dir / "user"))
            for kind in spec.new:
                pins[kind] = str(pin(pid, kind, pin_dir / kind))
            if not spec.keep_process:
                return PinnedNamespaces(pins, 0, 0)  # closing `ours` lets the holder exit
            # The socket is close-on-exec in the holder: end of file means pause runs.
            _expect_end(ours)
            started = pause.start_time(pid)
            if started is None:
                raise NamespaceError(f"pause process {pid} exited right after it started")
            return PinnedNamespaces(pins, pid, started)
        except BaseException:
            for path in pins.values():
                unpin(path)
            _kill_quietly(pid)
            raise


def _write_id_maps(
    pid: int, uid_mappings: tuple[IdMapping, ...], gid_mappings: tuple[IdMapping, ...]
) -> None:
    """Give process `pid`'s new user namespace its maps (written from outside it: only a
    process with CAP_SETUID over the parent namespace may map more than its own id)."""
    for name, mappings in (("uid_map", uid_mappings), ("gid_map", gid_mappings)):
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(id_map_text(mappings))
        except OSError as e:
            raise NamespaceError(f"cannot write the {name} of process {pid}: {e.strerror}") from e


def _expect(sock: socket.socket) -> dict[str, Any]:
    try:
        data = sock.recv(_MAX_REPLY)
    except TimeoutError:
        raise NamespaceError("namespace holder did not answer in time") from None
    if not data:
        raise NamespaceError("namespace holder exited without an answer")
    reply: dict[str, Any] = json.loads(data)
    _raise_reported(reply)
    return reply


def _expect_end(sock: socket.socket) -> None:
    try:
        data = sock.recv(_MAX_REPLY)
    except TimeoutError:
        raise NamespaceError("pause process did not start in time") from None
    if data:
        _raise_reported(json.loads(data))


def _raise_reported(reply: dict[str, Any]) -> None:
    if "error" in reply:
        cls = SysctlError if reply.get("kind") == "sysctl" else NamespaceError
        raise cls(str(reply["error"]))


def _kill_quietly(pid: int) -> None:
    started = pause.start_time(pid)
    if started is not None:
        with contextlib.suppress(OSError, TimeoutError):
            pause.stop(pid, started, timeout=2.0)


@entry_point(_ENTRY)
def _hold(args: dict[str, Any], fds: list[int]) -> int:
    """Runs in a freshly forked, single-threaded child of the fork server."""
    os.set_inheritable(fds[0], False)
    sock = socket.socket(fileno=os.dup(fds[0]))
    if args["new_user"]:
        try:
            syscalls.unshare(syscalls.CLONE_NEWUSER)
        except OSError as e:
            _report(sock, {"error": f"cannot create a user namespace: {e}"})
            return 1
        _report(sock, {"userns": os.getpid()})
        if sock.recv(len(_MAPPED)) != _MAPPED:
            return 1  # the daemon could not map it, or went away
        try:
            _become_namespace_root()
        except OSError as e:
            _report(sock, {"error": f"cannot become root of the user namespace: {e}"})
            return 1
    try:
        syscalls.unshare(int(args["flags"]))
        if args["hostname"]:
            syscalls.sethostname(str(args["hostname"]))
    except OSError as e:
        _report(sock, {"error": f"cannot create namespaces: {e}"})
        return 1
    for name, value in dict(args["sysctls"]).items():
        try:
            write_sysctl(str(name), str(value))
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) else str(e)
            _report(sock, {"error": f"sysctl {name}={value}: {reason}", "kind": "sysctl"})
            return 1
    if not args["keep_process"]:
        _report(sock, {"pid": os.getpid()})
        sock.recv(1)  # returns when the daemon has pinned the namespaces and closed its end
        return 0
    if args["new_pid"]:
        try:
            syscalls.unshare(syscalls.CLONE_NEWPID)
        except OSError as e:
            _report(sock, {"error": f"cannot create a PID namespace: {e}"})
            return 1
        child = os.fork()
        if child == 0:
            _become_pause(sock)  # PID 1 of the new namespace
        _report(sock, {"pid": child})
        return 0
    _report(sock, {"pid": os.getpid()})
    _become_pause(sock)


def _become_namespace_root() -> None:
    """Take the ids that map to root of the new user namespace, so that what this process
    makes (and the pause process it becomes) is owned by that root, not by an unmapped id."""
    syscalls.set_keepcaps(True)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    syscalls.set_keepcaps(False)


def _become_pause(sock: socket.socket) -> NoReturn:
    try:
        pause.exec_pause()
    except OSError as e:
        _report(sock, {"error": f"cannot exec the pause process: {e}"})
    os._exit(1)


def _report(sock: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        sock.send(json.dumps(message).encode())


def sysctl_path(name: str) -> Path:
    """/proc/sys file of a sysctl given as `net.ipv4.ip_forward` or `net/ipv4/ip_forward`."""
    relative = name if "/" in name else name.replace(".", "/")
    if not relative or any(part in ("", ".", "..") for part in relative.split("/")):
        raise ValueError(f"invalid sysctl name {name!r}")
    return Path("/proc/sys", relative)


def write_sysctl(name: str, value: str) -> None:
    # /proc/sys/net and the ipc sysctls resolve to the namespaces of the writing process.
    with open(sysctl_path(name), "w") as f:
        f.write(value)


# --- pins ---


def pin(pid: int, kind: str, path: Path) -> Path:
    """Bind-mount /proc/<pid>/ns/<kind> onto `path` (created empty)."""
    path.touch(mode=0o600, exist_ok=True)
    try:
        syscalls.mount(f"/proc/{pid}/ns/{kind}", path, None, syscalls.MS_BIND)
    except OSError as e:
        path.unlink(missing_ok=True)
        raise NamespaceError(f"cannot pin {kind} namespace of process {pid}: {e}") from e
    return path


def unpin(path: str | Path) -> None:
    """Unmount and remove a pin; idempotent."""
    unmount(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def is_pinned(path: str | Path) -> bool:
    """Whether a namespace is bind-mounted at `path` (every nsfs file shares one device)."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except FileNotFoundError:
        return False


def unmount(path: str | Path) -> None:
    """Lazily unmount whatever is mounted at `path`; nothing mounted is fine."""
    try:
        syscalls.umount2(path, syscalls.MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise


def mount_shm(path: Path, size_bytes: int) -> None:
    """A pod's /dev/shm: a tmpfs its containers bind-mount (and so share)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o755)
    flags = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
    syscalls.mount("shm", path, "tmpfs", flags, f"mode=1777,size={size_bytes}")


def mount_points() -> list[str]:
    """Every mount point of this mount namespace, from /proc/self/mountinfo."""
    with open("/proc/self/mountinfo") as f:
        return [_unescape(line.split()[4]) for line in f if line.strip()]


def mounts_under(directory: str | Path) -> list[str]:
    prefix = os.fspath(directory).rstrip("/") + "/"
    return [m for m in mount_points() if m.startswith(prefix)]


def _unescape(field_: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    if "\\" not in field_:
        return field_  # nearly every mount point: skip the loop below
    out, i = [], 0
    while i < len(field_):
        code = field_[i + 1 : i + 4]
        if field_[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def prepare_pin_root(directory: Path) -> None:
    """Make `directory` a private mount of its own (idempotent, also across restarts)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o711)
    if os.path.realpath(directory) not in mount_points():
        syscalls.mount(directory, directory, None, syscalls.MS_BIND | syscalls.MS_REC)
    syscalls.mount(None, directory, None, syscalls.MS_PRIVATE | syscalls.MS_REC)


def release_pin_root(directory: Path) -> bool:
    """Undo prepare_pin_root if nothing is left inside; True if it was released."""
    try:
        if any(directory.iterdir()):
            return False
    except FileNotFoundError:
        return True
    unmount(directory)
    with contextlib.suppress(FileNotFoundError):
        directory.rmdir()
    return True
