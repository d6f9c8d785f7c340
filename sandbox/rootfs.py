"""A container's root filesystem: the image's unpacked layers (read-only, shared by every
container of the image) under an overlay whose upper and work dirs belong to the container.

Everything lives in the container's bundle directory, so removing the bundle after the
unmount removes the writable layer too.

In a pod with its own user namespace the layers are stacked through idmapped views of them
(runtime/idmap.py): the image's root-owned files then belong to root of the pod, while the
layers on disk, shared with every other container, stay as they are. The upper dir belongs
to that root from the start, so what the container writes lands there with its host ids.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime import idmap, namespaces, syscalls
from sandbox.errors import FailedPrecondition

# mount(2) copies its data argument into one page; a longer lowerdir list is refused.
MAX_MOUNT_DATA = 4095
_VIEWS = "l"  # below the bundle: the idmapped layer views (short: they fill the mount data)


@dataclass(frozen=True)
class UserNamespace:
    """The pod's user namespace, which a container's files must belong to."""

    path: str  # its pin
    root_uid: int  # the host ids of its root
    root_gid: int


def make(bundle: Path, lower_dirs: Sequence[Path], userns: UserNamespace | None = None) -> Path:
    """Create the bundle directory and mount the overlay at bundle/rootfs. On failure
    nothing remains (the bundle directory must not exist before)."""
    # Root of a user namespace has no privilege on the host: it must be able to pass
    # through the bundle to reach its rootfs.
    bundle.mkdir(mode=0o700 if userns is None else 0o711)
    views: list[Path] = []
    try:
        rootfs, upper, work = bundle / "rootfs", bundle / "upper", bundle / "work"
        for directory in (rootfs, upper, work):
            directory.mkdir(mode=0o755)
        lowers = [str(d) for d in lower_dirs]
        if not lowers:
            # An image without layers: overlayfs still needs a lower dir.
            empty = bundle / "empty"
            empty.mkdir(mode=0o755)
            lowers = [str(empty)]
        if userns is not None:
            os.chown(upper, userns.root_uid, userns.root_gid)
            (bundle / _VIEWS).mkdir(mode=0o700)
            for index, lower in enumerate(lowers):
                view = bundle / _VIEWS / str(index)
                view.mkdir()
                idmap.bind(lower, view, userns.path)
                views.append(view)
            lowers = [str(view) for view in views]
        options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
        if len(options) > MAX_MOUNT_DATA:
            raise FailedPrecondition(
                f"image has too many layers ({len(lowers)}) for one overlay mount under "
                f"{bundle.parent}"
            )
        # No nodev/nosuid: images legitimately carry setuid binaries (ping, su, sudo).
        syscalls.mount("overlay", rootfs, "overlay", 0, options)
    except BaseException:
        _unmount_views(bundle, views)  # before rmtree, which would empty the layers
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    # The overlay holds its own references to the views' layers: they can go at once.
    _unmount_views(bundle, views)
    return rootfs


def _unmount_views(bundle: Path, views: list[Path]) -> None:
    for view in views:
        namespaces.unmount(view)
    shutil.rmtree(bundle / _VIEWS, ignore_errors=True)


def remove(bundle: Path) -> None:
    """Unmount the overlay and delete the bundle with its writable layer; idempotent."""
    namespaces.unmount(bundle / "rootfs")
    # Layer views a crash left mounted: deleting through them would empty the layers. (Only
    # a user-namespaced pod's container has their directory; the lookup reads every mount.)
    if (bundle / _VIEWS).is_dir():
        for view in namespaces.mounts_under(bundle / _VIEWS):
            namespaces.unmount(view)
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(bundle)


def usage(upper: Path) -> tuple[int, int]:
    """(bytes, inodes) the container wrote: the size of its overlay upper dir."""
    total = inodes = 0
    for directory, subdirs, files in os.walk(upper):
        for name in (*subdirs, *files):
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(directory, name))
                total += info.st_blocks * 512
                inodes += 1
    return total, inodes
