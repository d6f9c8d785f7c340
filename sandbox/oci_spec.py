"""CRI container request + image config + pod → an OCI runtime spec (config.json).

Defaults follow what kubelet expects of containerd and CRI-O: the same default capabilities,
masked and read-only paths, devices, mounts and environment, so workloads behave the same.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.capabilities import CAPABILITIES, last_cap
from runtime.seccomp_profiles import runtime_default
from runtime.spec import IdMapping
from runtime.syscalls import capget
from sandbox.container_config import (
    ContainerRequest,
    DeviceRequest,
    MountRequest,
    NamespaceMode,
    Propagation,
    Resources,
    SecurityContext,
)
from sandbox.container_user import ProcessUser
from sandbox.errors import FailedPrecondition, InvalidArgument, NotFound, Unimplemented

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

DEFAULT_MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

DEFAULT_READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# Character devices every container may use (the device cgroup allows them; the runtime
# creates the nodes): null, zero, full, random, urandom, tty, console, ptmx and the ptys.
_DEFAULT_DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
)

_POD_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


@dataclass(frozen=True)
class PodContext:
    """What a container takes from its pod."""

    pod_id: str
    hostname: str
    # Namespace files to join; None where the pod uses the host's namespace.
    network_ns: str | None
    ipc_ns: str | None
    uts_ns: str | None
    # The pod's PID namespace (pause is its PID 1) when the pod shares PID; else None.
    pid_ns: str | None
    hostname_file: str
    hosts_file: str
    resolv_conf_file: str
    shm_path: str  # the pod's /dev/shm tmpfs, or "" to give the container its own
    cgroup_parent: str
    host_network: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    # The pod's own user namespace (its pin) and its maps; None where it uses the node's.
    user_ns: str | None = None
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()


@dataclass(frozen=True)
class ImageFacts:
    """What the spec needs of the image's configuration."""

    name: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    volumes: tuple[str, ...] = ()
    stop_signal: str = ""


def command_line(request: ContainerRequest, image: ImageFacts) -> list[str]:
    """kubelet's rule: command replaces the entrypoint; args replace the image's cmd."""
    if request.command:
        argv = [*request.command, *request.args]
    elif request.args:
        argv = [*image.entrypoint, *request.args]
    else:
        argv = [*image.entrypoint, *image.cmd]
    if not argv:
        raise InvalidArgument(
            f"container {request.name!r}: no command specified and the image defines none"
        )
    return argv


def environment(request: ContainerRequest, image: ImageFacts, hostname: str) -> list[str]:
    """Image env first, then the config's; a later value of a name replaces an earlier one."""
    merged: dict[str, str] = {"PATH": DEFAULT_PATH}
    for entry in image.env:
        name, _, value = entry.partition("=")
        merged[name] = value
    merged["HOSTNAME"] = hostname
    if request.tty:
        merged["TERM"] = "xterm"
    for name, value in request.envs:
        if not name:
            raise InvalidArgument(f"container {request.name!r}: environment variable without name")
        merged[name] = value
    return [f"{name}={value}" for name, value in merged.items()]


def _normalize_capability(name: str) -> str:
    upper = name.upper()
    return upper if upper.startswith("CAP_") or upper == "ALL" else "CAP_" + upper


def _all_capabilities() -> list[str]:
    """Every capability crisp itself holds (as containerd's WithAllCurrentCapabilities):
    one the daemon lacks, e.g. when it runs in a container, cannot be granted."""
    highest = last_cap()
    effective = capget()[0]
    return [
        name
        for name, number in CAPABILITIES.items()
        if number <= highest and effective & (1 << number)
    ]


def capability_set(security: SecurityContext) -> list[str]:
    """containerd's order: ALL in add, ALL in drop, then the named adds, then named drops."""
    if security.privileged:
        return _all_capabilities()
    add = [_normalize_capability(c) for c in security.add_capabilities]
    drop = [_normalize_capability(c) for c in security.drop_capabilities]
    for name in (*add, *drop):
        if name != "ALL" and name not in CAPABILITIES:
            raise InvalidArgument(f"unknown capability {name!r}")
    caps = list(DEFAULT_CAPABILITIES)
    if "ALL" in add:
        caps = _all_capabilities()
    if "ALL" in drop:
        caps = []
    caps += [c for c in add if c != "ALL" and c not in caps]
    return [c for c in caps if c not in drop]


def _inside(rootfs_relative: str, what: str) -> str:
    if not rootfs_relative.startswith("/"):
        raise InvalidArgument(f"{what} {rootfs_relative!r} must be an absolute path")
    if ".." in Path(rootfs_relative).parts:
        raise InvalidArgument(f"{what} {rootfs_relative!r} must not contain '..'")
    return os.path.normpath(rootfs_relative)


