"""The container's mount namespace: rootfs, spec mounts, /dev, pivot_root, masked and
read-only paths. Runs in the container init, inside a fresh mount namespace, before
anything of the container executes.

Every destination is resolved inside the rootfs by `resolve()`, which follows symlinks as
the container would see them (an absolute link target starts again at the rootfs) and
refuses any path whose '..' would climb above the rootfs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from runtime import idmap, mountopts
from runtime import syscalls as sc
from runtime.cgroups import CgroupVersion, find_mounts
from runtime.spec import Device, Mount, Spec, is_idmapped


class RootfsError(Exception):
    """A mount or device of the spec could not be set up; the message names which."""


@dataclass(frozen=True)
class _DefaultDevice:
    name: str
    major: int
    minor: int


_DEFAULT_DEVICES = (
    _DefaultDevice("null", 1, 3),
    _DefaultDevice("zero", 1, 5),
    _DefaultDevice("full", 1, 7),
    _DefaultDevice("random", 1, 8),
    _DefaultDevice("urandom", 1, 9),
    _DefaultDevice("tty", 5, 0),
)
_DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
_MAX_SYMLINKS = 40
_OCTAL = re.compile(r"\\([0-7]{3})")  # mountinfo escapes space, tab, newline and backslash
# statvfs f_flag bits (ST_*) and the mount flags they stand for: a bind remount inside a
# user namespace must repeat the flags the kernel locked on the original mount.
_LOCKED_FLAGS = {
    1: sc.MS_RDONLY,
    2: sc.MS_NOSUID,
    4: sc.MS_NODEV,
    8: sc.MS_NOEXEC,
    1024: sc.MS_NOATIME,
    2048: sc.MS_NODIRATIME,
    4096: sc.MS_RELATIME,
}


def resolve(root: str, path: str) -> str:
    """Host path of container path `path` under `root` (a real, symlink-free path).
    Components that do not exist yet are kept as they are."""
    pending = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if not done:
                raise RootfsError(f"{path!r} escapes the container rootfs")
            done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        try:
            mode = os.lstat(candidate).st_mode
        except FileNotFoundError:
            done.append(part)
            continue
        if not stat.S_ISLNK(mode):
            done.append(part)
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise RootfsError(f"{path!r}: too many levels of symbolic links")
        target = os.readlink(candidate)
        if target.startswith("/"):
            done = []
        pending[:0] = [p for p in target.split("/") if p not in ("", ".")]
    return os.path.join(root, *done)


def _make_target(target: str, directory: bool) -> None:
    if directory:
        os.makedirs(target, exist_ok=True)
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.lexists(target):
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _locked_flags(path: str) -> int:
    flags = os.statvfs(path).f_flag
    return sum(ms for st, ms in _LOCKED_FLAGS.items() if flags & st)


def _bind_remount(target: str, flags: int) -> None:
    base = sc.MS_BIND | sc.MS_REMOUNT
    try:
        sc.mount(None, target, None, base | flags)
    except PermissionError:
        sc.mount(None, target, None, base | flags | _locked_flags(target))


def _mount_error(where: str, exc: OSError) -> RootfsError:
    return RootfsError(f"{where}: {exc.strerror or exc}")


def _bind_source(entry: Mount, bundle: Path) -> str:
    return entry.source if entry.source.startswith("/") else str(bundle / entry.source)


def idmapped_trees(spec: Spec, bundle: Path) -> dict[int, int]:
    """Detached idmapped copies of the sources of the spec's idmapped mounts, by mount
    index. Made before the init joins the container's user namespace: mapping needs the
    host's privileges, and the sources need not be reachable from inside."""
    userns = spec.linux.namespace("user")
    wanted = [(i, m) for i, m in enumerate(spec.mounts) if is_idmapped(m)]
    if not wanted or userns is None or userns.path is None:
        return {}
    trees: dict[int, int] = {}
    userns_fd = os.open(userns.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for index, entry in wanted:
            where = f"mounts[{index}] ({entry.destination})"
            options = mountopts.parse(entry.options, where)
            source = _bind_source(entry, bundle)
            try:
                trees[index] = idmap.detached(
                    source, userns_fd, options.recursive, options.idmap_recursive
                )
            except OSError as exc:
                raise _mount_error(f"{where}: idmapped bind of {source}", exc) from None
    except BaseException:
        for tree in trees.values():
            os.close(tree)
        raise
    finally:
        os.close(userns_fd)
    return trees


class _Builder:
    def __init__(
        self,
        spec: Spec,
        rootfs: str,
        bundle: Path,
        cgroups_path: str,
        idmapped: dict[int, int],
    ) -> None:
        self.spec = spec
        self.root = rootfs
        self.bundle = bundle
        self.cgroups_path = cgroups_path
        self.idmapped = idmapped  # mount index → detached idmapped tree of its source
        self.cgroup_ns = (ns := spec.linux.namespace("cgroup")) is not None and ns.path is None
        self.in_user_ns = spec.linux.namespace("user") is not None

    def mount_all(self) -> None:
        for index, entry in enumerate(self.spec.mounts):
            where = f"mounts[{index}] ({entry.destination})"
            try:
                self._mount(entry, where, self.idmapped.get(index))
            except RootfsError:
                raise
            except ValueError as exc:
                raise RootfsError(str(exc)) from None
            except OSError as exc:
                raise _mount_error(where, exc) from None

    def _mount(self, entry: Mount, where: str, idmapped_tree: int | None) -> None:
        options = mountopts.parse(entry.options, where)
        target = resolve(self.root, entry.destination)
        if options.bind or entry.type == "bind":
            self._bind(entry, options, target, where, idmapped_tree)
        elif entry.type == "cgroup":
            self._cgroup(options, target)
        else:
            _make_target(target, True)
            self._fs(entry.source or entry.type, target, entry.type, options, where)
        for propagation in options.propagation:
            sc.mount(None, target, None, propagation)

    def _fs(
        self, source: str, target: str, fstype: str, options: mountopts.MountOptions, where: str
    ) -> None:
        try:
            sc.mount(source, target, fstype, options.flags, options.data or None)
        except PermissionError:
            if fstype != "sysfs":
                raise
            # sysfs belongs to the network namespace; without a new one, bind the host's.
            sc.mount("/sys", target, None, sc.MS_BIND | sc.MS_REC)
            _bind_remount(target, options.flags)

    def _bind(
        self,
        entry: Mount,
        options: mountopts.MountOptions,
        target: str,
        where: str,
        idmapped_tree: int | None,
    ) -> None:
        source = _bind_source(entry, self.bundle)
        try:
            # An idmapped source was opened from the host: it may be out of reach here.
            info = os.stat(source) if idmapped_tree is None else os.fstat(idmapped_tree)
        except FileNotFoundError:
            raise RootfsError(f"{where}: bind source {source} does not exist") from None
        _make_target(target, stat.S_ISDIR(info.st_mode))
        if idmapped_tree is not None:
            sc.move_mount(idmapped_tree, target)
        else:
            sc.mount(source, target, None, sc.MS_BIND | (sc.MS_REC if options.recursive else 0))
        extra = options.flags & ~sc.MS_REMOUNT
        if extra:
            _bind_remount(target, extra)
        if options.recursive_set or options.recursive_clear:
            sc.mount_setattr(target, options.recursive_set, options.recursive_clear)

    def _cgroup(self, options: mountopts.MountOptions, target: str) -> None:
        _make_target(target, True)
        mounts = find_mounts()
        if mounts.version is CgroupVersion.V2:
            if self.cgroup_ns:
                sc.mount("cgroup2", target, "cgroup2", options.flags)
            else:
                host = os.path.join(str(mounts.unified), self.cgroups_path.lstrip("/"))
                sc.mount(host, target, None, sc.MS_BIND | sc.MS_REC)
                _bind_remount(target, options.flags)
            return
        sc.mount("tmpfs", target, "tmpfs", options.flags & ~sc.MS_RDONLY, "mode=755")
        hierarchies: dict[str, list[str]] = {}
        for controller, mountpoint in mounts.v1.items():
            hierarchies.setdefault(str(mountpoint), []).append(controller)
        for point, controllers in sorted(hierarchies.items()):
            sub = os.path.join(target, os.path.basename(point))
            os.mkdir(sub, 0o755)
            if self.cgroup_ns:
                data = ",".join(sorted(controllers))
                sc.mount("cgroup", sub, "cgroup", options.flags, data)
            else:
                host = os.path.join(point, self.cgroups_path.lstrip("/"))
                if not os.path.isdir(host):
                    continue  # a named hierarchy (name=systemd) the container is not in
                sc.mount(host, sub, None, sc.MS_BIND)
                _bind_remount(sub, options.flags)
        if options.flags & sc.MS_RDONLY:
            _bind_remount(target, options.flags)

    def devices(self, console: str | None) -> None:
        dev_bound = any(
            m.destination.rstrip("/") == "/dev" and ("bind" in m.options or "rbind" in m.options)
            for m in self.spec.mounts
        )
        if dev_bound:
            return  # the host's /dev (privileged containers): nothing to create
        for default in _DEFAULT_DEVICES:
            path = f"/dev/{default.name}"
            if any(d.path == path for d in self.spec.linux.devices):
                continue
            self._device(Device(path, "c", default.major, default.minor, 0o666, 0, 0))
        for device in self.spec.linux.devices:
            self._device(device)
        dev = resolve(self.root, "/dev")
        os.makedirs(dev, exist_ok=True)
        for name, target in _DEV_LINKS:
            link = os.path.join(dev, name)
            if name == "ptmx" and os.path.lexists(link):
                os.unlink(link)  # a node copied from the image would bypass the pts instance
            with contextlib.suppress(FileExistsError):
                os.symlink(target, link)
        if console is not None:
            path = resolve(self.root, "/dev/console")
            _make_target(path, False)
            sc.mount(console, path, None, sc.MS_BIND)

    def _device(self, device: Device) -> None:
        path = resolve(self.root, device.path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
        mode = kind[device.type] | (0o666 if device.file_mode is None else device.file_mode)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                os.unlink(path)
        try:
            if self.in_user_ns:
                raise PermissionError(errno.EPERM, "mknod is not allowed in a user namespace")
            os.mknod(path, mode, os.makedev(device.major, device.minor))
            os.chmod(path, mode & 0o7777)  # mknod's mode is filtered by the umask
            os.chown(path, device.uid or 0, device.gid or 0)
        except PermissionError:
            if device.type == "p":
                raise
            host = f"/dev/{os.path.basename(device.path)}"
            _make_target(path, False)
            try:
                sc.mount(host, path, None, sc.MS_BIND)
            except OSError as exc:
                raise RootfsError(f"device {device.path}: cannot bind {host}: {exc}") from None
        except OSError as exc:
            raise RootfsError(f"device {device.path}: {exc.strerror}") from None


def _parent_mount(path: str) -> tuple[str, bool]:
    """Mount point holding `path` and whether it is shared (pivot_root refuses those)."""
    best, shared = "/", False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                optional = fields[6 : fields.index("-")]
                best, shared = point, any(o.startswith("shared:") for o in optional)
    return best, shared


def _pivot(root: str) -> None:
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.chdir(root)
        # With "." for both, the old root ends up stacked on the new one and is detached at
        # once, so no directory for it is needed inside the container.
        sc.pivot_root(".", ".")
        # "." must be the old root for what follows, not the new one (as runc does it):
        # made rslave, the new root's volumes would lose their bidirectional propagation.
        os.fchdir(old_root)
    finally:
        os.close(old_root)
    sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)  # keep the unmount from propagating
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def _mask(path: str) -> None:
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return
    if is_dir:
        sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, "size=0k")
    else:
        sc.mount("/dev/null", path, None, sc.MS_BIND)


