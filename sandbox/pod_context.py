"""What every pod verb works with: the store, the fork server, the pod network, the node's
runtime handlers, the settings from the daemon's config, and one lock per pod."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cni.network import NetworkManager
from runtime import namespaces
from runtime.cgroups import CgroupManager
from runtime.zygote import Zygote
from sandbox.node import RuntimeHandler
from sandbox.pause_watch import PauseWatch
from sandbox.pod_files import HOST_HOSTS, HOST_RESOLV_CONF
from sandbox.pod_store import PodStore

SHM_SIZE = 64 << 20  # what Docker, containerd and CRI-O give a pod's /dev/shm


@dataclass(frozen=True)
class PodSettings:
    pods_dir: Path  # run_dir/pods: a private mount holding one directory per pod
    cgroup_driver: Literal["cgroupfs", "systemd"]
    cgroup_parent: str  # for pods whose config names none
    drop_infra: bool  # no pause process for pods that do not share their PID namespace
    shm_size: int = SHM_SIZE
    host_resolv_conf: Path = HOST_RESOLV_CONF
    host_hosts: Path = HOST_HOSTS


class PinRoot:
    """run_dir/pods as a private mount (see runtime.namespaces), there only while it holds
    pods: a daemon killed while it has none leaves no mount behind."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # one pod's dir is never made while the root goes
        self._prepared = False

    def make_pod_dir(self, pod_dir: Path) -> None:
        with self._lock:
            if not self._prepared:
                namespaces.prepare_pin_root(self.path)
                self._prepared = True
            pod_dir.mkdir(mode=0o711)

    def remove_pod_dir(self, pod_dir: Path) -> None:
        with self._lock:
            # crisp mounts nothing below a pod dir but its pins and /dev/shm, which are
            # unmounted first, so this cannot reach into a tmpfs or a namespace.
            shutil.rmtree(pod_dir, ignore_errors=True)
            self._release_if_empty()

    def release_if_empty(self) -> None:
        with self._lock:
            self._release_if_empty()

    def _release_if_empty(self) -> None:
        if namespaces.release_pin_root(self.path):
            self._prepared = False


class KeyedLocks:
    """One lock per pod id, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._users: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
            self._users[key] = self._users.get(key, 0) + 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                self._users[key] -= 1
                if not self._users[key]:
                    del self._users[key]
                    del self._locks[key]


@dataclass
class PodContext:
    store: PodStore
    zygote: Zygote
    network: NetworkManager
    handlers: Mapping[str, RuntimeHandler]  # by name
    default_handler: str
    settings: PodSettings
    locks: KeyedLocks
    pin_root: PinRoot
    cgroups: Callable[[str], CgroupManager]  # a manager for a cgroup path
    pauses: PauseWatch = field(default_factory=PauseWatch)
