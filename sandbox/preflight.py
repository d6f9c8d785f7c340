"""`crisp check`: can this host run crisp's pods and containers? One line per fact, with a hint."""

from __future__ import annotations

import ctypes.util
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from runtime.cgroups import CgroupVersion, find_mounts
from sandbox.network import open_pod_network


class Verdict(Enum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    check: str
    verdict: Verdict
    detail: str
    hint: str = ""


@dataclass(frozen=True)
class HostPaths:
    root_dir: Path
    run_dir: Path
    cni_conf_dir: str
    cni_bin_dirs: Sequence[str]
    cni_default_network: str


_NAMESPACES = ("mnt", "uts", "ipc", "net", "pid", "cgroup", "user")
_REQUIRED_CONTROLLERS = ("cpu", "memory", "pids")
_OPTIONAL_CONTROLLERS = ("cpuset", "cpuacct", "blkio", "io", "hugetlb", "devices", "freezer")
_MIN_FREE_BYTES = 256 * 1024 * 1024
_LOW_FREE_BYTES = 2 * 1024 * 1024 * 1024


def _namespaces() -> Finding:
    missing = [ns for ns in _NAMESPACES if not os.path.exists(f"/proc/self/ns/{ns}")]
    if missing:
        return Finding(
            "namespaces",
            Verdict.FAIL,
            f"kernel lacks {', '.join(missing)} namespaces",
            "use a kernel built with CONFIG_NAMESPACES and every CONFIG_*_NS",
        )
    return Finding("namespaces", Verdict.OK, ", ".join(_NAMESPACES))


def _user_namespaces() -> Finding:
    try:
        limit = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError):
        limit = 0
    if limit <= 0:
        return Finding(
            "user namespaces",
            Verdict.WARN,
            "disabled (user.max_user_namespaces = 0)",
            "sysctl -w user.max_user_namespaces=15000 to run pods with user namespaces",
        )
    return Finding("user namespaces", Verdict.OK, f"up to {limit}")


def _overlayfs() -> Finding:
    filesystems = Path("/proc/filesystems").read_text().split()
    if "overlay" not in filesystems:
        return Finding(
            "overlayfs",
            Verdict.FAIL,
            "the overlay filesystem is not available",
            "modprobe overlay (and add it to /etc/modules)",
        )
    return Finding("overlayfs", Verdict.OK, "available")


def _cgroups() -> Finding:
    mounts = find_mounts()
    if mounts.version is CgroupVersion.V1:
        controllers = set(mounts.v1)
        version = "v1" + (
            " (hybrid, cgroup2 mounted without controllers)" if mounts.unified else ""
        )
    elif mounts.unified is not None:
        text = (mounts.unified / "cgroup.controllers").read_text()
        controllers = set(text.split())
        version = "v2"
    else:
        return Finding(
            "cgroups",
            Verdict.FAIL,
            "no cgroup hierarchy mounted",
            "mount cgroup2 at /sys/fs/cgroup",
        )
    missing = [c for c in _REQUIRED_CONTROLLERS if c not in controllers]
    present = sorted(
        c for c in (*_REQUIRED_CONTROLLERS, *_OPTIONAL_CONTROLLERS) if c in controllers
    )
    if missing:
        return Finding(
            "cgroups",
            Verdict.FAIL,
            f"{version}: missing controllers {', '.join(missing)}",
            "enable them on the kernel command line (e.g. cgroup_enable=memory)",
        )
    return Finding("cgroups", Verdict.OK, f"{version}: {', '.join(present)}")


def _seccomp() -> Finding:
    status = Path("/proc/self/status").read_text()
    if "Seccomp:" not in status:
        return Finding(
            "seccomp",
            Verdict.FAIL,
            "kernel without seccomp",
            "use a kernel with CONFIG_SECCOMP_FILTER",
        )
    if ctypes.util.find_library("seccomp") is None:
        return Finding(
            "seccomp", Verdict.FAIL, "libseccomp not found", "apt-get install libseccomp2"
        )
    return Finding("seccomp", Verdict.OK, "kernel filter support and libseccomp present")


def _network(paths: HostPaths) -> Finding:
    network = open_pod_network(
        paths.cni_conf_dir, paths.cni_bin_dirs, paths.cni_default_network, paths.root_dir
    )
    status = network.status()
    if not status.ready:
        return Finding(
            "CNI network",
            Verdict.FAIL,
            status.message,
            "apt-get install containernetworking-plugins and put a .conflist in the conf dir "
            "(crisp serve writes its default network there when the directory is empty)",
        )
    current = network.network
    detail = f"{current.name} from {current.source}" if current else "ready"
    return Finding("CNI network", Verdict.OK, detail)


def _iptables() -> Finding:
    if shutil.which("iptables") is None:
        return Finding(
            "iptables",
            Verdict.WARN,
            "iptables not on PATH; port mappings and masquerading will fail",
            "apt-get install iptables",
        )
    return Finding("iptables", Verdict.OK, shutil.which("iptables") or "")


def _free_space(path: Path, what: str) -> Finding:
    existing = path
    while not existing.exists():
        existing = existing.parent
    usage = shutil.disk_usage(existing)
    detail = f"{usage.free / 2**30:.1f} GiB free at {existing}"
    if usage.free < _MIN_FREE_BYTES:
        return Finding(what, Verdict.FAIL, detail, f"free space on the filesystem of {path}")
    if usage.free < _LOW_FREE_BYTES:
        return Finding(what, Verdict.WARN, detail, "images and container layers need room")
    return Finding(what, Verdict.OK, detail)


def run_checks(paths: HostPaths) -> Iterator[Finding]:
    checks: list[tuple[str, Callable[[], Finding]]] = [
        ("namespaces", _namespaces),
        ("user namespaces", _user_namespaces),
        ("overlayfs", _overlayfs),
        ("cgroups", _cgroups),
        ("seccomp", _seccomp),
        ("CNI network", lambda: _network(paths)),
        ("iptables", _iptables),
        ("free space", lambda: _free_space(paths.root_dir, "free space (root_dir)")),
    ]
    for name, check in checks:
        try:
            yield check()
        except OSError as e:  # a check that cannot even look is itself a finding
            yield Finding(name, Verdict.FAIL, f"cannot check: {e}")
