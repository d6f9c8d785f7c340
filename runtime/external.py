"""An external runc-compatible binary (runc, crun) as a runtime handler.

Containers get crisp's own monitor all the same (runtime/oci_monitor.py): it runs the
binary's `create` and `start`, holds the container's stdio, writes the CRI log and the exit
record, so queries, attach, resize and log reopening work as for the embedded runtime, and
the container outlives the daemon. Signals, resource updates and deletion go to the binary
(`kill`, `update --resources`, `delete --force`), and an exec is its `exec --detach` under a
helper that waits for the process (runtime/oci_exec.py).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any

from runtime.cgroups import CgroupVersion, LinuxResources, find_mounts
from runtime.cgroups.resources import Cpu, Memory
from runtime.cgroups.v1 import CONTROLLERS
from runtime.container import ContainerError, InvalidStateError, Runtime, Status
from runtime.crilog import DEFAULT_MAX_LINE, UNLIMITED
from runtime.spec import Process, Spec, process_to_oci
from runtime.statedir import StateDir, write_json
from runtime.zygote import Zygote

_COMMAND_TIMEOUT = 60.0


class ExternalRuntime(Runtime):
    def __init__(
        self,
        name: str,
        binary: Path,
        binary_root: Path,
        state_root: Path,
        zygote: Zygote | None,
        max_log_line: int = DEFAULT_MAX_LINE,
        max_log_size: int = UNLIMITED,
    ) -> None:
        super().__init__(state_root, zygote, max_log_line, max_log_size)
        self.name = name
        self.binary = binary
        self.binary_root = binary_root
        self._unmanaged_hierarchies = _unmanaged_hierarchies()

    def problem(self) -> str | None:
        if not self.binary.is_file():
            return f"runtime handler {self.name!r}: binary {self.binary} does not exist"
        if not os.access(self.binary, os.X_OK):
            return f"runtime handler {self.name!r}: binary {self.binary} is not executable"
        return None

    def _run(self, container_id: str, *args: str) -> None:
        """Run one subcommand of the binary; its error output becomes the ContainerError."""
        command = [str(self.binary), "--root", str(self.binary_root), *args]
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_COMMAND_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ContainerError(f"container {container_id}: {self.binary}: {exc}") from None
        if done.returncode != 0:
            message = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise ContainerError(
                f"container {container_id}: {self.binary.name} {args[0]}: "
                f"{message or f'exit status {done.returncode}'}"
            )

    # --- create -----------------------------------------------------------------------

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
        problem = self.problem()
        if problem is not None:
            raise ContainerError(f"container {record['id']}: {problem}")
        if stdio is not None or console_socket is not None:
            raise ContainerError(
                f"container {record['id']}: runtime handler {self.name!r} keeps the "
                "container's stdio in its monitor"
            )
        self.binary_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        args = {
            "binary": str(self.binary),
            "root": str(self.binary_root),
            "id": record["id"],
            "terminal": spec.process.terminal,
            "bundle": record["bundle"],
            "state_dir": str(state.path),
            "cgroups_path": record["cgroups_path"],
            "log_path": record["log_path"],
            "max_line": self.max_log_line,
            "max_log_size": self.max_log_size,
            "stdin": stdin_flags[0],
            "stdin_once": stdin_flags[1],
        }
        return self._launch_monitor(state, record, "oci-monitor", args, [])

    # --- operations -------------------------------------------------------------------

    def kill(self, container_id: str, signum: int, all: bool = False) -> None:
        state, _ = self._record(container_id)
        if state.exit.exists():
            raise InvalidStateError(f"container {container_id} is stopped")
        try:
            self._run(container_id, "kill", *(["--all"] if all else []), container_id, str(signum))
        except ContainerError:
            if self.state(container_id).status is Status.STOPPED:
                raise InvalidStateError(f"container {container_id} is stopped") from None
            raise

    def update(self, container_id: str, resources: LinuxResources) -> None:
        state, _ = self._record(container_id)
        # A file, not "-" for standard input: runc and crun both take a path.
        document = state.path / "resources.json"
        write_json(document, _oci_resources(resources))
        try:
            self._run(container_id, "update", "--resources", str(document), container_id)
        finally:
            document.unlink(missing_ok=True)

    def _spawn_exec(
        self, container_id: str, process: Process, stdio_fds: tuple[int | None, ...]
    ) -> int:
        """The binary's exec under the "oci-exec" helper, which reports as the embedded
        runtime's helper does (and relays the pty of a process.terminal exec)."""
        state, _ = self._record(container_id)
        current = self.state(container_id)
        if current.status is not Status.RUNNING:
            raise InvalidStateError(f"container {container_id} is {current.status.value}")
        args = {
            "binary": str(self.binary),
            "root": str(self.binary_root),
            "id": container_id,
            "state_dir": str(state.path),
            "process": process_to_oci(process),
        }
        return self._spawn_exec_helper(container_id, "oci-exec", args, stdio_fds)

    def _remove(self, state: StateDir, record: dict[str, Any], kill: bool) -> None:
        if (self.binary_root / record["id"]).exists():
            # First: with --force it kills what is left, and the monitor then sees the
            # init go and finishes, as the embedded runtime's removal expects.
            self._run(record["id"], "delete", "--force", record["id"])
        self._remove_unmanaged_parents(str(record["cgroups_path"]))
        super()._remove(state, record, kill)

    def _remove_unmanaged_parents(self, cgroups_path: str) -> None:
        """The binary makes the container's cgroup path in every hierarchy, also in those
        crisp does not drive and so would never remove the parents from: there, those left
        empty go with the container, all but the topmost (the parent of every pod)."""
        if ":" in cgroups_path:  # "slice:prefix:name": the systemd driver's, not a path
            return
        parts = Path(cgroups_path.strip("/")).parts
        for hierarchy in self._unmanaged_hierarchies:
            for depth in range(len(parts), 1, -1):
                try:
                    (hierarchy / Path(*parts[:depth])).rmdir()
                except FileNotFoundError:
                    continue
                except OSError:  # in use by another container of the pod, or by others
                    break

    def close(self) -> None:
        super().close()
        with contextlib.suppress(OSError):
            self.binary_root.rmdir()


