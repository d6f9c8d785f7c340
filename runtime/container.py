"""The embedded OCI runtime's API: create/start/state/kill/delete containers from bundles.

Each container has a monitor process (runtime/monitor.py) spawned through the zygote and a
state directory state_root/<id>/ (runtime/statedir.py). Everything `Runtime` knows is in
those directories and monitors, so a new `Runtime` on the same state_root — after a daemon
restart — sees the same containers, including exits that happened meanwhile.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import json
import os
import re
import select
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime import control
from runtime.crilog import DEFAULT_MAX_LINE, UNLIMITED
from runtime.procfs import ProcessWatch, start_time, wait_exit
from runtime.spec import Process, Spec, SpecError, id_map_text, load, process_to_oci
from runtime.statedir import ExitRecord, StateDir, read_json, write_json
from runtime.zygote import Zygote, ZygoteError

# What builds containers (the init's setup, cgroup managers, seccomp) is imported by the
# methods that use it: a `crisp-runtime state`, `list` or `kill` needs none of it, and a
# short-lived command pays for every module it imports.
if TYPE_CHECKING:
    from runtime.cgroups import LinuxResources

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_CREATE_TIMEOUT = 90.0
_STOP_TIMEOUT = 10.0
_MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


class ContainerError(Exception):
    """An operation on a container failed; the message names the container and why."""


class ContainerNotFoundError(ContainerError):
    pass


class ContainerExistsError(ContainerError):
    pass


class InvalidStateError(ContainerError):
    """The container is not in a state that allows the operation (e.g. start twice)."""


_CANCEL_POLL_SECONDS = 0.1


class ExecTimeoutError(ContainerError):
    """An exec ran longer than its timeout and was killed."""


class ExecCancelledError(ContainerError):
    """An exec was killed because its caller went away (its `cancel` event was set)."""


class Status(Enum):
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ContainerState:
    id: str
    bundle: Path
    status: Status
    pid: int  # of the container's init (its process) on the host
    created_at: int  # timestamps in ns since the epoch; 0 = not yet
    started_at: int = 0
    finished_at: int = 0
    exit_code: int | None = None
    signal: int | None = None
    oom_killed: bool = False
    error: str = ""
    log_path: Path | None = None


class _Settled:
    """A created or running container as its monitor last described it. Nothing in that
    changes until the daemon starts it (which replaces this entry) or it exits, which the
    exit record or the monitor's death tells: a syscall and a poll of a pidfd, where asking
    the monitor is a round trip to another process."""

    def __init__(self, state: ContainerState, exit_path: Path, monitor: ProcessWatch) -> None:
        self.state = state
        self._exit = str(exit_path)
        self._monitor = monitor

    def unchanged(self) -> bool:
        # access(), not exists(): no exception raised for the usual answer, "absent".
        return not os.access(self._exit, os.F_OK) and not self._monitor.exited()

    def close(self) -> None:
        self._monitor.close()

    @classmethod
    def of(cls, state: ContainerState, exit_path: Path, record: dict[str, Any]) -> _Settled | None:
        """None unless the record names the monitor and it still runs."""
        monitor_pid, monitor_start = record.get("monitor_pid"), record.get("monitor_start")
        if not monitor_pid or monitor_start is None:
            return None
        try:
            monitor = ProcessWatch(int(monitor_pid), int(monitor_start))
        except OSError:  # gone already, or out of descriptors: not remembered, still right
            return None
        return cls(state, exit_path, monitor)


def _readable(fd: int, timeout: float | None) -> bool:
    """Wait until `fd` can be read (poll, not select: the daemon's fds may exceed 1024)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else timeout * 1000))


class Runtime:
    def __init__(
        self,
        state_root: Path,
        zygote: Zygote | None,
        max_log_line: int = DEFAULT_MAX_LINE,
        max_log_size: int = UNLIMITED,
    ) -> None:
        """Without a `zygote` the runtime can query, signal and delete containers but not
        create them or exec in them (a short-lived caller need not fork a fork server).
        `max_log_size` caps each container's log file (see runtime.crilog)."""
        self.state_root = state_root
        self.zygote = zygote
        self.max_log_line = max_log_line
        self.max_log_size = max_log_size
        # Status polls (kubelet, Runtime.wait) of created and running containers answered
        # without a round trip to the monitor: a stat and a poll of a pidfd instead.
        self._settled: dict[str, _Settled] = {}
        state_root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _dir(self, container_id: str) -> StateDir:
        if not _ID.match(container_id):
            raise ContainerNotFoundError(f"container {container_id!r}: invalid id")
        return StateDir(self.state_root / container_id)

    def _fork_server(self) -> Zygote:
        if self.zygote is None:
            raise ContainerError("this runtime was opened without a fork server")
        return self.zygote

    def _record(self, container_id: str) -> tuple[StateDir, dict[str, Any]]:
        state = self._dir(container_id)
        try:
            record = read_json(state.record)
        except (OSError, ValueError):
            record = None
        if record is None or "pid" not in record:
            raise ContainerNotFoundError(f"container {container_id} does not exist")
        return state, record

    # --- create -----------------------------------------------------------------------

    def create(
        self,
        container_id: str,
        bundle: Path,
        *,
        log_path: Path | None = None,
        stdin: bool = False,
        stdin_once: bool = False,
        stdio: tuple[int, int, int] | None = None,
        console_socket: int | None = None,
    ) -> ContainerState:
        """Set the container up from `bundle`/config.json and leave its process blocked
        before execve. Raises SpecError for a bad bundle, ContainerExistsError, or
        ContainerError; on any failure nothing of the container remains.

        By default the monitor holds the process's stdio and logs it. `stdio` instead
        hands the process these fds as they are (nothing is logged or attachable), and
        `console_socket`, a connected unix socket, receives the pty master of a
        process.terminal container (SCM_RIGHTS) in place of the monitor: both serve
        callers that own the container's I/O themselves, as runc's do."""
        if not _ID.match(container_id):
            raise SpecError(
                f"invalid container id {container_id!r}: letters, digits, '_', '.', '-' "
                "(at most 128, not starting with a punctuation)"
            )
        bundle = bundle.absolute()
        spec = load(bundle)
        if spec.process is None:
            raise SpecError(f"{bundle}/config.json: process is required to create a container")
        if console_socket is not None and not spec.process.terminal:
            raise SpecError("process.terminal is false: no pty to send to the console socket")
        _seccomp_program(spec)  # a bad profile fails here, before anything exists
        if not spec.rootfs(bundle).is_dir():
            raise SpecError(f"root.path {spec.rootfs(bundle)} is not a directory")
        if log_path is not None and not log_path.parent.is_dir():
            raise SpecError(f"log path {log_path}: directory {log_path.parent} does not exist")
        state = StateDir(self.state_root / container_id)
        if len(os.fsencode(state.socket)) > _MAX_SOCKET_PATH:
            raise ContainerError(f"state root {self.state_root} is too long for a unix socket")
        try:
            state.path.mkdir(mode=0o700)
        except FileExistsError:
            raise ContainerExistsError(f"container {container_id} already exists") from None
        cgroups_path = spec.linux.cgroups_path or f"/{container_id}"
        record: dict[str, Any] = {
            "id": container_id,
            "bundle": str(bundle),
            "log_path": None if log_path is None else str(log_path),
            "cgroups_path": cgroups_path,
            "created_at": time.time_ns(),
        }
        try:
            write_json(state.record, record)
            record.update(
                self._spawn_monitor(state, record, spec, (stdin, stdin_once), stdio, console_socket)
            )
            write_json(state.record, record)
        except BaseException:
            self._remove(state, record, kill=False)
            raise
        # What the monitor has just answered; asking it again would cost a round trip.
        created = ContainerState(
            id=container_id,
            bundle=bundle,
            status=Status.CREATED,
            pid=int(record["pid"]),
            created_at=int(record["created_at"]),
            log_path=log_path,
        )
        self._remember(created, state, record)
        return created

    def _spawn_monitor(
        self,
        state: StateDir,
        record: dict[str, Any],
        spec: Spec,
        stdin_flags: tuple[bool, bool],
        stdio: tuple[int, int, int] | None,
        console_socket: int | None,
    ) -> dict[str, Any]:
        assert spec.process is not None
        pid_ns = spec.linux.namespace("pid")
        pid_namespace = None
        import pickle

        from runtime import init

        if pid_ns is not None and not init.pid_namespace_after_user(spec):
            pid_namespace = pid_ns.path or ""
        _make_cgroup(record["id"], record["cgroups_path"], spec)
        args = {
            "terminal": spec.process.terminal,
            "pid_namespace": pid_namespace,
            "uid_map": id_map_text(spec.linux.uid_mappings),
            "gid_map": id_map_text(spec.linux.gid_mappings),
            "bundle": record["bundle"],
            "state_dir": str(state.path),
            "cgroups_path": record["cgroups_path"],
            "log_path": record["log_path"],
            "max_line": self.max_log_line,
            "max_log_size": self.max_log_size,
            "stdin": stdin_flags[0],
            "stdin_once": stdin_flags[1],
            "seccomp_bpf": _seccomp_program(spec),
            # The init would parse config.json again, in a fresh fork where every page the
            # parser touches is copied first: several ms, where unpickling takes a fraction.
            "spec": base64.b64encode(pickle.dumps(spec, pickle.HIGHEST_PROTOCOL)).decode(),
            # The fds after the answer pipe: the process's own stdio, then the socket.
            "inherit_stdio": stdio is not None,
            "console_socket": console_socket is not None,
        }
        extra_fds = [*(stdio or ()), *(() if console_socket is None else (console_socket,))]
        return self._launch_monitor(state, record, "monitor", args, extra_fds)

    def _launch_monitor(
        self,
        state: StateDir,
        record: dict[str, Any],
        entry: str,
        args: dict[str, Any],
        extra_fds: builtins.list[int],
    ) -> dict[str, Any]:
        """Spawn the monitor (zygote entry point `entry`) and wait for its answer; records
        its pid and start time in `record` and returns the container init's pid."""
        read_end, write_end = os.pipe()
        try:
            try:
                monitor = self._fork_server().spawn(entry, args, [write_end, *extra_fds])
            finally:
                os.close(write_end)
            record["monitor_pid"] = monitor
            record["monitor_start"] = start_time(monitor)
            data = os.read(read_end, 1 << 16) if _readable(read_end, _CREATE_TIMEOUT) else b""
        except ZygoteError as exc:
            raise ContainerError(f"container {record['id']}: {exc}") from None
        finally:
            os.close(read_end)
        if not data:
            try:
                last_words = state.monitor_log.read_text(errors="replace")[-500:].strip()
            except OSError:
                last_words = ""
            raise ContainerError(
                f"container {record['id']}: the monitor exited without an answer: {last_words}"
            )
        reply: dict[str, Any] = json.loads(data)
        if "error" in reply:
            raise ContainerError(f"container {record['id']}: {reply['error']}")
        return {"pid": int(reply["pid"])}

    def problem(self) -> str | None:
        """Why containers cannot be created now, or None (the embedded runtime always can)."""
        return None

    def close(self) -> None:
        """The daemon stops. The state root is volatile: no empty directory stays behind."""
        with contextlib.suppress(OSError):
            self.state_root.rmdir()

    # --- queries ----------------------------------------------------------------------

    def state(self, container_id: str) -> ContainerState:
        settled = self._settled.get(container_id)
        if settled is not None:
            if settled.unchanged():
                return settled.state
            if self._settled.pop(container_id, None) is settled:
                settled.close()
        state, record = self._record(container_id)
        exit_record = state.read_exit()
        reply: dict[str, Any] = {}
        if exit_record is None:
            try:
                reply = control.call(state.socket, {"op": "state"}, timeout=10.0)
            except control.MonitorGoneError:
                exit_record = state.read_exit() or ExitRecord(
                    exit_code=255,
                    signal=None,
                    started_at=0,
                    finished_at=0,
                    oom_killed=False,
                    error=f"the monitor died without recording an exit (see {state.monitor_log})",
                )
        log_path = record.get("log_path")
        common: dict[str, Any] = {
            "id": container_id,
            "bundle": Path(record["bundle"]),
            "pid": int(record["pid"]),
            "created_at": int(record["created_at"]),
            "log_path": None if log_path is None else Path(log_path),
        }
        if exit_record is None:
            current = ContainerState(
                status=Status(reply["status"]), started_at=int(reply["started_at"]), **common
            )
            self._remember(current, state, record)
            return current
        return ContainerState(
            status=Status.STOPPED,
            started_at=exit_record.started_at,
            finished_at=exit_record.finished_at,
            exit_code=exit_record.exit_code,
            signal=exit_record.signal,
            oom_killed=exit_record.oom_killed,
            error=exit_record.error,
            **common,
        )

    def _remember(
        self,
        current: ContainerState,
        state: StateDir,
        record: dict[str, Any],
        replace: bool = False,
    ) -> None:
        """Keep `current` for the next queries. Only StartContainer `replace`s an entry: a
        query that raced with it may hold the older, created state."""
        settled = _Settled.of(current, state.exit, record)
        if settled is None:
            return
        if replace:
            previous = self._settled.pop(current.id, None)
            if previous is not None:
                previous.close()
        # Another thread may have remembered it meanwhile: one entry, one pidfd.
        if self._settled.setdefault(current.id, settled) is not settled:
            settled.close()

    def list(self) -> builtins.list[ContainerState]:
        result = []
        for entry in sorted(self.state_root.iterdir()):
            if entry.is_dir() and _ID.match(entry.name):
                with contextlib.suppress(ContainerNotFoundError):
                    result.append(self.state(entry.name))
        return result

    # --- operations -------------------------------------------------------------------

    def _call(self, container_id: str, request: dict[str, Any]) -> dict[str, Any]:
        return self._call_monitor(*self._record(container_id), request)

    def _call_monitor(
        self, state: StateDir, record: dict[str, Any], request: dict[str, Any]
    ) -> dict[str, Any]:
        container_id = record["id"]
        if state.exit.exists():
            raise InvalidStateError(f"container {container_id} is stopped")
        try:
            return control.call(state.socket, request)
        except control.MonitorGoneError:
            raise InvalidStateError(f"container {container_id} is stopped") from None
        except control.ControlError as exc:
            raise ContainerError(f"container {container_id}: {exc}") from None

    def start(self, container_id: str) -> None:
        """Let the created container's process execve; errors (such as an executable that
        cannot be run) are raised here."""
        state, record = self._record(container_id)
        reply = self._call_monitor(state, record, {"op": "start"})
        log_path = record.get("log_path")
        running = ContainerState(
            id=container_id,
            bundle=Path(record["bundle"]),
            status=Status.RUNNING,
            pid=int(record["pid"]),
            created_at=int(record["created_at"]),
            started_at=int(reply["started_at"]),
            log_path=None if log_path is None else Path(log_path),
        )
        self._remember(running, state, record, replace=True)

    def kill(self, container_id: str, signum: int, all: bool = False) -> None:
        """Send `signum` to the container's process, or with `all` to every process in its
        cgroup. A pid-namespace init only gets signals it handles, and SIGKILL."""
        self._call(container_id, {"op": "kill", "signal": int(signum), "all": all})

    def reopen_log(self, container_id: str) -> None:
        self._call(container_id, {"op": "reopen_log"})

    def resize(self, container_id: str, width: int, height: int) -> None:
        self._call(container_id, {"op": "resize", "width": width, "height": height})

    def attach(self, container_id: str, stdin: bool = False) -> control.Attachment:
        state, _ = self._record(container_id)
        try:
            return control.attach(state.socket, stdin)
        except control.MonitorGoneError:
            raise InvalidStateError(f"container {container_id} is stopped") from None
        except control.ControlError as exc:
            raise ContainerError(f"container {container_id}: {exc}") from None

    def processes(self, container_id: str) -> builtins.list[int]:
        """Host pids of every process in the container's cgroup (none once it is gone)."""
        from runtime.cgroups import CgroupError, new_manager

        _, record = self._record(container_id)
        try:
            return new_manager(record["cgroups_path"]).pids()
        except (CgroupError, OSError):
            return []

    def update(self, container_id: str, resources: LinuxResources) -> None:
        from runtime.cgroups import CgroupError, new_manager

        _, record = self._record(container_id)
        try:
            new_manager(record["cgroups_path"]).update(resources)
        except CgroupError as exc:
            raise ContainerError(f"container {container_id}: {exc}") from None

    def process(self, container_id: str) -> Process:
        """The container's own process from its config.json: the base for an exec that
        should run with the same user, capabilities and limits."""
        _, record = self._record(container_id)
        spec = load(Path(record["bundle"]))
        if spec.process is None:
            raise ContainerError(f"container {container_id}: config.json has no process")
        return spec.process

    def exec(
        self,
        container_id: str,
        process: Process,
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> int:
        """Run `process` in the running container (its namespaces, cgroup and seccomp
        profile) with the given stdio fds (/dev/null for those left out; a pty slave for
        all three with process.terminal) and return its exit code (128 + signal number if
        a signal ended it). After `timeout` seconds it is killed and ExecTimeoutError
        raised; a process that cannot be executed raises ContainerError."""
        report = self._spawn_exec(container_id, process, (stdin, stdout, stderr))
        try:
            return self._exec_result(container_id, report, timeout, cancel)
        finally:
            os.close(report)

    def exec_detached(
        self,
        container_id: str,
        process: Process,
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> int:
        """Start `process` as `exec` does, but return its host pid as soon as it has
        executed and leave it running; its helper still reaps it."""
        report = self._spawn_exec(container_id, process, (stdin, stdout, stderr))
        try:
            return self._exec_started(container_id, report)
        finally:
            os.close(report)

    def _spawn_exec(
        self, container_id: str, process: Process, stdio_fds: tuple[int | None, ...]
    ) -> int:
        """Spawn the exec helper; returns the read end of its report pipe."""
        _, record = self._record(container_id)
        current = self.state(container_id)
        if current.status is not Status.RUNNING:
            raise InvalidStateError(f"container {container_id} is {current.status.value}")
        started = start_time(current.pid)
        if started is None:
            raise InvalidStateError(f"container {container_id} is stopped")
        bpf = _seccomp_program(load(Path(record["bundle"])))
        args = {
            "process": process_to_oci(process),
            "pid": current.pid,
            "start_time": started,
            "cgroups_path": record["cgroups_path"],
            "seccomp_bpf": bpf,
        }
        return self._spawn_exec_helper(container_id, "exec", args, stdio_fds)

    def _spawn_exec_helper(
        self,
        container_id: str,
        entry: str,
        args: dict[str, Any],
        stdio_fds: tuple[int | None, ...],
    ) -> int:
        """Spawn the exec helper (zygote entry point `entry`) with the process's stdio
        (/dev/null for those left out); returns the read end of its report pipe."""
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        read_end, write_end = os.pipe()
        stdio = [null if fd is None else fd for fd in stdio_fds]
        try:
            self._fork_server().spawn(entry, args, [*stdio, write_end])
        except (ZygoteError, ContainerError) as exc:
            os.close(read_end)
            raise ContainerError(f"container {container_id}: exec: {exc}") from None
        finally:
            os.close(write_end)
            os.close(null)
        return read_end

    def _exec_started(self, container_id: str, report: int) -> int:
        buffer = b""
        pid = 0
        while True:
            chunk = os.read(report, 1 << 16)
            if not chunk:
                raise ContainerError(f"container {container_id}: exec helper exited unexpectedly")
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                if "error" in message:
                    raise ContainerError(f"container {container_id}: exec: {message['error']}")
                if "pid" in message:
                    pid = int(message["pid"])
                else:  # started (or, for a very short process, already exited)
                    return pid

    def _exec_result(
        self,
        container_id: str,
        report: int,
        timeout: float | None,
        cancel: threading.Event | None,
    ) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        buffer = b""
        pid = 0
        while True:
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                if "pid" in message:
                    pid = int(message["pid"])
                elif "started" in message:
                    continue
                elif "error" in message:
                    raise ContainerError(f"container {container_id}: exec: {message['error']}")
                else:
                    return int(message["exit_code"])
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            if cancel is not None:
                # Wake up now and then to notice a caller that went away.
                left = _CANCEL_POLL_SECONDS if left is None else min(left, _CANCEL_POLL_SECONDS)
            if not _readable(report, left):
                cancelled = cancel is not None and cancel.is_set()
                timed_out = deadline is not None and time.monotonic() >= deadline
                if not (cancelled or timed_out):
                    continue
                if pid:
                    # Not reaped until its helper reads our kill, so the pid is still its.
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                if cancelled:
                    raise ExecCancelledError(f"container {container_id}: exec cancelled")
                raise ExecTimeoutError(f"container {container_id}: exec timed out after {timeout}s")
            chunk = os.read(report, 1 << 16)
            if not chunk:
                raise ContainerError(f"container {container_id}: exec helper exited unexpectedly")
            buffer += chunk

    def wait(self, container_id: str, timeout: float) -> ContainerState:
        """Until the container has stopped, or raise ContainerError after `timeout`."""
        deadline = time.monotonic() + timeout
        _, record = self._record(container_id)
        while True:
            current = self.state(container_id)
            if current.status is Status.STOPPED:
                return current
            left = deadline - time.monotonic()
            if left <= 0:
                raise ContainerError(f"container {container_id} still runs after {timeout}s")
            # The monitor exits as soon as it has recorded the exit: wake up then.
            wait_exit(int(record["monitor_pid"]), record.get("monitor_start"), left)

    def delete(self, container_id: str, force: bool = False) -> None:
        """Remove a stopped (or created) container: its cgroup and state directory. A
        running one is refused unless `force`, which kills it first. Also removes what a
        create interrupted by a daemon crash left behind."""
        state = self._dir(container_id)
        partial = read_json(state.record) if state.record.exists() else None
        if partial is not None and "pid" not in partial:
            self._remove_interrupted(state, partial)
            return
        state, record = self._record(container_id)
        current = self.state(container_id)
        if current.status is Status.RUNNING and not force:
            raise InvalidStateError(
                f"container {container_id} is running: stop it first or delete with force"
            )
        if current.status is not Status.STOPPED:
            with contextlib.suppress(InvalidStateError):
                self.kill(container_id, signal.SIGKILL, all=True)
            self.wait(container_id, _STOP_TIMEOUT)
        self._remove(state, record, kill=True)

    def _remove_interrupted(self, state: StateDir, record: dict[str, Any]) -> None:
        # Its monitor's pid was never recorded: stop it through its socket, if any.
        with contextlib.suppress(control.ControlError, OSError):
            control.call(state.socket, {"op": "kill", "signal": int(signal.SIGKILL)}, 5.0)
        deadline = time.monotonic() + _STOP_TIMEOUT
        while state.socket.exists() and time.monotonic() < deadline:
            try:
                control.call(state.socket, {"op": "state"}, 1.0)
            except control.MonitorGoneError:
                break
            except (control.ControlError, OSError):
                pass
            time.sleep(0.01)
        self._remove(state, record, kill=True)

    def _remove(self, state: StateDir, record: dict[str, Any], kill: bool) -> None:
        """Remove what the container left: wait for its monitor, then its cgroup (killing
        stragglers only when `kill`: a failed create must not kill what it did not start)
        and its state directory."""
        settled = self._settled.pop(record["id"], None)
        if settled is not None:
            settled.close()
        monitor = record.get("monitor_pid")
        if monitor and not state.exit.exists():
            # A create that failed after the monitor answered leaves the init waiting.
            with contextlib.suppress(control.ControlError, OSError):
                control.call(state.socket, {"op": "kill", "signal": int(signal.SIGKILL)}, 5.0)
        if monitor and record.get("monitor_start") is not None:
            self._wait_monitor(int(monitor), int(record["monitor_start"]))
        from runtime.cgroups import CgroupError, new_manager

        manager = new_manager(record["cgroups_path"])
        try:
            if kill and manager.exists():
                manager.kill()
            manager.destroy()
        except CgroupError as exc:
            if kill:
                raise ContainerError(f"container {record['id']}: {exc}") from None
        shutil.rmtree(state.path, ignore_errors=True)

    def _wait_monitor(self, pid: int, started: int) -> None:
        """Give the monitor time to finish; one that hangs is killed (it is ours: same pid
        and start time as recorded)."""
        if wait_exit(pid, started, _STOP_TIMEOUT):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not wait_exit(pid, started, _STOP_TIMEOUT):
            raise ContainerError(f"monitor {pid} does not exit even after SIGKILL")


def _make_cgroup(container_id: str, path: str, spec: Spec) -> None:
    """Make the container's cgroup with its limits, for the init to join. Here, in a warm
    process, that costs a fraction of what it does in the freshly forked init, where every
    page Python touches is copied first. Removed again with the container (_remove)."""
    from runtime.cgroups import CgroupError, new_manager

    try:
        manager = new_manager(path)
        manager.create()
        manager.set(spec.linux.resources)
    except (CgroupError, ValueError) as exc:
        raise ContainerError(f"container {container_id}: cgroup {path}: {exc}") from None


def _seccomp_program(spec: Spec) -> str | None:
    """The spec's seccomp profile compiled to BPF (base64, to travel as JSON), or None."""
    if spec.linux.seccomp is None:
        return None
    from runtime import seccomp

    try:
        program = seccomp.program(dict(spec.linux.seccomp))
    except seccomp.SeccompError as e:
        raise SpecError(f"linux.seccomp: {e}") from e
    return base64.b64encode(program).decode()
