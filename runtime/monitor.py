"""The per-container monitor: a zygote entry point that outlives the daemon.

It forks the container init (runtime/init.py) as its own child, so it alone can waitpid()
it and no pid can be recycled under a kill; places it in its cgroup before it runs; holds
the container's stdio (pipes, or a pty for process.terminal) and writes it to the CRI log;
serves the control socket (runtime/control.py); and when the container has exited and its
output is drained, writes exit.json and exits.

It is a child subreaper, so processes a container without its own pid namespace leaves
behind are reaped here rather than by the host's init.
"""

from __future__ import annotations

import binascii
import contextlib
import errno
import fcntl
import gc
import json
import os
import select
import signal
import socket
import struct
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime import control, init
from runtime import syscalls as sc
from runtime.cgroups import CgroupError, CgroupManager, new_manager
from runtime.crilog import DEFAULT_MAX_LINE, UNLIMITED, CriLog
from runtime.statedir import MONITOR_LOG_NAME, SOCKET_NAME, ExitRecord, StateDir
from runtime.zygote import entry_point

_SETUP_TIMEOUT = 60.0
_DRAIN_TIMEOUT = 1.0  # after the init exits, how long to wait for stray writers of stdio
_MAX_REQUEST = 1 << 16


class CreateError(Exception):
    """The container could not be created; the message goes back to the caller."""


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    with contextlib.suppress(OSError):
        os.write(2, f"{stamp} {message}\n".encode())


def _write_id_map(pid: int, name: str, text: str) -> None:
    try:
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(text)
    except OSError as exc:
        raise CreateError(f"writing {name} of the container: {exc.strerror}") from None


