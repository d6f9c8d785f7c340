"""`crisp check`: can this host run crisp's pods and containers? One line per fact, with a hint."""

from __future__ import annotations

import ctypes.util
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from cni.config import conf_files
from runtime.cgroups import CgroupMounts, find_mounts
from sandbox.network import default_network, open_pod_network


class Verdict(Enum):
    OK = "OK"
    WARN = "WARN"  # crisp runs, but a feature is missing or a choice needs the operator's eye
    FAIL = "FAIL"  # crisp cannot run pods as configured


@dataclass(frozen=True)
class Finding:
    check: str
    verdict: Verdict
    detail: str
    hint: str = ""


@dataclass(frozen=True)
class HostSettings:
    """The part of crisp's configuration the checks judge the host against."""

    root_dir: Path
    cni_conf_dir: str
    cni_bin_dirs: Sequence[str]
    cni_default_network: str
    cni_write_default_network: bool
    cgroup_driver: str


_NAMESPACES = ("mnt", "uts", "ipc", "net", "pid", "cgroup", "user")
_REQUIRED_CONTROLLERS = ("cpu", "memory", "pids")
# What each optional controller buys; v2 builds devices and freezer into the core.
_OPTIONAL_CONTROLLERS = {
    "v1": {
        "cpuset": "CPU and memory-node pinning",
        "cpuacct": "CPU usage in stats",
        "blkio": "block I/O limits and stats",
        "hugetlb": "hugepage limits",
        "devices": "device access rules",
        "freezer": "freezing a container to kill it atomically",
    },
    "v2": {
        "cpuset": "CPU and memory-node pinning",
        "io": "block I/O limits and stats",
        "hugetlb": "hugepage limits",
    },
}
# Recursive read-only mounts need mount_setattr (Linux 5.12).
_MIN_KERNEL = (5, 12)
_KSM_RUN = Path("/sys/kernel/mm/ksm/run")
_MIN_KERNEL_MEMORY_MERGE = (6, 4)
# What KSM saves per monitor: private memory with ksmd off minus with it on, from
# `python -m bench.monitor_memory` against `--ksm` (10 and 50 containers: about 1.6
# against 0.6 MiB; a lone monitor has nothing alike to merge with).
_KSM_SAVING_MIB = 1
_MIN_FREE_BYTES = 256 * 1024 * 1024
_LOW_FREE_BYTES = 2 * 1024 * 1024 * 1024
_CNI_HINT = "apt-get install containernetworking-plugins, or list its directory in cni.bin_dirs"


def _kernel() -> Finding:
    release = os.uname().release
    version = _kernel_release()
    if version is None:
        return Finding("kernel", Verdict.WARN, f"Linux {release}: cannot read the version")
    if version < _MIN_KERNEL:
        return Finding(
            "kernel",
            Verdict.WARN,
            f"Linux {release}: older than {_MIN_KERNEL[0]}.{_MIN_KERNEL[1]}",
            "recursive read-only mounts need Linux 5.12 (mount_setattr)",
        )
    return Finding("kernel", Verdict.OK, f"Linux {release}")


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


def _kernel_release() -> tuple[int, int] | None:
    numbers = os.uname().release.split("-")[0].split(".")
    try:
        return int(numbers[0]), int(numbers[1])
    except (IndexError, ValueError):
        return None


def _ksm() -> Finding:
    """Each container's monitor is a fork of one fork server, and most pages it dirties
    are alike across monitors: monitors offer them to KSM (runtime/monitor.py), which
    merges them only while ksmd runs."""
    try:
        run = _KSM_RUN.read_text().strip()
    except FileNotFoundError:
        return Finding(
            "KSM",
            Verdict.WARN,
            f"not in this kernel (no {_KSM_RUN}): each monitor costs about "
            f"{_KSM_SAVING_MIB} MiB more than with KSM",
            "a kernel built with CONFIG_KSM merges the monitors' alike pages",
        )
    release = _kernel_release()
    if release is not None and release < _MIN_KERNEL_MEMORY_MERGE:
        return Finding(
            "KSM",
            Verdict.WARN,
            f"monitors cannot opt in: prctl(PR_SET_MEMORY_MERGE) needs Linux "
            f"{'.'.join(map(str, _MIN_KERNEL_MEMORY_MERGE))}; each monitor costs about "
            f"{_KSM_SAVING_MIB} MiB more than with KSM",
        )
    if run != "1":
        return Finding(
            "KSM",
            Verdict.WARN,
            f"ksmd is off ({_KSM_RUN} = {run}): each container's monitor costs about "
            f"{_KSM_SAVING_MIB} MiB more than with it on",
            f"echo 1 > {_KSM_RUN} (deploy/install.sh does, unless CRISP_ENABLE_KSM=0); "
            "ksmd merges only memory that opted in (crisp's monitors, and whatever "
            "else asked), for some CPU time",
        )
    return Finding("KSM", Verdict.OK, "ksmd runs: the monitors' alike pages are merged")


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