def _mount_propagation_of(host_path: str) -> tuple[bool, bool]:
    """(shared, slave) for the mount that holds `host_path`, from /proc/self/mountinfo."""
    best = ""
    optional: list[str] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            if (host_path == point or host_path.startswith(point.rstrip("/") + "/")) and len(
                point
            ) >= len(best):
                best = point
                optional = fields[6 : fields.index("-")]
    return (
        any(o.startswith("shared:") for o in optional),
        any(o.startswith("master:") for o in optional),
    )


def _user_mount(mount: MountRequest) -> dict[str, Any]:
    destination = _inside(mount.container_path, "mount container_path")
    if not mount.host_path:
        raise InvalidArgument(f"mount {destination}: host_path is empty")
    if not mount.host_path.startswith("/"):
        raise InvalidArgument(f"mount {destination}: host_path {mount.host_path!r} is not absolute")
    if not os.path.exists(mount.host_path):
        raise NotFound(f"mount {destination}: host path {mount.host_path} does not exist")
    source = os.path.realpath(mount.host_path)  # a symlinked host path mounts its target
    options = ["rbind"]
    if mount.recursive_read_only:
        if not mount.readonly:
            raise InvalidArgument(
                f"mount {destination}: recursive read-only requires readonly to be set"
            )
        if mount.propagation is not Propagation.PRIVATE:
            raise InvalidArgument(
                f"mount {destination}: recursive read-only requires private propagation"
            )
        options.append("rro")
    elif mount.readonly:
        options.append("ro")
    shared, slave = _mount_propagation_of(source)
    if mount.propagation is Propagation.BIDIRECTIONAL:
        if not shared:
            raise FailedPrecondition(
                f"mount {destination}: bidirectional propagation needs {source} to be on a "
                "shared mount"
            )
        options.append("rshared")
    elif mount.propagation is Propagation.HOST_TO_CONTAINER:
        if not (shared or slave):
            raise FailedPrecondition(
                f"mount {destination}: host-to-container propagation needs {source} to be on "
                "a shared or slave mount"
            )
        options.append("rslave")
    else:
        options.append("rprivate")
    return {"destination": destination, "type": "bind", "source": source, "options": options}


def _base_mounts(privileged: bool, pod: PodContext, ipc_host: bool) -> list[dict[str, Any]]:
    sys_mode = "rw" if privileged else "ro"
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", sys_mode]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", sys_mode]},
    ]  # fmt: skip
    if ipc_host:
        shm = {"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
               "options": ["rbind", "rprivate", "rw"]}  # fmt: skip
    elif pod.shm_path:
        shm = {"destination": "/dev/shm", "type": "bind", "source": pod.shm_path,
               "options": ["rbind", "rprivate", "rw"]}  # fmt: skip
    else:
        shm = {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}  # fmt: skip
    mounts.append(shm)
    return mounts


def _pod_file_mounts(pod: PodContext, taken: set[str], readonly_root: bool) -> list[dict[str, Any]]:
    mounts = []
    for destination, source in zip(
        _POD_FILES, (pod.hostname_file, pod.hosts_file, pod.resolv_conf_file), strict=True
    ):
        if destination in taken or not source:
            continue  # the user's own mount of that path wins
        mode = "ro" if readonly_root else "rw"
        mounts.append(
            {
                "destination": destination,
                "type": "bind",
                "source": source,
                "options": ["rbind", "rprivate", mode],
            }
        )
    return mounts


