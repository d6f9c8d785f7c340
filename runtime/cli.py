"""`crisp-runtime`: the embedded OCI runtime on its own, with runc's command line.

    crisp-runtime [--root DIR] [--log FILE] [--log-format text|json] COMMAND [ARGS]

    create [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] ID
    run    [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] [--detach] ID
    start ID | state ID | delete [--force] ID | kill [--all] ID [SIGNAL]
    exec   [--process FILE | ARGS...] [--tty] [--console-socket SOCK] [--detach]
           [--pid-file FILE] [--cwd DIR] [--env NAME=VALUE] [--user UID[:GID]] ID
    list   [--format table|json] [--quiet]
    ps     [--format table|json] ID [PS_ARGS...]

Every invocation is a short-lived process working on the state directory `--root`
through `Runtime` (runtime/container.py), the same class the daemon uses. Commands that
start processes (create, run, exec) first fork a private fork server, as the daemon does;
what it spawns (the monitor, an exec helper) runs in the fork server's session, away from
this command's, so the container and its monitor outlive this command, and the fork server
ends with it.

Stdio, as runc maps it: without a terminal the container's process inherits the stdin,
stdout and stderr this command was started with. The monitor passes them on and keeps no
copy, so `crisp-runtime create c1 >out` leaves the container writing to `out`, no log file
is written, and — as with runc — a caller reading this command's stdout through a pipe
sees end-of-file only when the container has closed it too. With process.terminal, a
--console-socket is required: the pty master goes there (SCM_RIGHTS, as runc sends it) and
the monitor keeps no copy. `exec --tty` relays the container's terminal to this command's
own terminal, or to a new pty whose master is sent to --console-socket.

A failure prints one line to stderr (and to --log, in --log-format) and exits 1; `exec`
and a foreground `run` exit with the process's exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pwd
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime.container import ContainerError, ContainerNotFoundError, ContainerState, Runtime
from runtime.container import Status as ContainerStatus
from runtime.spec import Process, SpecError, User, load, parse_process

DEFAULT_ROOT = Path("/run/crisp-runtime")
# The state's ociVersion is the bundle's, as runc reports it; this when the bundle has none.
OCI_VERSION = "1.2.0"
# Signals a foreground `run` passes on to the container instead of dying of them.
FORWARDED_SIGNALS = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
_RUN_POLL_SECONDS = 0.05


class UsageError(Exception):
    """Arguments that parse but do not fit together or with the bundle."""


# --- the command line -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crisp-runtime", description="crisp's embedded OCI runtime, runc-compatible"
    )
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help=f"state directory (default {DEFAULT_ROOT})"
    )
    parser.add_argument("--log", type=Path, help="also write errors to this file")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary)
        sub.set_defaults(command=name)
        return sub

    for name, summary in (
        ("create", "set a container up from a bundle; its process waits for start"),
        ("run", "create and start a container, and by default wait for it to exit"),
    ):
        sub = command(name, summary)
        sub.add_argument("--bundle", "-b", type=Path, default=Path("."), help="bundle dir")
        sub.add_argument("--pid-file", type=Path, help="write the process's host pid here")
        sub.add_argument("--console-socket", type=Path, help="unix socket to send the pty to")
        sub.add_argument(
            "--no-new-keyring",
            action="store_true",
            help="accepted as runc's: crisp never gives a container a session keyring",
        )
        if name == "run":
            sub.add_argument("--detach", "-d", action="store_true", help="return once started")
        sub.add_argument("id")
    command("start", "let a created container's process run").add_argument("id")
    command("state", "print the OCI state of a container as JSON").add_argument("id")
    sub = command("kill", "send a signal (default SIGTERM) to a container's process")
    sub.add_argument("--all", "-a", action="store_true", help="to every process it has")
    sub.add_argument("id")
    sub.add_argument("signal", nargs="?", default="SIGTERM")
    sub = command("delete", "remove a stopped or created container")
    sub.add_argument("--force", "-f", action="store_true", help="kill it first if it runs")
    sub.add_argument("id")
    sub = command("exec", "run another process in a running container")
    sub.add_argument("--process", "-p", type=Path, help="OCI process JSON to run")
    sub.add_argument("--tty", "-t", action="store_true", help="give the process a terminal")
    sub.add_argument("--console-socket", type=Path, help="unix socket to send the pty to")
    sub.add_argument("--detach", "-d", action="store_true", help="return once it runs")
    sub.add_argument("--pid-file", type=Path, help="write its host pid here (with --detach)")
    sub.add_argument("--cwd", help="working directory in the container")
    sub.add_argument("--env", "-e", action="append", default=[], metavar="NAME=VALUE")
    sub.add_argument("--user", "-u", metavar="UID[:GID]", help="numeric user (and group)")
    sub.add_argument(
        "--additional-gids", "-g", action="append", type=int, default=[], metavar="GID"
    )
    sub.add_argument("id")
    sub.add_argument("args", nargs=argparse.REMAINDER, help="command and its arguments")
    sub = command("list", "list the containers under --root")
    sub.add_argument("--format", "-f", choices=("table", "json"), default="table")
    sub.add_argument("--quiet", "-q", action="store_true", help="only the ids")
    sub = command("ps", "list the processes of a container")
    sub.add_argument("--format", "-f", choices=("table", "json"), default="table")
    sub.add_argument("id")
    sub.add_argument("ps_args", nargs=argparse.REMAINDER, help="ps options (default -ef)")
    return parser


def parse_signal(text: str) -> int:
    """A signal by number, or by name with or without the SIG prefix, in any case."""
    if text.isdigit():
        number = int(text)
        if number not in {int(s) for s in signal.valid_signals()}:
            raise UsageError(f"invalid signal number {number}")
        return number
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise UsageError(f"unknown signal {text!r}") from None


def parse_user(text: str, base: User, additional_gids: Sequence[int]) -> User:
    uid_text, _, gid_text = text.partition(":")
    try:
        uid = int(uid_text)
        gid = int(gid_text) if gid_text else base.gid
    except ValueError:
        raise UsageError(f"--user {text!r}: expected numeric UID[:GID]") from None
    gids = tuple(additional_gids) or base.additional_gids
    return dataclasses.replace(base, uid=uid, gid=gid, additional_gids=gids)


# --- helpers for the commands -----------------------------------------------------------


def _open_runtime(root: Path, spawning: bool) -> Runtime:
    """A Runtime on `root`; with `spawning`, backed by a fork server of this process's own
    (started here, before anything could start a thread)."""
    if not spawning:
        return Runtime(root, None)
    import runtime.entry_points  # noqa: F401  (registers what the fork server runs)
    from runtime.zygote import Zygote

    return Runtime(root, Zygote())


def _close_runtime(rt: Runtime) -> None:
    if rt.zygote is not None:
        rt.zygote.close()


def _own_stdio() -> tuple[int, int, int]:
    """This command's stdin, stdout and stderr to hand on; /dev/null for any it lacks."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open("/dev/null", os.O_RDWR))
    return fds[0], fds[1], fds[2]