def _readonly(path: str) -> None:
    try:
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
    except (FileNotFoundError, NotADirectoryError):
        return
    _bind_remount(path, sc.MS_RDONLY | sc.MS_REC)


def setup(
    spec: Spec,
    bundle: Path,
    cgroups_path: str,
    console: str | None,
    idmapped: dict[int, int] | None = None,
) -> None:
    """Build the container's filesystem view and pivot into it. The caller is in a new
    mount namespace; on error the namespace (and every mount in it) dies with the caller.
    `idmapped` holds the trees idmapped_trees() made for the idmapped mounts."""
    rootfs = os.path.realpath(spec.rootfs(bundle))
    if not os.path.isdir(rootfs):
        raise RootfsError(f"root.path {rootfs} is not a directory")
    propagation_name = spec.linux.rootfs_propagation or "rslave"
    propagation = mountopts.PROPAGATION[propagation_name]
    try:
        sc.mount(None, "/", None, propagation | sc.MS_REC)
        # pivot_root refuses a shared parent mount. After a recursive slave, private or
        # unbindable remount none is shared: only a shared propagation needs the lookup,
        # which reads every mount the host has.
        if propagation & sc.MS_SHARED:
            parent, shared = _parent_mount(rootfs)
            if shared:
                sc.mount(None, parent, None, sc.MS_PRIVATE)
        sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)
    except OSError as exc:
        raise _mount_error(f"rootfs {rootfs}", exc) from None
    builder = _Builder(spec, rootfs, bundle, cgroups_path, idmapped or {})
    builder.mount_all()
    try:
        builder.devices(console)
        _pivot(rootfs)
    except OSError as exc:
        raise _mount_error("rootfs /dev and pivot_root", exc) from None
    for kind, paths, apply in (
        ("linux.maskedPaths", spec.linux.masked_paths, _mask),
        ("linux.readonlyPaths", spec.linux.readonly_paths, _readonly),
    ):
        for path in paths:
            try:
                apply(resolve("/", path))
            except OSError as exc:
                raise _mount_error(f"{kind} {path}", exc) from None
    try:
        if spec.root_readonly:
            _bind_remount("/", sc.MS_RDONLY)
        if spec.linux.rootfs_propagation:
            sc.mount(None, "/", None, propagation)
    except OSError as exc:
        raise _mount_error("root", exc) from None