def _device(device: DeviceRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    path = _inside(device.container_path, "device container_path")
    try:
        info = os.stat(device.host_path)
    except FileNotFoundError:
        raise NotFound(f"device {path}: host device {device.host_path} does not exist") from None
    if stat.S_ISCHR(info.st_mode):
        kind = "c"
    elif stat.S_ISBLK(info.st_mode):
        kind = "b"
    else:
        raise InvalidArgument(f"device {path}: {device.host_path} is not a device node")
    permissions = device.permissions or "rwm"
    if not permissions or set(permissions) - set("rwm"):
        raise InvalidArgument(f"device {path}: permissions {permissions!r} must be of r, w, m")
    major, minor = os.major(info.st_rdev), os.minor(info.st_rdev)
    node = {
        "path": path, "type": kind, "major": major, "minor": minor,
        "fileMode": stat.S_IMODE(info.st_mode), "uid": info.st_uid, "gid": info.st_gid,
    }  # fmt: skip
    rule = {"allow": True, "type": kind, "major": major, "minor": minor, "access": permissions}
    return node, rule


def _host_devices() -> Iterable[DeviceRequest]:
    """Every device node of the host, for privileged containers."""
    for directory, subdirs, files in os.walk("/dev"):
        subdirs[:] = [d for d in subdirs if d not in ("pts", "shm", "mqueue")]
        for name in files:
            path = os.path.join(directory, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) and path != "/dev/console":
                yield DeviceRequest(path, path, "rwm")


def linux_resources(resources: Resources) -> dict[str, Any]:
    """CRI LinuxContainerResources → OCI linux.resources (without devices)."""
    result: dict[str, Any] = {}
    cpu: dict[str, Any] = {}
    if resources.cpu_shares:
        cpu["shares"] = resources.cpu_shares
    if resources.cpu_quota:
        cpu["quota"] = resources.cpu_quota
    if resources.cpu_period:
        cpu["period"] = resources.cpu_period
    if resources.cpuset_cpus:
        cpu["cpus"] = resources.cpuset_cpus
    if resources.cpuset_mems:
        cpu["mems"] = resources.cpuset_mems
    if cpu:
        result["cpu"] = cpu
    memory: dict[str, Any] = {}
    if resources.memory_limit:
        memory["limit"] = resources.memory_limit
    if resources.memory_swap_limit:
        # CRI gives memory+swap, as OCI's "swap" does.
        memory["swap"] = resources.memory_swap_limit
    if memory:
        result["memory"] = memory
    if resources.hugepage_limits:
        result["hugepageLimits"] = [
            {"pageSize": h.page_size, "limit": h.limit} for h in resources.hugepage_limits
        ]
    if resources.unified:
        result["unified"] = dict(resources.unified)
    return result


def seccomp_profile(
    security: SecurityContext, capabilities: Sequence[str]
) -> dict[str, Any] | None:
    """The OCI seccomp object for this container, or None for unconfined."""
    profile = security.seccomp
    if security.privileged or profile is None or profile.kind == "unconfined":
        return None
    if profile.kind == "runtime-default":
        return runtime_default(capabilities)
    ref = profile.localhost_ref
    if not ref.startswith("/"):
        raise InvalidArgument(f"seccomp localhost profile {ref!r} must be an absolute path")
    try:
        loaded = json.loads(Path(ref).read_text())
    except FileNotFoundError:
        raise NotFound(f"seccomp localhost profile {ref} does not exist") from None
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"seccomp localhost profile {ref}: {e}") from None
    if not isinstance(loaded, dict) or "defaultAction" not in loaded:
        raise InvalidArgument(f"seccomp localhost profile {ref}: no defaultAction")
    return loaded


def _apparmor_enabled() -> bool:
    try:
        return Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        return False


def _check_apparmor(security: SecurityContext) -> None:
    profile = security.apparmor
    if profile is None or profile.kind != "localhost" or security.privileged:
        return  # RuntimeDefault where AppArmor is off means no profile, as containerd does
    if not _apparmor_enabled():
        raise Unimplemented(
            f"apparmor profile {profile.localhost_ref!r} requested but AppArmor is not enabled "
            "on this host"
        )
    raise Unimplemented("apparmor localhost profiles are not supported by crisp yet")


def _namespaces(
    request: ContainerRequest, pod: PodContext, target_pid_ns: str | None
) -> list[dict[str, str]]:
    options = request.security.namespaces
    namespaces: list[dict[str, str]] = [{"type": "mount"}]
    if pod.user_ns:
        namespaces.append({"type": "user", "path": pod.user_ns})
    if options.network is not NamespaceMode.NODE and pod.network_ns:
        namespaces.append({"type": "network", "path": pod.network_ns})
    if options.ipc is not NamespaceMode.NODE and pod.ipc_ns:
        namespaces.append({"type": "ipc", "path": pod.ipc_ns})
    if pod.uts_ns and not pod.host_network:
        namespaces.append({"type": "uts", "path": pod.uts_ns})
    if options.pid is NamespaceMode.CONTAINER:
        namespaces.append({"type": "pid"})
    elif options.pid is NamespaceMode.POD:
        if pod.pid_ns is None:
            raise FailedPrecondition(
                f"pod {pod.pod_id} does not share a PID namespace its containers could join"
            )
        namespaces.append({"type": "pid", "path": pod.pid_ns})
    elif options.pid is NamespaceMode.TARGET:
        if not target_pid_ns:
            raise NotFound(f"target container {options.target_id!r} for PID namespace not found")
        namespaces.append({"type": "pid", "path": target_pid_ns})
    return namespaces


def _oci_mappings(mappings: Sequence[IdMapping]) -> list[dict[str, int]]:
    return [{"containerID": m.container_id, "hostID": m.host_id, "size": m.size} for m in mappings]


def _idmap_binds(mounts: list[dict[str, Any]], pod: PodContext) -> None:
    """Show the owners of every bind-mounted file through the pod's user namespace, as
    containerd does for volumes: root-owned host files belong to root of the pod."""
    for mount in mounts:
        if mount["type"] != "bind":
            continue
        recursive = "rbind" in mount["options"]
        mount["options"] = [*mount["options"], "ridmap" if recursive else "idmap"]
        mount["uidMappings"] = _oci_mappings(pod.uid_mappings)
        mount["gidMappings"] = _oci_mappings(pod.gid_mappings)


