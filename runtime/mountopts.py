"""OCI mount `options` → mount(2) flags, propagation flags and the filesystem data string."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from runtime import syscalls as sc

# option → (flags to set, flags to clear); the clearing forms undo a default or earlier option.
_FLAGS: dict[str, tuple[int, int]] = {
    "ro": (sc.MS_RDONLY, 0),
    "rw": (0, sc.MS_RDONLY),
    "nosuid": (sc.MS_NOSUID, 0),
    "suid": (0, sc.MS_NOSUID),
    "nodev": (sc.MS_NODEV, 0),
    "dev": (0, sc.MS_NODEV),
    "noexec": (sc.MS_NOEXEC, 0),
    "exec": (0, sc.MS_NOEXEC),
    "sync": (sc.MS_SYNCHRONOUS, 0),
    "async": (0, sc.MS_SYNCHRONOUS),
    "dirsync": (sc.MS_DIRSYNC, 0),
    "mand": (sc.MS_MANDLOCK, 0),
    "nomand": (0, sc.MS_MANDLOCK),
    "atime": (0, sc.MS_NOATIME),
    "noatime": (sc.MS_NOATIME, 0),
    "diratime": (0, sc.MS_NODIRATIME),
    "nodiratime": (sc.MS_NODIRATIME, 0),
    "relatime": (sc.MS_RELATIME, 0),
    "norelatime": (0, sc.MS_RELATIME),
    "strictatime": (sc.MS_STRICTATIME, 0),
    "nostrictatime": (0, sc.MS_STRICTATIME),
    "lazytime": (sc.MS_LAZYTIME, 0),
    "nolazytime": (0, sc.MS_LAZYTIME),
    "nosymfollow": (sc.MS_NOSYMFOLLOW, 0),
    "remount": (sc.MS_REMOUNT, 0),
}

PROPAGATION: dict[str, int] = {
    "private": sc.MS_PRIVATE,
    "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED,
    "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE,
    "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE,
    "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}

# Options that need features crisp does not implement; silently dropping them would give
# the container something other than what it asked for.
_UNSUPPORTED = ("tmpcopyup", "copy-symlink")
# Idmapped bind mounts (runtime/idmap.py): "ridmap" maps the mounts below the source too.
_IDMAP = ("idmap", "ridmap")


# runc's recursive forms: the attribute on the whole mount tree, through mount_setattr(2).
# Each is (attributes to set, attributes to clear).
_RECURSIVE_ATTRS: dict[str, tuple[int, int]] = {
    "rro": (sc.MOUNT_ATTR_RDONLY, 0),
    "rrw": (0, sc.MOUNT_ATTR_RDONLY),
    "rnosuid": (sc.MOUNT_ATTR_NOSUID, 0),
    "rsuid": (0, sc.MOUNT_ATTR_NOSUID),
    "rnodev": (sc.MOUNT_ATTR_NODEV, 0),
    "rdev": (0, sc.MOUNT_ATTR_NODEV),
    "rnoexec": (sc.MOUNT_ATTR_NOEXEC, 0),
    "rexec": (0, sc.MOUNT_ATTR_NOEXEC),
}


def _is_recursive_attr(option: str) -> bool:
    return option.startswith("r") and option not in _FLAGS and option[1:] in _FLAGS


@dataclass(frozen=True)
class MountOptions:
    flags: int = 0
    propagation: tuple[int, ...] = ()
    data: str = ""
    bind: bool = False
    recursive: bool = False
    recursive_set: int = 0  # MOUNT_ATTR_* for mount_setattr over the whole tree
    recursive_clear: int = 0
    idmap_recursive: bool = False  # "ridmap": the mounts below an idmapped source mapped too


def parse(options: Iterable[str], where: str) -> MountOptions:
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    bind = recursive = False
    recursive_set = recursive_clear = 0
    idmap_recursive = False
    for option in options:
        if option in ("bind", "rbind"):
            bind = True
            recursive = recursive or option == "rbind"
        elif option in _FLAGS:
            set_bits, clear_bits = _FLAGS[option]
            flags = (flags | set_bits) & ~clear_bits
        elif option in PROPAGATION:
            propagation.append(PROPAGATION[option])
        elif option in _RECURSIVE_ATTRS:
            set_bits, clear_bits = _RECURSIVE_ATTRS[option]
            recursive_set = (recursive_set | set_bits) & ~clear_bits
            recursive_clear = (recursive_clear | clear_bits) & ~set_bits
        elif option in _IDMAP:
            idmap_recursive = idmap_recursive or option == "ridmap"
        elif option.split("=", 1)[0] in _UNSUPPORTED or _is_recursive_attr(option):
            raise ValueError(f"{where}: mount option {option!r} is not supported")
        elif option.startswith("x-"):
            continue  # userspace-only hints (x-systemd…) are not for the kernel
        else:
            data.append(option)
    return MountOptions(
        flags,
        tuple(propagation),
        ",".join(data),
        bind,
        recursive,
        recursive_set,
        recursive_clear,
        idmap_recursive,
    )
