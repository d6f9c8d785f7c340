"""Idmapped mounts: a view of a directory tree in which every file's owner is shown through
the id mappings of a user namespace (host id H appears as H's image in the namespace, so an
image's root-owned files belong to the root of a container's user namespace, with no chown).

Making one needs CAP_SYS_ADMIN where the filesystem was mounted, so it is done from the
host's user namespace: by the daemon for a rootfs's layers, by the container init before it
joins the container's user namespace for bind mounts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from runtime import namespaces, syscalls
from runtime.spec import IdMapping
from runtime.zygote import Zygote

_PROBE_HOST_ID = 1_000_000
_PROBE_MAPPING = (IdMapping(0, _PROBE_HOST_ID, 65536),)


def detached(
    source: str | os.PathLike[str],
    userns_fd: int,
    with_submounts: bool = False,
    map_submounts: bool = False,
) -> int:
    """An idmapped copy of the mount at `source` (and of the mounts below it when
    `with_submounts`, mapped too when `map_submounts`), not attached anywhere yet: a
    close-on-exec fd for move_mount."""
    tree = syscalls.open_tree(source, with_submounts)
    try:
        syscalls.mount_setattr_idmap(tree, userns_fd, with_submounts and map_submounts)
    except BaseException:
        os.close(tree)
        raise
    return tree


def bind(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    userns: str | os.PathLike[str],
    recursive: bool = False,
) -> None:
    """Mount an idmapped view of `source` at `target` (an existing directory or file),
    mapped through the user namespace file `userns` (e.g. a pin, or /proc/<pid>/ns/user)."""
    userns_fd = os.open(userns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        tree = detached(source, userns_fd, recursive, recursive)
    finally:
        os.close(userns_fd)
    try:
        syscalls.move_mount(tree, target)
    finally:
        os.close(tree)


def probe(zygote: Zygote, work_dir: Path) -> str | None:
    """Why overlayfs cannot stack idmapped lower layers in `work_dir`'s filesystem (what
    a user-namespaced container's rootfs needs), or None when it can. `work_dir` must not
    exist; it is removed again."""
    work_dir.mkdir(mode=0o700)
    pins: dict[str, str] = {}
    mounted: list[Path] = []
    try:
        made = namespaces.create(
            zygote,
            namespaces.NamespaceSpec(
                new=(),
                keep_process=False,
                uid_mappings=_PROBE_MAPPING,
                gid_mappings=_PROBE_MAPPING,
            ),
            work_dir / "ns",
        )
        pins = made.pins
        lower, mapped, upper, work, merged = (
            work_dir / name for name in ("lower", "mapped", "upper", "work", "merged")
        )
        for directory in (lower, mapped, upper, work, merged):
            directory.mkdir()
        (lower / "file").touch()
        bind(lower, mapped, pins["user"])
        mounted.append(mapped)
        options = f"lowerdir={mapped},upperdir={upper},workdir={work}"
        syscalls.mount("overlay", merged, "overlay", 0, options)
        mounted.append(merged)
        # The overlay keeps its own reference to the layer: the view may go at once.
        namespaces.unmount(mapped)
        mounted.remove(mapped)
        owner = (merged / "file").stat().st_uid
        if owner != _PROBE_HOST_ID:
            return f"a file of an idmapped overlay layer shows owner {owner}, not {_PROBE_HOST_ID}"
        return None
    except OSError as e:
        return f"idmapped overlay layers do not work in {work_dir.parent}: {e}"
    except namespaces.NamespaceError as e:
        return f"cannot create a user namespace: {e}"
    finally:
        for point in reversed(mounted):
            namespaces.unmount(point)
        for path in pins.values():
            namespaces.unpin(path)
        with contextlib.suppress(OSError):
            shutil.rmtree(work_dir)