def build_spec(
    *,
    container_id: str,
    request: ContainerRequest,
    image: ImageFacts,
    pod: PodContext,
    user: ProcessUser,
    target_pid_ns: str | None = None,
) -> dict[str, Any]:
    """The complete OCI config.json for one container; the bundle's rootfs is "rootfs"."""
    security = request.security
    capabilities = capability_set(security)
    ambient = [_normalize_capability(c) for c in security.add_ambient_capabilities]
    for name in ambient:
        if name not in capabilities:
            raise InvalidArgument(f"ambient capability {name} is not in the container's set")
    _check_apparmor(security)
    cwd = request.working_dir or image.working_dir or "/"
    _inside(cwd, "working_dir")

    user_mounts = [_user_mount(m) for m in request.mounts]
    taken = {m["destination"] for m in user_mounts}
    ipc_host = security.namespaces.ipc is NamespaceMode.NODE or pod.ipc_ns is None
    mounts = [m for m in _base_mounts(security.privileged, pod, ipc_host)
              if m["destination"] not in taken]  # fmt: skip
    mounts += _pod_file_mounts(pod, taken, security.readonly_rootfs)
    # Parents before children, whatever order the client sent (as containerd sorts them).
    mounts += sorted(user_mounts, key=lambda m: len(Path(m["destination"]).parts))
    if pod.user_ns:
        _idmap_binds(mounts, pod)

    device_requests = list(request.devices)
    if security.privileged:
        device_requests = [*_host_devices(), *device_requests]
    devices = [_device(d) for d in device_requests]
    device_rules = list(_DEFAULT_DEVICE_RULES)
    if security.privileged:
        device_rules = [{"allow": True, "access": "rwm"}]
    device_rules += [rule for _node, rule in devices]

    resources = linux_resources(request.resources)
    resources["devices"] = device_rules

    propagations = {m.propagation for m in request.mounts}
    linux: dict[str, Any] = {
        "namespaces": _namespaces(request, pod, target_pid_ns),
        "devices": [node for node, _rule in devices],
        "resources": resources,
        "cgroupsPath": f"{pod.cgroup_parent.rstrip('/')}/crisp-{container_id}",
    }
    if pod.user_ns:
        linux["uidMappings"] = _oci_mappings(pod.uid_mappings)
        linux["gidMappings"] = _oci_mappings(pod.gid_mappings)
    if Propagation.BIDIRECTIONAL in propagations:
        linux["rootfsPropagation"] = "rshared"
    elif Propagation.HOST_TO_CONTAINER in propagations:
        linux["rootfsPropagation"] = "rslave"
    if not security.privileged:
        linux["maskedPaths"] = list(security.masked_paths or DEFAULT_MASKED_PATHS)
        linux["readonlyPaths"] = list(security.readonly_paths or DEFAULT_READONLY_PATHS)
    seccomp = seccomp_profile(security, capabilities)
    if seccomp is not None:
        linux["seccomp"] = seccomp

    process: dict[str, Any] = {
        "terminal": request.tty,
        "user": {
            "uid": user.uid,
            "gid": user.gid,
            "additionalGids": list(user.additional_gids),
        },
        "args": command_line(request, image),
        "env": environment(request, image, pod.hostname),
        "cwd": cwd,
        "capabilities": {
            "bounding": capabilities,
            "effective": capabilities,
            "permitted": capabilities,
            "inheritable": ambient,
            "ambient": ambient,
        },
        "noNewPrivileges": security.no_new_privs,
    }
    if request.resources.oom_score_adj:
        process["oomScoreAdj"] = request.resources.oom_score_adj
    annotations = {
        **request.annotations,
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.container-name": request.name,
        "io.kubernetes.cri.sandbox-id": pod.pod_id,
        "io.kubernetes.cri.image-name": image.name,
    }
    spec: dict[str, Any] = {
        "ociVersion": "1.1.0",
        "process": process,
        "root": {"path": "rootfs", "readonly": security.readonly_rootfs},
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    }
    # Setting a hostname needs a UTS namespace of the container's own; a host-network
    # container shares the node's, and with it the node's name.
    if any(ns["type"] == "uts" for ns in linux["namespaces"]):
        spec["hostname"] = pod.hostname
    return spec


def stop_signal(request: ContainerRequest, image: ImageFacts) -> str:
    """The signal StopContainer sends first: the config's, else the image's, else SIGTERM."""
    name = (request.stop_signal or image.stop_signal or "SIGTERM").upper()
    if name.isdigit():
        return name
    return name if name.startswith("SIG") else "SIG" + name