def systemd_booted() -> bool:
    """sd_booted(3)'s test: systemd creates this directory when it runs as init."""
    return Path("/run/systemd/system").is_dir()


def _init_system(cgroup_driver: str) -> Finding:
    init = Path("/proc/1/comm").read_text().strip()
    if systemd_booted():
        return Finding(
            "init system",
            Verdict.OK,
            f"systemd (PID 1 is {init}): deploy/install.sh installs crisp.service; "
            f"cgroup.driver is {cgroup_driver}, kubelet's cgroupDriver must match",
        )
    if cgroup_driver == "systemd":
        return Finding(
            "init system",
            Verdict.FAIL,
            f"no systemd (PID 1 is {init}), but cgroup.driver is systemd",
            'set cgroup.driver = "cgroupfs" (and cgroupDriver: cgroupfs for kubelet)',
        )
    return Finding(
        "init system",
        Verdict.OK,
        f"no systemd (PID 1 is {init}): not needed with cgroup.driver cgroupfs; "
        "deploy/install.sh runs crisp in the background with a pid file instead of a unit",
    )


def _v1_controllers(mounts: CgroupMounts) -> list[str]:
    # "name=systemd" and the like are named hierarchies that hold no controller.
    return sorted(c for c in mounts.v1 if not c.startswith("name="))


def _unified_controllers(mounts: CgroupMounts) -> list[str]:
    if mounts.unified is None:
        return []
    return sorted((mounts.unified / "cgroup.controllers").read_text().split())


def _cgroup_mode() -> Finding:
    mounts = find_mounts()
    v1 = _v1_controllers(mounts)
    if mounts.unified is not None and not mounts.v1:
        return Finding(
            "cgroup mode",
            Verdict.OK,
            f"v2 unified at {mounts.unified}; crisp drives cgroup v2",
        )
    if mounts.v1 and mounts.unified is not None:
        unified = _unified_controllers(mounts)
        holds = f"controllers {', '.join(unified)}" if unified else "no controllers"
        return Finding(
            "cgroup mode",
            Verdict.OK,
            f"hybrid: v1 controllers {', '.join(v1)}; cgroup2 at {mounts.unified} with "
            f"{holds}; crisp drives cgroup v1",
        )
    if mounts.v1:
        return Finding(
            "cgroup mode", Verdict.OK, f"v1: controllers {', '.join(v1)}; crisp drives cgroup v1"
        )
    return Finding(
        "cgroup mode",
        Verdict.FAIL,
        "no cgroup hierarchy mounted",
        "mount cgroup2 at /sys/fs/cgroup",
    )


def _kernel_controllers() -> set[str]:
    """Controllers the kernel has and enables (/proc/cgroups), mounted or not."""
    enabled = set()
    for line in Path("/proc/cgroups").read_text().splitlines():
        if line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) == 4 and fields[3] == "1":
            enabled.add(fields[0])
    return enabled


def _why_unusable(controller: str, mounts: CgroupMounts) -> str:
    if mounts.v1 and controller in _unified_controllers(mounts):
        return "on the cgroup2 mount, which crisp does not drive on a hybrid host"
    if controller in _kernel_controllers():
        return "enabled in the kernel but not mounted"
    return "not in the kernel"


