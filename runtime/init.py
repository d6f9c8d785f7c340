"""The container init: the monitor's child that sets itself up as the container (namespaces,
mounts, identity, limits) and then blocks until `start` before it execve()s the process.

It talks to the monitor over a SOCK_SEQPACKET pair of JSON messages:
    init → monitor: {"op": "userns"}    (new user namespace made; write its id maps)
    monitor → init: {"op": "mapped"}
    init → monitor: {"op": "pid", "pid": …}  (the init forked into a new pid namespace)
    init → monitor: {"op": "warning", "message": …}  (logged, not fatal)
    init → monitor: {"op": "ready", "oom_kills": …} or {"op": "error", "message": …}
    monitor → init: {"op": "start"}
The init's end is close-on-exec, so after "start" the monitor reads end-of-file when the
execve worked and an error message when it did not. End-of-file while the init waits
means the monitor is gone (or the create was aborted): the init exits without executing.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import socket
from pathlib import Path
from typing import Any, NoReturn

from runtime import process as process_setup
from runtime import rootfs
from runtime import syscalls as sc
from runtime.cgroups import CgroupError, new_manager
from runtime.process import SetupError
from runtime.spec import Namespace, Spec, SpecError

NAMESPACE_FLAGS = {
    "pid": sc.CLONE_NEWPID,
    "network": sc.CLONE_NEWNET,
    "mount": sc.CLONE_NEWNS,
    "ipc": sc.CLONE_NEWIPC,
    "uts": sc.CLONE_NEWUTS,
    "user": sc.CLONE_NEWUSER,
    "cgroup": sc.CLONE_NEWCGROUP,
}


def send(channel: socket.socket, op: str, **fields: Any) -> None:
    channel.send(json.dumps({"op": op, **fields}).encode())


def receive(channel: socket.socket) -> dict[str, Any] | None:
    """The next message, or None at end-of-file."""
    data = channel.recv(1 << 16)
    return json.loads(data) if data else None


def _expect(channel: socket.socket, op: str) -> None:
    message = receive(channel)
    if message is None:
        os._exit(1)  # the monitor is gone: nobody wants this container any more
    if message.get("op") != op:
        raise SetupError(f"container init expected {op!r} from the monitor, got {message!r}")


def _namespaces(spec: Spec, channel: socket.socket) -> None:
    joined: list[tuple[Namespace, int]] = []
    try:
        for ns in spec.linux.namespaces:
            if ns.path is not None and ns.type != "pid":  # the monitor joined the pid one
                try:
                    joined.append((ns, os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)))
                except OSError as exc:
                    raise SetupError(f"{ns.type} namespace {ns.path}: {exc.strerror}") from None
        # The user namespace first: it decides what the others may do.
        for ns, fd in sorted(joined, key=lambda item: item[0].type != "user"):
            try:
                sc.setns(fd, NAMESPACE_FLAGS[ns.type])
            except OSError as exc:
                raise SetupError(f"joining {ns.type} namespace {ns.path}: {exc.strerror}") from None
            if ns.type == "user":
                _become_namespace_root(f"user namespace {ns.path}")
    finally:
        for _, fd in joined:
            os.close(fd)
    new = {ns.type for ns in spec.linux.namespaces if ns.path is None and ns.type != "pid"}
    if pid_namespace_after_user(spec):
        new.add("pid")
    if "user" in new:
        sc.unshare(sc.CLONE_NEWUSER)
        send(channel, "userns")
        _expect(channel, "mapped")
        _become_namespace_root("the new user namespace")
        new.discard("user")
    flags = 0
    for kind in new:
        flags |= NAMESPACE_FLAGS[kind]
    if flags:
        sc.unshare(flags)
    if "pid" in new:
        child = os.fork()
        if child:
            # The child is PID 1 of the new namespace; the monitor, a subreaper, adopts it
            # once this process is gone.
            send(channel, "pid", pid=child)
            os._exit(0)


def _become_namespace_root(which: str) -> None:
    """Take the ids of root in the user namespace just entered: files the init makes on
    filesystems mounted inside it need owners mapped there."""
    try:
        sc.set_keepcaps(True)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        sc.set_keepcaps(False)
    except OSError as exc:
        raise SetupError(f"{which} does not map root (id 0): {exc.strerror}") from None


def pid_namespace_after_user(spec: Spec) -> bool:
    """A new pid namespace must belong to the container's user namespace, new or joined
    (or /proc cannot be mounted in it), so the init makes it itself, after entering the
    user namespace, and forks into it; otherwise the monitor makes it before forking the
    init."""
    user, pid = spec.linux.namespace("user"), spec.linux.namespace("pid")
    return user is not None and pid is not None and pid.path is None


def _oom_score_adj(channel: socket.socket, value: int | None) -> None:
    if value is None:
        return
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as exc:
        # Lowering needs CAP_SYS_RESOURCE in the initial namespace, which not every host
        # grants; the container still runs, with the score it inherited.
        send(channel, "warning", message=f"cannot set oom_score_adj={value}: {exc.strerror}")


def _sysctls(values: dict[str, str]) -> None:
    for key, value in values.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as exc:
            raise SetupError(f"linux.sysctl {key}={value!r}: {exc.strerror}") from None


def _join_cgroup(path: str) -> int:
    """Move this process into its cgroup, which the runtime has made with its limits
    (before the process makes a cgroup namespace or uses any memory worth limiting);
    returns the OOM kill count to compare with at exit."""
    try:
        manager = new_manager(path)
        manager.enter()
        return manager.oom_kills()
    except CgroupError as exc:
        raise SetupError(f"cgroup {path}: {exc}") from None


def _setup(
    bundle: Path,
    parsed_spec: bytes,
    cgroups_path: str,
    terminal: bool,
    channel: socket.socket,
    stdio: tuple[int, int, int],
    seccomp_bpf: bytes | None,
) -> NoReturn:
    process_setup.reset_signals()
    spec = pickle.loads(parsed_spec)
    if not isinstance(spec, Spec):
        raise SetupError("the runtime passed no parsed config.json")
    process = spec.process
    if process is None:
        raise SetupError("config.json has no process to run")
    oom_kills = _join_cgroup(cgroups_path)
    console = os.ttyname(stdio[0]) if terminal else None
    process_setup.attach_stdio(stdio, terminal)
    idmapped = rootfs.idmapped_trees(spec, bundle)
    _namespaces(spec, channel)
    _oom_score_adj(channel, process.oom_score_adj)
    _sysctls(dict(spec.linux.sysctl))
    rootfs.setup(spec, bundle, cgroups_path, console, idmapped)
    if spec.hostname:
        sc.sethostname(spec.hostname)
    if spec.domainname:
        sc.setdomainname(spec.domainname)
    executable, seccomp = process_setup.prepare(process, seccomp_bpf)
    send(channel, "ready", oom_kills=oom_kills)
    _expect(channel, "start")
    process_setup.execute(process, executable, seccomp)


def run(
    bundle: Path,
    parsed_spec: bytes,
    cgroups_path: str,
    terminal: bool,
    channel: socket.socket,
    stdio: tuple[int, int, int],
    seccomp_bpf: bytes | None,
) -> NoReturn:
    """Become the container; never returns (execve, or _exit after reporting the error).
    `parsed_spec` is bundle/config.json as the runtime parsed it (a pickled Spec), and
    `seccomp_bpf` its seccomp profile, compiled by the runtime (seccomp.program)."""
    try:
        _setup(bundle, parsed_spec, cgroups_path, terminal, channel, stdio, seccomp_bpf)
    except BaseException as exc:
        known = SetupError | rootfs.RootfsError | SpecError | OSError
        message = str(exc) if isinstance(exc, known) else repr(exc)
        with contextlib.suppress(OSError):
            send(channel, "error", message=message)
    os._exit(1)
