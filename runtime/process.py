"""The last steps of every process crisp starts in a container (the container's own and
each exec): stdio, signals, identity, capabilities, limits, seccomp, execve.

Order follows the kernel's rules: seccomp goes before the capabilities are dropped unless
no_new_privs is set (installing a filter without it needs CAP_SYS_ADMIN), and after
them, as late as possible, when it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import signal
import stat
import termios
from typing import NoReturn

from runtime import capabilities
from runtime import seccomp as seccomp_filter
from runtime import syscalls as sc
from runtime.spec import Process

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_RLIM_INFINITY_FROM = 2**63  # OCI writes "unlimited" as the uint64 maximum


class SetupError(Exception):
    """Preparing the process failed; the message is what the caller sees."""


def reset_signals() -> None:
    """The process must start with default dispositions, whatever Python or the monitor
    installed (Python ignores SIGPIPE and SIGXFSZ, the monitor handles SIGCHLD)."""
    for signum in signal.valid_signals():
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            with contextlib.suppress(OSError, ValueError):
                signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def attach_stdio(stdio: tuple[int, int, int], terminal: bool) -> None:
    os.setsid()
    if terminal:
        fcntl.ioctl(stdio[0], termios.TIOCSCTTY, 0)
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    for fd in set(stdio):
        if fd > 2:
            os.close(fd)
    # Whatever else the monitor (or the daemon before it) had open must not leak in.
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)


def set_identity(process: Process) -> None:
    user, caps = process.user, process.capabilities
    if caps is not None:
        capabilities.drop_bounding(caps.bounding)
    keep = caps is not None and user.uid != 0
    if keep:
        sc.set_keepcaps(True)
    try:
        os.setgroups(list(user.additional_gids))
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except OSError as exc:
        raise SetupError(f"process.user {user.uid}:{user.gid}: {exc.strerror}") from None
    if keep:
        sc.set_keepcaps(False)
    if caps is not None:
        capabilities.set_process_caps(caps)
    if process.no_new_privileges:
        sc.set_no_new_privs()


def set_rlimits(process: Process) -> None:
    for limit in process.rlimits:
        soft, hard = (
            resource.RLIM_INFINITY if v >= _RLIM_INFINITY_FROM else v
            for v in (limit.soft, limit.hard)
        )
        try:
            resource.setrlimit(limit.resource, (soft, hard))
        except (OSError, ValueError) as exc:
            raise SetupError(f"process.rlimits {limit.type}: {exc}") from None


def find_executable(process: Process) -> str:
    """Path of args[0] as the container's execve will see it, or SetupError naming it."""
    name = process.args[0]
    if "/" in name:
        candidates = [name]
    else:
        search = process.env_value("PATH") or DEFAULT_PATH
        candidates = [os.path.join(d or ".", name) for d in search.split(":")]
    for candidate in candidates:
        try:
            mode = os.stat(candidate).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and os.access(candidate, os.X_OK):
            return candidate
        if "/" in name:
            raise SetupError(f"executable file {name} is not an executable regular file")
    if "/" in name:
        raise SetupError(f"executable file not found: {name}")
    raise SetupError(f"executable file not found in $PATH: {name}")


def prepare(process: Process, seccomp_bpf: bytes | None) -> tuple[str, bytes | None]:
    """Everything up to execve, as the process's user; returns the executable and the
    seccomp program still to load right before execve (None if already loaded).

    Without no_new_privs the filter must go in while the process still has CAP_SYS_ADMIN,
    so before the identity changes; with it, as late as possible."""
    program = seccomp_bpf
    if program is not None and not process.no_new_privileges:
        seccomp_filter.load_bpf(program)
        program = None
    set_identity(process)
    if process.user.umask is not None:
        os.umask(process.user.umask)
    try:
        os.chdir(process.cwd)
    except OSError as exc:
        raise SetupError(f"process.cwd {process.cwd}: {exc.strerror}") from None
    executable = find_executable(process)
    set_rlimits(process)
    return executable, program


def execute(process: Process, executable: str, seccomp_bpf: bytes | None) -> NoReturn:
    if seccomp_bpf is not None:
        seccomp_filter.load_bpf(seccomp_bpf)
    env = dict(entry.split("=", 1) for entry in process.env)
    try:
        os.execve(executable, list(process.args), env)
    except OSError as exc:
        raise SetupError(f"exec {executable}: {exc.strerror}") from None
