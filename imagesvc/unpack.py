"""Unpack one layer tar into a fresh directory that can serve as an overlay lower dir.

Every path is resolved one component at a time from a directory file descriptor with
``O_NOFOLLOW``, so no entry can be written through a symlink: an entry whose parent is
a symlink is rejected, as are absolute names and ``..`` components. OCI whiteouts are
turned into their overlayfs form (a 0/0 character device; ``trusted.overlay.opaque=y``).
The layer is built in a temporary sibling directory and renamed into place only once it
is complete and its diff ID verified; on any failure the temporary directory is removed.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import secrets
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from imagesvc.attributes import apply_attributes, mtime_ns
from imagesvc.compression import Compression, compression_of_media_type, decompressed
from imagesvc.digest import Digest, Hasher, new_hasher
from imagesvc.errors import DigestMismatch, InvalidLayer, UnsafeLayer

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
# Other ".wh..wh." names are aufs bookkeeping with no meaning for overlay.
AUFS_META_PREFIX = ".wh..wh."
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_CHUNK = 1 << 20
# Errors the archive's content causes (as opposed to the host: ENOSPC, EIO, EROFS...).
_ARCHIVE_FAULTS = frozenset(
    {
        errno.ENOENT,
        errno.EINVAL,
        errno.EEXIST,
        errno.ENAMETOOLONG,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ELOOP,
        errno.EMLINK,
        errno.ENOTEMPTY,
    }
)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class UnpackResult:
    diff_id: Digest
    size: int
    """Bytes of the uncompressed tar stream."""
    compression: Compression


def unpack_layer(
    stream: BinaryIO,
    target: Path | str,
    *,
    media_type: str | None = None,
    expected_diff_id: Digest | None = None,
) -> UnpackResult:
    """Unpack a (possibly gzip- or zstd-compressed) layer tar into ``target``, which must
    not exist yet. Raises ``UnsafeLayer``/``InvalidLayer`` for hostile or corrupt archives
    and ``DigestMismatch`` when the uncompressed stream is not ``expected_diff_id``."""
    target = Path(target)
    if media_type is not None:
        compression_of_media_type(media_type)
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "layer target already exists", str(target))
    temp = target.parent / f".tmp-{target.name}-{secrets.token_hex(6)}"
    os.mkdir(temp, 0o755)
    try:
        root_fd = os.open(temp, _DIR_FLAGS)
        try:
            os.fchmod(root_fd, 0o755)
            result = _unpack_into(stream, root_fd)
        finally:
            os.close(root_fd)
        if expected_diff_id is not None and result.diff_id != expected_diff_id:
            raise DigestMismatch(str(expected_diff_id), str(result.diff_id), "layer diff ID")
        os.rename(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return result


def _unpack_into(stream: BinaryIO, root_fd: int) -> UnpackResult:
    try:
        compression, plain = decompressed(stream)
        hashing = _HashingReader(plain, new_hasher("sha256"))
        with tarfile.open(fileobj=hashing, mode="r|") as archive:  # type: ignore[call-overload]
            _Extractor(root_fd).run(archive)
        # The diff ID covers the whole stream, including padding after the end marker.
        while hashing.read(_CHUNK):
            pass
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, zstandard.ZstdError) as err:
        raise InvalidLayer(f"corrupt layer archive: {err}") from err
    return UnpackResult(Digest("sha256", hashing.hexdigest()), hashing.count, compression)


class _HashingReader:
    def __init__(self, inner: BinaryIO, hasher: Hasher) -> None:
        self._inner = inner
        self._hasher = hasher
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._hasher.update(data)
        self.count += len(data)
        return data

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()


def split_entry_path(name: str, entry: str) -> list[str]:
    """Components of an archive path relative to the layer root, refusing any that could
    leave it. ``entry`` names the tar member in the error."""
    if name.startswith("/"):
        raise UnsafeLayer(entry, f"absolute path {name!r}")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(entry, f"path {name!r} contains '..'")
    return parts


class _Extractor:
    def __init__(self, root_fd: int) -> None:
        self._root_fd = root_fd
        self._dir_times: dict[tuple[str, ...], int] = {}
        # Entries come grouped by directory, and reopening the parent path component by
        # component for each one dominated unpack time. Only the entry being written can
        # change the tree, and it does so inside this parent, so the descriptor stays valid.
        self._parent_cache: tuple[tuple[str, ...], int] | None = None

    def run(self, archive: tarfile.TarFile) -> None:
        try:
            self._run(archive)
        finally:
            self._drop_parent()

    def _parent(self, parts: list[str], entry: str) -> int:
        key = tuple(parts)
        if self._parent_cache is not None and self._parent_cache[0] == key:
            return self._parent_cache[1]
        self._drop_parent()
        fd = self._open_dir(parts, entry, create=True)
        self._parent_cache = (key, fd)
        return fd

    def _drop_parent(self) -> None:
        if self._parent_cache is not None:
            os.close(self._parent_cache[1])
            self._parent_cache = None

    def _run(self, archive: tarfile.TarFile) -> None:
        while (member := archive.next()) is not None:
            try:
                self._entry(archive, member)
            except OSError as err:
                if err.errno in _ARCHIVE_FAULTS:
                    raise InvalidLayer(f"layer entry {member.name!r}: {err}") from err
                raise
            # tarfile keeps every header it has seen; a layer can have 100k entries.
            archive.members.clear()  # type: ignore[attr-defined]
        for parts, when in self._dir_times.items():
            self._restore_dir_time(parts, when)

    def _entry(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = split_entry_path(member.name, member.name)
        if not parts:
            if not member.isdir():
                raise UnsafeLayer(member.name, "the layer root must be a directory")
            apply_attributes(self._root_fd, None, member)
            self._dir_times[()] = mtime_ns(member)
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, member)
            return
        parent = self._parent(parts[:-1], member.name)
        _clear(parent, base, keep_dir=member.isdir())
        if member.isreg():
            self._regular(archive, member, parent, base)
        elif member.isdir():
            self._directory(member, parent, base, tuple(parts))
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=parent)
            apply_attributes(parent, base, member)
        elif member.islnk():
            self._hardlink(member, parent, base)
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = {tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK}.get(
                member.type, stat.S_IFIFO
            )
            device = os.makedev(member.devmajor, member.devminor)
            os.mknod(base, kind | 0o600, device, dir_fd=parent)
            apply_attributes(parent, base, member)
        else:
            raise InvalidLayer(
                f"layer entry {member.name!r} has unsupported tar type {member.type!r}"
            )

    def _regular(
        self, archive: tarfile.TarFile, member: tarfile.TarInfo, parent: int, base: str
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=parent)
        try:
            source = archive.extractfile(member)
            if source is None:
                raise InvalidLayer(f"layer entry {member.name!r} has no data")
            while chunk := source.read(_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            apply_attributes(fd, None, member)
        finally:
            os.close(fd)

    def _directory(
        self, member: tarfile.TarInfo, parent: int, base: str, parts: tuple[str, ...]
    ) -> None:
        # _clear kept an existing directory: a repeated entry updates its metadata.
        with contextlib.suppress(FileExistsError):
            os.mkdir(base, 0o700, dir_fd=parent)
        fd = os.open(base, _DIR_FLAGS, dir_fd=parent)
        try:
            apply_attributes(fd, None, member)
        finally:
            os.close(fd)
        # Creating children bumps a directory's mtime, so it is restored at the end.
        self._dir_times[parts] = mtime_ns(member)

    def _hardlink(self, member: tarfile.TarInfo, parent: int, base: str) -> None:
        if member.linkname.startswith("/"):
            raise UnsafeLayer(member.name, f"hardlink to absolute path {member.linkname!r}")
        if ".." in member.linkname.split("/"):
            raise UnsafeLayer(member.name, f"hardlink target {member.linkname!r} contains '..'")
        target = split_entry_path(member.linkname, member.name)
        if not target:
            raise UnsafeLayer(member.name, "hardlink to the layer root")
        source_parent = self._open_dir(target[:-1], member.name, create=False)
        try:
            try:
                info = os.lstat(target[-1], dir_fd=source_parent)
            except FileNotFoundError:
                raise InvalidLayer(
                    f"layer entry {member.name!r} links to {member.linkname!r}, "
                    "which is not in the layer"
                ) from None
            if stat.S_ISDIR(info.st_mode):
                raise UnsafeLayer(member.name, f"hardlink to directory {member.linkname!r}")
            # The link itself, never what it may point to, even if it is a symlink.
            os.link(
                target[-1],
                base,
                src_dir_fd=source_parent,
                dst_dir_fd=parent,
                follow_symlinks=False,
            )
        finally:
            os.close(source_parent)

    def _whiteout(self, parts: list[str], member: tarfile.TarInfo) -> None:
        base = parts[-1]
        parent = self._parent(parts[:-1], member.name)
        if base == OPAQUE_WHITEOUT:
            os.setxattr(parent, OVERLAY_OPAQUE_XATTR, b"y")
            return
        if base.startswith(AUFS_META_PREFIX):
            return
        hidden = base.removeprefix(WHITEOUT_PREFIX)
        if hidden in ("", ".", ".."):
            raise UnsafeLayer(member.name, "whiteout of an invalid name")
        # A whiteout only hides lower layers; an entry of the same name in this layer
        # already does that in overlay, and must stay visible.
        if _lexists(parent, hidden):
            return
        os.mknod(hidden, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)

    def _open_dir(self, parts: list[str], entry: str, *, create: bool) -> int:
        fd = os.dup(self._root_fd)
        try:
            for depth, part in enumerate(parts):
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise InvalidLayer(
                            f"layer entry {entry!r} refers to missing directory "
                            f"{'/'.join(parts[: depth + 1])!r}"
                        ) from None
                    os.mkdir(part, 0o755, dir_fd=fd)
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as err:
                    if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    _refuse_parent(fd, part, entry, "/".join(parts[: depth + 1]), create)
                    os.mkdir(part, 0o755, dir_fd=fd)
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _restore_dir_time(self, parts: tuple[str, ...], when: int) -> None:
        try:
            fd = self._open_dir(list(parts), "/".join(parts), create=False)
        except (InvalidLayer, FileNotFoundError):
            return  # replaced by a later entry of another type
        try:
            os.utime(fd, ns=(when, when))
        finally:
            os.close(fd)


def _refuse_parent(fd: int, part: str, entry: str, path: str, create: bool) -> None:
    """Decide about a parent component that is not a directory: a whiteout device of this
    layer gives way to the directory (the real entry wins); anything else is refused."""
    info = os.lstat(part, dir_fd=fd)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeLayer(entry, f"parent {path!r} is a symlink")
    if create and stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
        os.unlink(part, dir_fd=fd)
        return
    raise InvalidLayer(f"layer entry {entry!r}: parent {path!r} is not a directory")


def _clear(parent: int, base: str, *, keep_dir: bool) -> None:
    try:
        info = os.lstat(base, dir_fd=parent)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        if not keep_dir:
            shutil.rmtree(base, dir_fd=parent)
    else:
        os.unlink(base, dir_fd=parent)


def _lexists(parent: int, name: str) -> bool:
    try:
        os.lstat(name, dir_fd=parent)
    except FileNotFoundError:
        return False
    return True