def _cgroup_controllers() -> Finding:
    mounts = find_mounts()
    if mounts.v1:
        version, usable = "v1", set(_v1_controllers(mounts))
    elif mounts.unified is not None:
        version, usable = "v2", set(_unified_controllers(mounts))
    else:
        return Finding("cgroup controllers", Verdict.FAIL, "no cgroup hierarchy mounted")
    missing = [c for c in _REQUIRED_CONTROLLERS if c not in usable]
    if missing:
        return Finding(
            "cgroup controllers",
            Verdict.FAIL,
            f"{version}: missing {', '.join(missing)}",
            "enable them on the kernel command line (e.g. cgroup_enable=memory)",
        )
    optional = _OPTIONAL_CONTROLLERS[version]
    absent = [c for c in optional if c not in usable]
    used = ", ".join(c for c in (*_REQUIRED_CONTROLLERS, *optional) if c in usable)
    if absent:
        reasons = [f"{c} ({_why_unusable(c, mounts)}: no {optional[c]})" for c in absent]
        return Finding(
            "cgroup controllers",
            Verdict.WARN,
            f"{version}: {used}; missing {'; '.join(reasons)}",
            "mount the missing v1 hierarchies (mount -t cgroup -o NAME cgroup /sys/fs/cgroup/NAME)"
            if version == "v1"
            else "enable them in the root's cgroup.subtree_control",
        )
    return Finding("cgroup controllers", Verdict.OK, f"{version}: {used}")


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


def _planned_network(settings: HostSettings) -> tuple[str, list[Mapping[str, Any]]] | None:
    """The network pods will join, as a description and its plugin objects; None if none."""
    if not conf_files(settings.cni_conf_dir) and settings.cni_write_default_network:
        return "crisp's default network", default_network()["plugins"]
    network = open_pod_network(
        settings.cni_conf_dir,
        settings.cni_bin_dirs,
        settings.cni_default_network,
        settings.root_dir,
    ).network
    if network is None:
        return None
    return f"network {network.name}", [plugin.raw for plugin in network.plugins]


def _cni_plugins(settings: HostSettings) -> Finding:
    planned = _planned_network(settings)
    which, plugins = planned if planned is not None else ("no network", [])
    wanted = []
    for plugin in plugins:
        wanted.append(str(plugin["type"]))
        if isinstance(plugin.get("ipam"), Mapping) and "type" in plugin["ipam"]:
            wanted.append(str(plugin["ipam"]["type"]))
    wanted.append("loopback")  # every pod's lo is brought up through it
    found: dict[str, str] = {}  # plugin → the first directory holding it, as CNI searches
    for name in wanted:
        for directory in settings.cni_bin_dirs:
            if os.access(Path(directory) / name, os.X_OK):
                found[name] = directory
                break
    missing = [name for name in wanted if name not in found]
    searched = ":".join(settings.cni_bin_dirs)
    if missing:
        return Finding(
            "CNI plugins",
            Verdict.FAIL,
            f"{', '.join(missing)} (needed by {which}) not found in {searched}",
            _CNI_HINT,
        )
    directories = sorted(set(found.values()))
    return Finding(
        "CNI plugins",
        Verdict.OK,
        f"{', '.join(wanted)} (for {which}) in {', '.join(directories)}",
    )


def _network(settings: HostSettings) -> Finding:
    if not conf_files(settings.cni_conf_dir) and settings.cni_write_default_network:
        return Finding(
            "CNI network",
            Verdict.OK,
            f"none in {settings.cni_conf_dir} yet: crisp serve writes its default network "
            f"{default_network()['name']!r} there (cni.write_default_network)",
        )
    network = open_pod_network(
        settings.cni_conf_dir,
        settings.cni_bin_dirs,
        settings.cni_default_network,
        settings.root_dir,
    )
    status = network.status()
    if not status.ready:
        return Finding(
            "CNI network",
            Verdict.FAIL,
            status.message,
            f"{_CNI_HINT}; put a .conflist in {settings.cni_conf_dir} "
            "(or set cni.write_default_network = true for crisp's own)",
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


def run_checks(settings: HostSettings) -> Iterator[Finding]:
    checks: list[tuple[str, Callable[[], Finding]]] = [
        ("kernel", _kernel),
        ("namespaces", _namespaces),
        ("user namespaces", _user_namespaces),
        ("KSM", _ksm),
        ("overlayfs", _overlayfs),
        ("init system", lambda: _init_system(settings.cgroup_driver)),
        ("cgroup mode", _cgroup_mode),
        ("cgroup controllers", _cgroup_controllers),
        ("seccomp", _seccomp),
        ("CNI plugins", lambda: _cni_plugins(settings)),
        ("CNI network", lambda: _network(settings)),
        ("iptables", _iptables),
        ("free space", lambda: _free_space(settings.root_dir, "free space (root_dir)")),
    ]
    for name, check in checks:
        try:
            yield check()
        except OSError as e:  # a check that cannot even look is itself a finding
            yield Finding(name, Verdict.FAIL, f"cannot check: {e}")
