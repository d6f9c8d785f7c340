"""File attributes a tar header carries (owner, mode, xattrs, times) and the order in
which they must be restored so that none undoes another."""

from __future__ import annotations

import errno
import os
import tarfile
from collections.abc import Iterator

# A layer must not forge overlay metadata (opaque, redirect, origin...) of its own.
_FORBIDDEN_XATTR_PREFIX = "trusted.overlay."
_PAX_XATTR_PREFIX = "SCHILY.xattr."


def mtime_ns(member: tarfile.TarInfo) -> int:
    return int(member.mtime * 1_000_000_000)


def _pax_xattrs(member: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    for key, value in member.pax_headers.items():
        if not key.startswith(_PAX_XATTR_PREFIX):
            continue
        name = key.removeprefix(_PAX_XATTR_PREFIX)
        if name.startswith(_FORBIDDEN_XATTR_PREFIX):
            continue
        # tarfile decoded the raw value with surrogateescape; this restores the bytes.
        yield name, value.encode("utf-8", "surrogateescape")


def apply_attributes(fd: int, name: str | None, member: tarfile.TarInfo) -> None:
    """Owner, then mode (chown clears setuid bits), then xattrs (chown also clears
    security.capability), then times. ``name`` set means a non-directory entry in the
    directory ``fd`` that must not be followed; otherwise ``fd`` is the object itself."""
    mtime = mtime_ns(member)
    if name is None:
        os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, member.mode & 0o7777)
        for key, value in _pax_xattrs(member):
            _set_xattr(fd, key, value, member)
        os.utime(fd, ns=(mtime, mtime))
        return
    os.chown(name, member.uid, member.gid, dir_fd=fd, follow_symlinks=False)
    if not member.issym():
        # Safe to follow: we just created this device or fifo and nothing else writes here.
        os.chmod(name, member.mode & 0o7777, dir_fd=fd)
    for key, value in _pax_xattrs(member):
        _set_xattr(f"/proc/self/fd/{fd}/{name}", key, value, member)
    os.utime(name, ns=(mtime, mtime), dir_fd=fd, follow_symlinks=False)


def _set_xattr(target: int | str, key: str, value: bytes, member: tarfile.TarInfo) -> None:
    try:
        if isinstance(target, int):
            os.setxattr(target, key, value)
        else:
            os.setxattr(target, key, value, follow_symlinks=False)
    except OSError as err:
        # Like containerd: a filesystem or object type without that namespace is not
        # a reason to fail the whole pull (user.* on a symlink, for instance).
        if err.errno not in (errno.ENOTSUP, errno.EPERM):
            raise OSError(err.errno, f"setting xattr {key} on {member.name!r}: {err}") from err
