"""Image volumes (kubelet's ImageVolume feature): a pulled image's filesystem, mounted
read-only at a container path.

Each volume is an overlay of the image's unpacked layers with no upper dir, so nothing can
write to it and the layers stay shared with every container of that image. It lives in the
container's bundle (bundle/volumes/<n>/root) and is bind-mounted into the container like a
host path; removing the container unmounts it. The image must have been pulled already
(kubelet pulls image volumes before it creates the container), as with the container's own
image.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from imagesvc.store import ImageRecord
from runtime import namespaces, syscalls
from sandbox.container_config import MountRequest, Propagation
from sandbox.container_context import Images
from sandbox.errors import FailedPrecondition, InvalidArgument, NotFound
from sandbox.rootfs import MAX_MOUNT_DATA

# overlayfs needs two lower dirs when it has no upper dir: empty ones fill in.
_MIN_LOWERS = 2


def find_images(images: Images, mounts: Sequence[MountRequest]) -> dict[int, ImageRecord]:
    """The image of every image volume among `mounts`, by its position."""
    found = {}
    for position, mount in enumerate(mounts):
        if not mount.image:
            continue
        if mount.host_path:
            raise InvalidArgument(
                f"mount {mount.container_path}: names both host_path {mount.host_path!r} and "
                f"image {mount.image!r}"
            )
        record = images.find(mount.image)
        if record is None:
            raise NotFound(
                f"mount {mount.container_path}: image {mount.image!r} not found: pull it first"
            )
        found[position] = record
    return found


def mount(
    bundle: Path, mounts: Sequence[MountRequest], lower_dirs: Mapping[int, Sequence[Path]]
) -> tuple[MountRequest, ...]:
    """Mount the image volumes (`lower_dirs` by position in `mounts`) below `bundle`, and
    return `mounts` with each image volume turned into a read-only bind of its overlay."""
    resolved = []
    for position, request in enumerate(mounts):
        if position not in lower_dirs:
            resolved.append(request)
            continue
        root = _overlay(bundle / "volumes" / str(position), lower_dirs[position])
        source = _sub_path(root, request)
        resolved.append(
            MountRequest(
                container_path=request.container_path,
                host_path=str(source),
                readonly=True,  # whatever was asked: an image volume is never writable
                recursive_read_only=request.recursive_read_only,
                propagation=Propagation.PRIVATE,
            )
        )
    return tuple(resolved)


def unmount(bundle: Path) -> None:
    """Unmount every image volume of the bundle; idempotent."""
    try:
        volumes = list((bundle / "volumes").iterdir())
    except FileNotFoundError:
        return
    for volume in volumes:
        namespaces.unmount(volume / "root")


def _overlay(directory: Path, layers: Sequence[Path]) -> Path:
    directory.mkdir(mode=0o700, parents=True)
    root = directory / "root"
    root.mkdir(mode=0o755)
    lowers = [str(layer) for layer in layers]
    for filler in range(_MIN_LOWERS - len(lowers)):
        empty = directory / f"empty{filler}"
        empty.mkdir(mode=0o755)
        lowers.append(str(empty))
    options = "lowerdir=" + ":".join(lowers)
    if len(options) > MAX_MOUNT_DATA:
        raise FailedPrecondition(
            f"image volume at {directory}: the image has too many layers ({len(layers)}) "
            "for one overlay mount"
        )
    syscalls.mount("overlay", root, "overlay", syscalls.MS_RDONLY, options)
    return root


def _sub_path(root: Path, request: MountRequest) -> Path:
    """The part of the image the volume shows: all of it, or `image_sub_path`, which must
    exist and stay inside the image (also through its symlinks)."""
    if not request.image_sub_path:
        return root
    sub_path = request.image_sub_path
    where = f"mount {request.container_path}: image_sub_path {sub_path!r}"
    if os.path.isabs(sub_path) or ".." in Path(sub_path).parts:
        raise InvalidArgument(f"{where} must be relative and must not contain '..'")
    resolved = Path(os.path.realpath(root / sub_path))
    if not resolved.is_relative_to(root):
        raise InvalidArgument(f"{where} leads outside the image")
    if not resolved.exists():
        raise NotFound(f"{where} does not exist in image {request.image!r}")
    return resolved
