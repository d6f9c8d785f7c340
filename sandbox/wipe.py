"""`crisp wipe`: remove everything crisp keeps on the host, once nothing of it runs.

What runs is judged from three independent sources, so that a database lost or out of date
cannot hide a live process: the pod and container records, the runtime's state directories
under the run dir (each names its monitor), and the processes left in crisp's cgroups.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cni import bridge as cni_bridge
from cni.errors import CNIError
from cni.network import NetworkManager
from runtime import namespaces
from runtime.cgroups import CgroupError, new_manager
from runtime.procfs import start_time
from runtime.statedir import StateDir, read_json
from sandbox.container_record import Container
from sandbox.errors import Unavailable
from sandbox.network import DEFAULT_NETWORK_FILE
from sandbox.pod import PodSandbox
from sandbox.pod_network import detach
from sandbox.records import RecordStore

# The runtimes' state root below the run dir (cri.daemon opens them there).
_RUNTIME_STATE_DIR = "c"
# Pod log directories crisp makes below log_dir are named by the pod id.
_POD_ID = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class WipeTarget:
    """The host state of one crisp installation, as its configuration names it."""

    root_dir: Path
    run_dir: Path
    log_dir: Path
    cgroup_parent: str
    cni_conf_dir: Path | None = None  # where crisp may have written its default network


@dataclass
class WipeReport:
    networks: list[str] = field(default_factory=list)  # pods taken off their CNI network
    links: list[str] = field(default_factory=list)  # network devices removed
    network_errors: list[str] = field(default_factory=list)
    unmounted: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    directories: list[Path] = field(default_factory=list)


class WipeError(RuntimeError):
    """Something could not be removed; the message names it and why."""


def _short(object_id: str) -> str:
    return object_id[:13]


def _pods(records: RecordStore | None) -> list[PodSandbox]:
    if records is None:
        return []
    return [
        PodSandbox.from_doc(r.id, r.state, r.created_ns, r.document)
        for r in records.list_kind("pod")
    ]


def _containers(records: RecordStore | None) -> list[Container]:
    if records is None:
        return []
    return [
        Container.from_doc(r.id, r.state, r.created_ns, r.document)
        for r in records.list_kind("container")
    ]


def _live_pause(pod: PodSandbox) -> bool:
    return pod.pause_pid > 0 and start_time(pod.pause_pid) == pod.pause_start_time


def _live_monitor(state: StateDir) -> tuple[int, int] | None:
    """(monitor pid, container pid) while the container's monitor still runs."""
    try:
        record = read_json(state.record)
    except (OSError, ValueError):
        return None
    if not record or "monitor_pid" not in record:
        return None
    monitor = int(record["monitor_pid"])
    if start_time(monitor) != record.get("monitor_start"):
        return None
    return monitor, int(record.get("pid", 0))


def _cgroup_paths(target: WipeTarget, records: RecordStore | None) -> list[str]:
    """Every cgroup crisp made: below its parent, and containers' and pause processes'
    cgroups below pod cgroups that kubelet made (those parents stay kubelet's)."""
    paths = {target.cgroup_parent}
    for pod in _pods(records):
        if pod.cgroup_owned and pod.cgroup_parent:
            paths.add(pod.cgroup_parent)
        if pod.infra_cgroup:
            paths.add(pod.infra_cgroup)
    for container in _containers(records):
        if container.cgroup:
            paths.add(container.cgroup)
    return sorted(p for p in paths if p.strip("/"))


def running(target: WipeTarget, records: RecordStore | None) -> list[str]:
    """What of crisp still runs, one line each; empty when the host may be wiped."""
    found: list[str] = []
    known_pids: set[int] = set()
    names = {c.id: f"{c.name}, pod {_short(c.pod_id)}" for c in _containers(records)}
    state_root = target.run_dir / _RUNTIME_STATE_DIR
    container_ids = set(names)
    if state_root.is_dir():
        container_ids |= {entry.name for entry in state_root.iterdir() if entry.is_dir()}
    for container_id in sorted(container_ids):
        live = _live_monitor(StateDir(state_root / container_id))
        if live is None:
            continue
        monitor, process = live
        known_pids.update(live)
        name = names.get(container_id, "no record")
        found.append(
            f"container {_short(container_id)} ({name}): monitor pid {monitor}, "
            f"process pid {process}"
        )
    for pod in _pods(records):
        if _live_pause(pod):
            known_pids.add(pod.pause_pid)
            meta = pod.config.metadata
            found.append(
                f"pod {_short(pod.id)} ({meta.namespace}/{meta.name}): pause pid {pod.pause_pid}"
            )
    for path in _cgroup_paths(target, records):
        try:
            pids = new_manager(path).pids()
        except (CgroupError, ValueError):
            continue
        strays = sorted(set(pids) - known_pids)
        known_pids.update(strays)
        if strays:
            found.append(f"processes {', '.join(map(str, strays))} in cgroup {path}")
    return found


