"""`crisp wipe`: the command around sandbox.wipe — refuse while a daemon or anything of crisp
runs, hold the daemon's own locks meanwhile so none can start, then remove the state."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from cri.config import Config
from cri.endpoint import LockFile, StartupError
from cri.state import StateDB, StateError
from sandbox.network import open_pod_network
from sandbox.wipe import WipeError, WipeTarget, remove_state_dirs, running, wipe


def _socket_answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _lock_paths(config: Config) -> list[tuple[Path, str]]:
    """The lock files the daemon holds while it runs (see cri.daemon)."""
    root, run = Path(config.root_dir), Path(config.run_dir)
    locks = [(run / "crisp.lock", f"run_dir {run}"), (root / "crisp.lock", f"root_dir {root}")]
    for path in (config.grpc.socket, config.grpc.image_socket):
        if path:
            socket_path = Path(path)
            locks.append(
                (socket_path.with_name(socket_path.name + ".lock"), f"socket {socket_path}")
            )
    return locks


@contextlib.contextmanager
def _daemon_excluded(config: Config) -> Iterator[list[Path]]:
    """Hold every lock a daemon would take; raises StartupError naming the daemon that has
    one. Yields the lock files, which the wipe must leave to their release."""
    held: list[LockFile] = []
    try:
        for path, what in _lock_paths(config):
            if path.parent.is_dir():
                held.append(LockFile(path, what))
        for socket_path in (config.grpc.socket, config.grpc.image_socket):
            if socket_path and _socket_answers(Path(socket_path)):
                raise StartupError(f"something answers on socket {socket_path}")
        yield [lock.path for lock in held]
    finally:
        for lock in reversed(held):
            lock.release()


def _open_records(root_dir: Path) -> StateDB | None:
    database = root_dir / "crisp.db"
    return StateDB(database) if database.exists() else None


def run_wipe(config: Config) -> int:
    target = WipeTarget(
        root_dir=Path(config.root_dir),
        run_dir=Path(config.run_dir),
        log_dir=Path(config.log_dir),
        cgroup_parent=config.cgroup.parent,
        cni_conf_dir=Path(config.cni.conf_dir),
    )
    try:
        with _daemon_excluded(config) as lock_files:
            records = _open_records(target.root_dir)
            try:
                live = running(target, records)
                if live:
                    print(
                        "crisp wipe: refusing, these still run (remove their pods first, "
                        "e.g. crictl rmp -fa, with the daemon running):",
                        file=sys.stderr,
                    )
                    for line in live:
                        print(f"  {line}", file=sys.stderr)
                    return 1
                # The CNI result cache lies below root_dir: DEL uses what ADD was given.
                network = open_pod_network(
                    config.cni.conf_dir,
                    config.cni.bin_dirs,
                    config.cni.default_network,
                    target.root_dir,
                )
                report = wipe(target, records, network, keep=lock_files)
            finally:
                if records is not None:
                    records.close()
        remove_state_dirs(target, report)
    except StartupError as e:
        print(f"crisp wipe: refusing, a crisp daemon is running: {e}", file=sys.stderr)
        return 1
    except (StateError, WipeError, OSError) as e:
        print(f"crisp wipe: {e}", file=sys.stderr)
        return 1
    for error in report.network_errors:
        print(f"crisp wipe: warning: {error}", file=sys.stderr)
    print(
        f"crisp wipe: took {len(report.networks)} pods off their network, unmounted "
        f"{len(report.unmounted)}, removed {len(report.cgroups)} cgroups, "
        f"{len(report.links)} network devices and {len(report.directories)} directories"
    )
    for directory in report.directories:
        print(f"  removed {directory}")
    return 0