class Monitor:
    def __init__(
        self, args: dict[str, Any], state_dir: str, result_fd: int, passed_fds: list[int]
    ) -> None:
        # Paths are plain strings here: pathlib would cost each monitor some 190 KiB of the
        # memory monitors share (bench/monitor_memory.py).
        self.state_dir = state_dir
        self.socket_path = f"{state_dir}/{SOCKET_NAME}"
        self.result_fd = result_fd
        passed = iter(passed_fds)
        self.inherited_stdio: tuple[int, int, int] | None = None
        if args.get("inherit_stdio"):
            self.inherited_stdio = (next(passed), next(passed), next(passed))
        self.console_socket = next(passed) if args.get("console_socket") else None
        # The monitor never parses config.json: every function it runs dirties pages it
        # shares with the zygote (DESIGN budget: 2 MiB PSS). The init parses and applies
        # the spec; the runtime passes the few facts the monitor needs.
        self.bundle = str(args["bundle"])
        self.terminal = bool(args["terminal"])
        self.pid_namespace: str | None = args.get("pid_namespace")
        self.id_maps = {"uid_map": str(args.get("uid_map")), "gid_map": str(args.get("gid_map"))}
        self.cgroups_path = str(args["cgroups_path"])
        encoded = args.get("seccomp_bpf")
        # binascii, not base64: the module's Python layer would cost each monitor memory.
        self.seccomp_bpf = binascii.a2b_base64(encoded) if encoded else None
        # Opaque here (the runtime's parse of config.json, pickled): only the init opens it.
        self.parsed_spec = binascii.a2b_base64(args.get("spec", ""))
        self._cgroup: CgroupManager | None = None
        log_path = args.get("log_path")
        self.log = CriLog(
            str(log_path) if log_path else None,
            int(args.get("max_line") or DEFAULT_MAX_LINE),
            int(args.get("max_log_size", UNLIMITED)),
        )
        self.stdin_once = bool(args.get("stdin_once"))
        # epoll itself, not the selectors module: its Python layers would cost each monitor
        # some 130 KiB of the memory it shares with the others (bench/monitor_memory.py).
        self.poller = select.epoll()
        self.readers: dict[int, tuple[Any, Callable[[Any], None]]] = {}  # fd → (file, handler)
        self.outputs: dict[int, str] = {}
        self.stdin_fd: int | None = None
        self.attachers: dict[socket.socket, bytearray] = {}
        self.attach_stdin: set[socket.socket] = set()
        self.init_pid = 0
        self.channel: socket.socket | None = None
        self.started_at = 0
        self.wait_status: int | None = None
        self.finished_at = 0
        self.start_error = ""
        self.oom_baseline = 0
        self.drain_deadline = 0.0
        self.log_failed = False
        self.create(bool(args.get("stdin")))

    # --- create -----------------------------------------------------------------------

    def _stdio(self, stdin: bool) -> tuple[tuple[int, int, int], list[int]]:
        """The init's stdin/stdout/stderr, and the fds to close here once it has them."""
        if self.terminal:
            master, slave = os.openpty()
            if self.console_socket is not None:
                _send_console(self.console_socket, master)
                return (slave, slave, slave), [slave]
            os.set_blocking(master, False)
            self.outputs[master] = "stdout"
            if stdin:
                self.stdin_fd = master
            return (slave, slave, slave), [slave]
        if self.inherited_stdio is not None:
            return self.inherited_stdio, list(self.inherited_stdio)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        self.outputs[out_r] = "stdout"
        self.outputs[err_r] = "stderr"
        if stdin:
            in_r, self.stdin_fd = os.pipe()
        else:
            in_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        return (in_r, out_w, err_w), [in_r, out_w, err_w]

    @property
    def state(self) -> StateDir:
        """The state directory as the runtime sees it, for the exit record: written as the
        monitor ends, off its steady path."""
        return StateDir(Path(self.state_dir))

    @property
    def cgroup(self) -> CgroupManager:
        if self._cgroup is None:
            self._cgroup = new_manager(self.cgroups_path)
        return self._cgroup

    def _enter_pid_namespace(self) -> None:
        """pid namespaces apply to children: the init forked next is PID 1 of a new one
        ("" asks for that), or a member of the one at the given path."""
        path = self.pid_namespace
        if path is None:
            return
        if not path:
            sc.unshare(sc.CLONE_NEWPID)
            return
        try:
            sc.setns_path(path, sc.CLONE_NEWPID)
        except OSError as exc:
            raise CreateError(f"joining pid namespace {path}: {exc.strerror}") from None

    def _open_control(self) -> None:
        """The control socket, and the wake-up pipe a SIGCHLD writes to."""
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.listener.bind(self.socket_path)
        self.listener.listen(16)
        self.wake_r, wake_w = os.pipe()
        for fd in (self.wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

    def create(self, stdin: bool) -> None:
        sc.set_child_subreaper()
        child_stdio, child_fds = self._stdio(stdin)
        self._open_control()
        self.channel, child_channel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._enter_pid_namespace()
        pid = os.fork()
        if pid == 0:
            self.channel.close()
            os.close(self.result_fd)  # the caller must see end-of-file when the monitor goes
            signal.set_wakeup_fd(-1)
            init.run(
                Path(self.bundle),
                self.parsed_spec,
                self.cgroups_path,
                self.terminal,
                child_channel,
                child_stdio,
                self.seccomp_bpf,
            )
        self.init_pid = pid
        self.parsed_spec = b""  # the init's now
        # Monitors run the same code on the same inherited heap, so most pages each one
        # dirties are alike: where the host runs KSM they are merged (bench/monitor_memory.py).
        # The init has its own memory now and is the last process this one forks, so the
        # setting (inherited, and kept across execve) reaches no container.
        with contextlib.suppress(OSError):  # Linux before 6.4
            sc.set_memory_merge()
        child_channel.close()
        for fd in set(child_fds):
            os.close(fd)
        try:
            self._setup_init()
        except BaseException:
            self._abort()
            raise

    def _setup_init(self) -> None:
        assert self.channel is not None
        self.channel.settimeout(_SETUP_TIMEOUT)
        while True:
            try:
                message = init.receive(self.channel)
            except TimeoutError:
                raise CreateError(f"container init did not finish in {_SETUP_TIMEOUT}s") from None
            if message is None:
                raise CreateError("container init exited during setup")
            op = message.get("op")
            if op == "ready":
                self.oom_baseline = int(message.get("oom_kills", 0))
                return
            if op == "error":
                raise CreateError(str(message.get("message")))
            if op == "warning":
                _log(str(message.get("message")))
            elif op == "pid":
                self.init_pid = int(message["pid"])
            elif op == "userns":
                for name, text in self.id_maps.items():
                    _write_id_map(self.init_pid, name, text)
                init.send(self.channel, "mapped")

    def _abort(self) -> None:
        """Undo create: no process, cgroup or socket may outlive a failed create."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.init_pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.init_pid, 0)
        try:
            self.cgroup.destroy()
        except CgroupError as exc:
            _log(f"removing cgroup after a failed create: {exc}")
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def _oom_kills(self) -> int:
        try:
            return self.cgroup.stats().memory.oom_kills
        except (CgroupError, OSError):
            return 0

    # --- run --------------------------------------------------------------------------

    def run(self) -> int:
        self._watch(self.listener, self._accept)
        self._watch(self.wake_r, self._reap)
        for fd in self.outputs:
            self._watch(fd, self._output)
        self._reap(self.wake_r)  # a signal may have come before the poller watched for it
        while True:
            timeout = None
            if self.wait_status is not None:
                if not self.outputs:
                    break
                timeout = max(self.drain_deadline - time.monotonic(), 0)
                if timeout == 0:
                    break
            for fd, _ in self.poller.poll(-1 if timeout is None else timeout):
                reader = self.readers.get(fd)
                if reader is not None:  # unless a handler before it in this round closed it
                    reader[1](reader[0])
        self._finish()
        return 0

    def _watch(self, file: Any, handler: Callable[[Any], None]) -> None:
        """Call `handler(file)` whenever `file` (a socket or an fd) is readable."""
        fd = file if isinstance(file, int) else file.fileno()
        self.poller.register(fd, select.EPOLLIN)
        self.readers[fd] = (file, handler)

    def _unwatch(self, fd: int) -> None:
        self.poller.unregister(fd)
        del self.readers[fd]

    def _reap(self, fd: Any) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 512):
                pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.init_pid:
                self.wait_status = status
                self.finished_at = time.time_ns()
                self.drain_deadline = time.monotonic() + _DRAIN_TIMEOUT
                self._close_stdin()
                if self.channel is not None:
                    self.channel.close()
                    self.channel = None

    def _output(self, fd: Any) -> None:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: the pty's last slave closed
                raise
            data = b""
        stream = self.outputs[fd]
        if not data:
            self._unwatch(fd)
            del self.outputs[fd]
            if fd == self.stdin_fd:
                self.stdin_fd = None
            os.close(fd)
            self.log.end(stream)
            return
        self._log_write(stream, data)
        self._broadcast(control.STDOUT if stream == "stdout" else control.STDERR, data)

    def _log_write(self, stream: str, data: bytes) -> None:
        try:
            self.log.write(stream, data)
        except OSError as exc:
            # A full disk must not stop the container (its pipe would fill) nor the monitor.
            if not self.log_failed:
                _log(f"writing the container log: {exc}; dropping output until it works")
            self.log_failed = True
        else:
            self.log_failed = False

    def _broadcast(self, kind: int, data: bytes) -> None:
        message = control.frame(kind, data)
        for conn in list(self.attachers):
            try:
                conn.sendall(message)
            except OSError:
                self._detach(conn)

    def _close_stdin(self) -> None:
        fd, self.stdin_fd = self.stdin_fd, None
        if fd is not None and fd not in self.outputs:  # a pty master stays for output
            os.close(fd)

    def _detach(self, conn: socket.socket) -> None:
        self._unwatch(conn.fileno())
        del self.attachers[conn]
        if conn in self.attach_stdin:
            self.attach_stdin.discard(conn)
            if self.stdin_once:
                self._close_stdin()
        conn.close()

    def _attacher_input(self, conn: Any) -> None:
        assert isinstance(conn, socket.socket)
        try:
            chunk = conn.recv(1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            self._detach(conn)
            return
        buffer = self.attachers[conn]
        buffer += chunk
        header = struct.Struct("!BI")
        while len(buffer) >= header.size:
            kind, length = header.unpack_from(buffer)
            if len(buffer) < header.size + length:
                break
            payload = bytes(buffer[header.size : header.size + length])
            del buffer[: header.size + length]
            if kind != control.STDIN or conn not in self.attach_stdin:
                continue
            if not payload:
                self._close_stdin()
            elif self.stdin_fd is not None:
                try:
                    os.write(self.stdin_fd, payload)
                except OSError:  # the container closed its stdin
                    self._close_stdin()

    def _accept(self, listener: Any) -> None:
        # socket.accept() would look the new socket's family and type up in their enums,
        # which costs each monitor some 90 KiB of the memory monitors share.
        fd, _ = self.listener._accept()  # type: ignore[attr-defined]  # accept()'s own first step
        conn = socket.socket(fileno=fd)
        conn.settimeout(5.0)
        keep = False
        try:
            request = self._read_request(conn)
            reply = self._handle(request, conn)
            keep = request.get("op") == "attach"
        except Exception as exc:  # one bad request must not take the container down
            reply = {"error": str(exc) or type(exc).__name__}
        try:
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            keep = False
        if keep:
            self.attachers[conn] = bytearray()
            self._watch(conn, self._attacher_input)
        else:
            conn.close()

    def _read_request(self, conn: socket.socket) -> dict[str, Any]:
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(1024)
            if not chunk or len(data) > _MAX_REQUEST:
                raise ValueError("incomplete request")
            data += chunk
        request: dict[str, Any] = json.loads(data)
        return request

    # --- requests ---------------------------------------------------------------------

    def _status(self) -> str:
        if self.wait_status is not None:
            return "stopped"
        return "running" if self.started_at else "created"

    def _handle(self, request: dict[str, Any], conn: socket.socket) -> dict[str, Any]:
        op = request.get("op")
        if op == "state":
            # "stopped" is only told once exit.json exists, i.e. once the log is complete.
            status = "running" if self.wait_status is not None else self._status()
            return {
                "ok": True,
                "status": status,
                "pid": self.init_pid,
                "started_at": self.started_at,
            }
        if op == "start":
            return self._start()
        if op == "kill":
            return self._kill(int(request["signal"]), bool(request.get("all")))
        if op == "reopen_log":
            self.log.reopen()
            return {"ok": True}
        if op == "resize":
            return self._resize(int(request["width"]), int(request["height"]))
        if op == "attach":
            if self.wait_status is not None:
                raise ValueError("container has exited")
            if request.get("stdin") and self.stdin_fd is not None:
                self.attach_stdin.add(conn)
            return {"ok": True}
        raise ValueError(f"unknown request {op!r}")

    def _start(self) -> dict[str, Any]:
        self._reap(self.wake_r)  # an init killed while created must not count as started
        if self._status() != "created" or self.channel is None:
            raise ValueError(f"container is {self._status()}, not created")
        channel, self.channel = self.channel, None
        with channel:
            try:
                init.send(channel, "start")
                channel.settimeout(_SETUP_TIMEOUT)
                message = init.receive(channel)
            except OSError as exc:
                raise ValueError(f"container init is gone: {exc}") from None
        if message is not None:
            self.start_error = str(message.get("message"))
            raise ValueError(self.start_error)
        self.started_at = time.time_ns()
        return {"ok": True, "started_at": self.started_at}

    def _kill(self, signum: int, all_processes: bool) -> dict[str, Any]:
        if self.wait_status is not None:
            raise ValueError("container is not running")
        if not all_processes:
            os.kill(self.init_pid, signum)
            return {"ok": True}
        # Frozen, nothing can fork away or react (the init could exit on its own when its
        # children die first, and record a status that is not the signal's).
        frozen = False
        with contextlib.suppress(CgroupError, OSError):
            self.cgroup.freeze()
            frozen = True
        try:
            pids = [self.init_pid]
            with contextlib.suppress(CgroupError, OSError):
                pids += [pid for pid in self.cgroup.pids() if pid != self.init_pid]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
        finally:
            if frozen:
                self.cgroup.thaw()
        return {"ok": True}

    def _resize(self, width: int, height: int) -> dict[str, Any]:
        if not self.terminal:
            raise ValueError("container has no terminal")
        master = next(iter(self.outputs), None)
        if master is None:
            raise ValueError("container terminal is closed")
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        return {"ok": True}

    # --- exit -------------------------------------------------------------------------

    def _finish(self) -> None:
        for fd, stream in list(self.outputs.items()):
            with contextlib.suppress(OSError):
                while data := os.read(fd, 1 << 16):
                    self._log_write(stream, data)
            os.close(fd)
        self.outputs.clear()
        try:
            self.log.close()
        except OSError as exc:
            _log(f"closing the container log: {exc}")
        status = self.wait_status or 0
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        record = ExitRecord(
            exit_code=os.waitstatus_to_exitcode(status) if signum is None else 128 + signum,
            signal=signum,
            started_at=self.started_at,
            finished_at=self.finished_at,
            oom_killed=self._oom_kills() > self.oom_baseline,
            error=self.start_error,
        )
        self.state.write_exit(record)
        for conn in list(self.attachers):
            conn.close()
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)


def _send_console(console_socket: int, master: int) -> None:
    """Hand the pty master over as runc does (a name, and the fd as SCM_RIGHTS) and keep
    no copy: whoever listens owns the terminal, and a monitor reading it would steal the
    container's output from them."""
    with socket.socket(fileno=console_socket) as conn:
        try:
            conn.sendmsg(
                [b"/dev/ptmx"],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", master))],
            )
        except OSError as exc:
            raise CreateError(f"sending the pty to the console socket: {exc.strerror}") from None
        finally:
            os.close(master)


def _report(fd: int, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, json.dumps(message).encode())
    os.close(fd)


@entry_point("monitor")
def main(args: dict[str, Any], fds: list[int]) -> int:
    """args: bundle, state_dir, cgroups_path, log_path, max_line, max_log_size, stdin,
    stdin_once, terminal, pid_namespace (None: keep; "": new; path: join), uid_map, gid_map (text),
    inherit_stdio, console_socket;
    fds[0]: where to write {"pid": …} once the init waits for start, or {"error": …};
    then, with inherit_stdio, the process's own stdin, stdout and stderr, and with
    console_socket a connected socket that gets the pty master instead of the monitor."""
    return serve(args, fds[0], lambda state_dir: Monitor(args, state_dir, fds[0], fds[1:]))


def serve(args: dict[str, Any], result: int, make: Callable[[str], Monitor]) -> int:
    """A monitor process's life around the monitor `make` creates: answer on `result`
    with the init's pid (or the error), then run until the container has exited."""
    # What the zygote shares with us stays shared only while nothing writes to its pages;
    # the collector would write to every tracked object it traverses.
    gc.freeze()
    os.set_inheritable(result, False)
    state_dir = str(args["state_dir"])
    sc.set_name("crisp-monitor")
    os.chdir("/")
    null = os.open("/dev/null", os.O_RDWR)
    log = os.open(f"{state_dir}/{MONITOR_LOG_NAME}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for target, fd in ((0, null), (1, null), (2, log)):
        os.dup2(fd, target)
    os.close(null)
    os.close(log)
    try:
        monitor = make(state_dir)
    except Exception as exc:
        _log(f"create failed: {exc}")
        _report(result, {"error": str(exc) or type(exc).__name__})
        return 1
    _report(result, {"pid": monitor.init_pid})
    return monitor.run()
