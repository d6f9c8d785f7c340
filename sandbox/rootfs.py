"""A container's root filesystem: the image's unpacked layers (read-only, shared by every
container of the image) under an overlay whose upper and work dirs belong to the container.

Everything lives in the container's bundle directory, so removing the bundle after the
unmount removes the writable layer too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from runtime import namespaces, syscalls
from sandbox.errors import FailedPrecondition

# mount(2) copies its data argument into one page; a longer lowerdir list is refused.
_MAX_OPTIONS = 4095


def make(bundle: Path, lower_dirs: Sequence[Path]) -> Path:
    """Create the bundle directory and mount the overlay at bundle/rootfs. On failure
    nothing remains (the bundle directory must not exist before)."""
    bundle.mkdir(mode=0o700)
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
        options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
        if len(options) > _MAX_OPTIONS:
            raise FailedPrecondition(
                f"image has too many layers ({len(lowers)}) for one overlay mount under "
                f"{bundle.parent}"
            )
        # No nodev/nosuid: images legitimately carry setuid binaries (ping, su, sudo).
        syscalls.mount("overlay", rootfs, "overlay", 0, options)
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    return rootfs


def remove(bundle: Path) -> None:
    """Unmount the overlay and delete the bundle with its writable layer; idempotent."""
    namespaces.unmount(bundle / "rootfs")
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