def _connect_console(path: Path) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        conn.connect(str(path))
    except OSError as exc:
        conn.close()
        raise UsageError(f"console socket {path}: {exc.strerror}") from None
    return conn


def _write_pid_file(path: Path, pid: int) -> None:
    """Atomically, as runc does: a reader never sees a half-written pid."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(str(pid))
    os.replace(temporary, path)


def _rfc3339(ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def _owner(path: Path) -> str:
    try:
        uid = path.stat().st_uid
    except OSError:
        return ""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _bundle_config(bundle: Path) -> dict[str, Any]:
    """config.json as it is now; empty if it is gone or unreadable (state still works)."""
    try:
        config = json.loads((bundle / "config.json").read_bytes())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def oci_state(rt: Runtime, current: ContainerState) -> dict[str, Any]:
    """The runtime-spec state of a container, with runc's extra fields (rootfs, created,
    owner); ociVersion, annotations and root.path come from the bundle."""
    config = _bundle_config(current.bundle)
    version = config.get("ociVersion")
    root = config.get("root")
    root_path = root.get("path") if isinstance(root, dict) else None
    annotations = config.get("annotations")
    return {
        "ociVersion": version if isinstance(version, str) and version else OCI_VERSION,
        "id": current.id,
        "pid": 0 if current.status is ContainerStatus.STOPPED else current.pid,
        "status": current.status.value,
        "bundle": str(current.bundle),
        "rootfs": str(current.bundle / root_path) if isinstance(root_path, str) else "",
        "created": _rfc3339(current.created_at),
        "owner": _owner(rt.state_root / current.id),
        "annotations": annotations if isinstance(annotations, dict) else {},
    }


# --- the commands -----------------------------------------------------------------------


def _create(rt: Runtime, args: argparse.Namespace) -> ContainerState:
    bundle: Path = args.bundle.absolute()
    spec = load(bundle)
    terminal = spec.process is not None and spec.process.terminal
    if terminal and args.console_socket is None:
        raise UsageError("process.terminal is true: --console-socket is required for the pty")
    if not terminal and args.console_socket is not None:
        raise UsageError("--console-socket needs process.terminal: true in config.json")
    console = None if args.console_socket is None else _connect_console(args.console_socket)
    try:
        created = rt.create(
            args.id,
            bundle,
            stdio=None if terminal else _own_stdio(),
            console_socket=None if console is None else console.fileno(),
        )
    finally:
        if console is not None:
            console.close()
    if args.pid_file is not None:
        try:
            _write_pid_file(args.pid_file, created.pid)
        except BaseException:
            rt.delete(args.id, force=True)
            raise
    return created


def _run(rt: Runtime, args: argparse.Namespace) -> int:
    _create(rt, args)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ContainerError):
            rt.kill(args.id, signum)

    if not args.detach:
        # Before start: whoever signals us once the process runs reaches the container.
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, forward)
    try:
        rt.start(args.id)
    except BaseException:
        with contextlib.suppress(ContainerError):
            rt.delete(args.id, force=True)
        raise
    if args.detach:
        return 0
    while (current := rt.state(args.id)).status is not ContainerStatus.STOPPED:
        time.sleep(_RUN_POLL_SECONDS)
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    rt.delete(args.id)
    return 255 if current.exit_code is None else current.exit_code


def _exec_process(rt: Runtime, args: argparse.Namespace) -> Process:
    if args.process is not None:
        if args.args:
            raise UsageError("give either --process or a command, not both")
        try:
            raw = json.loads(args.process.read_bytes())
        except (OSError, ValueError) as exc:
            raise UsageError(f"--process {args.process}: {exc}") from None
        return parse_process(raw)
    if not args.args:
        raise UsageError("exec needs a command (or --process FILE)")
    for entry in args.env:
        if "=" not in entry:
            raise UsageError(f"--env {entry!r}: expected NAME=VALUE")
    # As runc: the container's own process, with what the flags change.
    base = rt.process(args.id)
    user = base.user
    if args.user is not None or args.additional_gids:
        user = parse_user(args.user or str(base.user.uid), base.user, args.additional_gids)
    return dataclasses.replace(
        base,
        args=tuple(args.args),
        env=(*base.env, *args.env),
        cwd=args.cwd or base.cwd,
        terminal=args.tty,
        user=user,
    )


def _send_pty_master(conn: socket.socket, master: int) -> None:
    conn.sendmsg([b"/dev/ptmx"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", master))])


def _exec(rt: Runtime, args: argparse.Namespace) -> int:
    rt.state(args.id)  # an unknown container is the first thing to tell
    process = _exec_process(rt, args)
    if args.pid_file is not None and not args.detach:
        raise UsageError("exec --pid-file needs --detach (the pid is only known to the helper)")
    if args.console_socket is not None and not process.terminal:
        raise UsageError("--console-socket needs --tty (or a process with terminal: true)")
    opened: list[int] = []
    try:
        if not process.terminal:
            stdio = _own_stdio()
        elif args.console_socket is not None:
            master, slave = os.openpty()
            opened += [master, slave]
            with _connect_console(args.console_socket) as conn:
                _send_pty_master(conn, master)
            stdio = (slave, slave, slave)
        elif os.isatty(0):
            stdio = (0, 1, 2)
        else:
            raise UsageError("exec --tty needs a terminal on stdin, or --console-socket")
        if args.detach:
            pid = rt.exec_detached(
                args.id, process, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2]
            )
            if args.pid_file is not None:
                _write_pid_file(args.pid_file, pid)
            return 0
        return rt.exec(args.id, process, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2])
    finally:
        for fd in opened:
            os.close(fd)


def _list(rt: Runtime, args: argparse.Namespace) -> None:
    states = [oci_state(rt, current) for current in rt.list()]
    if args.quiet:
        for state in states:
            print(state["id"])
    elif args.format == "json":
        print(json.dumps(states))
    else:
        header = ("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")
        fields = ("id", "pid", "status", "bundle", "created", "owner")
        rows = [header, *[tuple(str(s[f]) for f in fields) for s in states]]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            print("   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _ps(rt: Runtime, args: argparse.Namespace) -> None:
    pids = rt.processes(args.id)
    if args.format == "json":
        print(json.dumps(pids))
        return
    # As runc: run ps(1) and keep the header and the container's rows.
    listing = subprocess.run(
        ["ps", *(args.ps_args or ["-ef"])], capture_output=True, text=True, check=False
    )
    if listing.returncode != 0:
        raise UsageError(f"ps: {listing.stderr.strip() or f'exit status {listing.returncode}'}")
    header, *lines = listing.stdout.splitlines()
    try:
        column = header.split().index("PID")
    except ValueError:
        raise UsageError("ps options must produce a PID column") from None
    print(header)
    wanted = {str(pid) for pid in pids}
    for line in lines:
        words = line.split()
        if len(words) > column and words[column] in wanted:
            print(line)


def dispatch(args: argparse.Namespace) -> int:
    spawning = args.command in ("create", "run", "exec")
    # Absolute: the monitor finds its state directory from "/", its working directory.
    rt = _open_runtime(args.root.absolute(), spawning)
    try:
        if args.command == "create":
            _create(rt, args)
        elif args.command == "run":
            return _run(rt, args)
        elif args.command == "start":
            rt.start(args.id)
        elif args.command == "state":
            print(json.dumps(oci_state(rt, rt.state(args.id)), indent=2))
        elif args.command == "kill":
            rt.kill(args.id, parse_signal(args.signal), all=args.all)
        elif args.command == "delete":
            try:
                rt.delete(args.id, force=args.force)
            except ContainerNotFoundError:
                if not args.force:  # as runc: --force makes deleting nothing a success
                    raise
        elif args.command == "exec":
            return _exec(rt, args)
        elif args.command == "list":
            _list(rt, args)
        else:
            _ps(rt, args)
        return 0
    finally:
        _close_runtime(rt)


def _report_error(message: str, log: Path | None, log_format: str) -> None:
    print(f"crisp-runtime: {message}", file=sys.stderr)
    if log is None:
        return
    now = _rfc3339(time.time_ns())
    if log_format == "json":
        line = json.dumps({"level": "error", "msg": message, "time": now})
    else:
        line = f'time="{now}" level=error msg={json.dumps(message)}'
    with contextlib.suppress(OSError), open(log, "a") as f:
        f.write(line + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return dispatch(args)
    except (ContainerError, SpecError, UsageError) as exc:
        _report_error(str(exc), args.log, args.log_format)
    except OSError as exc:
        _report_error(
            f"{exc.filename or args.command}: {exc.strerror or exc}", args.log, args.log_format
        )
    return 1


if __name__ == "__main__":
    sys.exit(main())