def _unmanaged_hierarchies() -> list[Path]:
    """Named v1 hierarchies (name=systemd) and, on a hybrid host, the cgroup2 one: crisp's
    v1 manager drives neither, runc joins both."""
    mounts = find_mounts()
    if mounts.version is not CgroupVersion.V1:
        return []
    named = {point for option, point in mounts.v1.items() if option not in CONTROLLERS}
    return sorted(named | ({mounts.unified} if mounts.unified else set()))


def _oci_resources(resources: LinuxResources) -> dict[str, Any]:
    """The OCI JSON of what CRI updates carry (memory, CPU, pids, hugepages, unified);
    devices and block I/O are never updated live by crisp."""
    document: dict[str, Any] = {}
    if resources.memory is not None:
        document["memory"] = _without_none(_memory(resources.memory))
    if resources.cpu is not None:
        document["cpu"] = _without_none(_cpu(resources.cpu))
    if resources.pids is not None:
        document["pids"] = {"limit": resources.pids.limit}
    if resources.hugepage_limits:
        document["hugepageLimits"] = [
            {"pageSize": h.page_size, "limit": h.limit} for h in resources.hugepage_limits
        ]
    if resources.unified:
        document["unified"] = dict(resources.unified)
    return document


def _memory(memory: Memory) -> dict[str, Any]:
    return {
        "limit": memory.limit,
        "reservation": memory.reservation,
        "swap": memory.swap,
        "swappiness": memory.swappiness,
        "disableOOMKiller": memory.disable_oom_killer,
    }


def _cpu(cpu: Cpu) -> dict[str, Any]:
    return {
        "shares": cpu.shares,
        "quota": cpu.quota,
        "burst": cpu.burst,
        "period": cpu.period,
        "realtimeRuntime": cpu.realtime_runtime,
        "realtimePeriod": cpu.realtime_period,
        "cpus": cpu.cpus,
        "mems": cpu.mems,
        "idle": cpu.idle,
    }


def _without_none(section: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in section.items() if value is not None}