def _detach_networks(
    pods: Iterable[PodSandbox], network: NetworkManager, report: WipeReport
) -> None:
    """CNI DEL for pods whose teardown never ran (a crash, a reboot): it releases their IPs
    and host-side links and rules. Before the unmounts, while the netns pins still exist."""
    for pod in pods:
        if not pod.network_attached:
            continue
        try:
            detach(network, pod)
        except Unavailable as e:
            # The state goes anyway; what the plugin could not undo is for the operator.
            report.network_errors.append(str(e))
        else:
            report.networks.append(pod.id)


def _unmount_all(directories: Iterable[Path], report: WipeReport) -> None:
    for directory in directories:
        # Deepest first: a pin or rootfs lies below the bind mount of its pin root.
        for mount_point in sorted(namespaces.mounts_under(directory), reverse=True):
            namespaces.unmount(mount_point)
            report.unmounted.append(mount_point)
        left = namespaces.mounts_under(directory)
        if left:
            raise WipeError(f"mounts still under {directory}: {', '.join(left)}")


def _remove_tree(directory: Path, report: WipeReport) -> None:
    if not directory.exists():
        return
    try:
        shutil.rmtree(directory)
    except OSError as e:
        raise WipeError(f"cannot remove {directory}: {e.strerror} ({e.filename})") from e
    report.directories.append(directory)


def _remove_pod_logs(log_dir: Path, report: WipeReport) -> None:
    if not log_dir.is_dir():
        return
    for entry in log_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink() and _POD_ID.match(entry.name):
            _remove_tree(entry, report)
    # The directory itself only when nothing but crisp's pod logs was in it.
    if not any(log_dir.iterdir()):
        log_dir.rmdir()
        report.directories.append(log_dir)


def wipe(
    target: WipeTarget,
    records: RecordStore | None,
    network: NetworkManager,
    keep: Sequence[Path] = (),
) -> WipeReport:
    """Take pods off their networks, then remove crisp's mounts, cgroups, state and pod
    logs. Call only when running() found nothing. `keep` lists files inside the run or root
    dir still in use by the caller (its lock files), which their owner removes afterwards."""
    report = WipeReport()
    cgroups = _cgroup_paths(target, records)
    _detach_networks(_pods(records), network, report)
    _unmount_all((target.run_dir, target.root_dir), report)
    for path in reversed(cgroups):  # children before the parent
        manager = new_manager(path)
        if not manager.exists():
            continue
        try:
            manager.destroy()
        except CgroupError as e:
            raise WipeError(f"cannot remove cgroup {path}: {e}") from e
        report.cgroups.append(path)
    for directory in (target.run_dir, target.root_dir):
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            if entry in keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                _remove_tree(entry, report)
            else:
                entry.unlink()
    _remove_pod_logs(target.log_dir, report)
    _remove_default_network_leftovers(target.cni_conf_dir, report)
    return report


_HOST_LOCAL_DATA_DIR = "/var/lib/cni/networks"
# host-local's allocation files that are not an allocated address.
_IPAM_BOOKKEEPING = re.compile(r"^(lock|last_reserved_ip\..*)$")


def _remove_default_network_leftovers(conf_dir: Path | None, report: WipeReport) -> None:
    """What crisp's own default network (the file crisp writes) leaves once no pod is on
    it: its bridge, and host-local's allocation directory. Both outlive the pods by design
    of the plugins. The iptables chains portmap and firewall add are shared by every CNI
    user of the host and stay."""
    if conf_dir is None:
        return
    try:
        network = json.loads((conf_dir / DEFAULT_NETWORK_FILE).read_text())
        bridge = next(p for p in network["plugins"] if p.get("type") == "bridge")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
        return  # not there, or not crisp's
    name = str(bridge.get("bridge") or "cni0")
    try:
        if cni_bridge.remove_if_idle(name):
            report.links.append(name)
    except CNIError as e:
        raise WipeError(str(e)) from e
    ipam = bridge.get("ipam") or {}
    if ipam.get("type") != "host-local" or not network.get("name"):
        return
    allocations = Path(ipam.get("dataDir") or _HOST_LOCAL_DATA_DIR) / str(network["name"])
    if allocations.is_dir() and all(
        _IPAM_BOOKKEEPING.match(entry.name) for entry in allocations.iterdir()
    ):
        _remove_tree(allocations, report)


def remove_state_dirs(target: WipeTarget, report: WipeReport) -> None:
    """The run and root dirs themselves, once the caller has released its lock files."""
    for directory in (target.run_dir, target.root_dir):
        _remove_tree(directory, report)
