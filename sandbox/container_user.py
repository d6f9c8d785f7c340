"""Which uid, gid and groups a container's process runs as.

Names are looked up in the image's own /etc/passwd and /etc/group (inside the container's
rootfs, never the host's), as kubelet and containerd expect.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sandbox.errors import InvalidArgument


@dataclass(frozen=True)
class ProcessUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    username: str = ""


@dataclass(frozen=True)
class _PasswdEntry:
    name: str
    uid: int
    gid: int


def _read_lines(rootfs: Path, name: str) -> list[list[str]]:
    # The file belongs to the image: resolve it without following links out of the rootfs.
    path = rootfs / "etc" / name
    try:
        if path.is_symlink() or not path.is_file():
            return []
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _passwd(rootfs: Path) -> list[_PasswdEntry]:
    entries = []
    for fields in _read_lines(rootfs, "passwd"):
        if len(fields) >= 4 and fields[2].isdigit() and fields[3].isdigit():
            entries.append(_PasswdEntry(fields[0], int(fields[2]), int(fields[3])))
    return entries


def _groups(rootfs: Path) -> list[tuple[str, int, list[str]]]:
    groups = []
    for fields in _read_lines(rootfs, "group"):
        if len(fields) >= 3 and fields[2].isdigit():
            members = fields[3].split(",") if len(fields) >= 4 and fields[3] else []
            groups.append((fields[0], int(fields[2]), members))
    return groups


def _lookup_user(rootfs: Path, user: str) -> _PasswdEntry | None:
    entries = _passwd(rootfs)
    if user.isdigit():
        uid = int(user)
        return next((e for e in entries if e.uid == uid), _PasswdEntry("", uid, 0))
    return next((e for e in entries if e.name == user), None)


def _lookup_group(rootfs: Path, group: str) -> int:
    if group.isdigit():
        return int(group)
    for name, gid, _members in _groups(rootfs):
        if name == group:
            return gid
    raise InvalidArgument(f"group {group!r} not found in the image's /etc/group")


def resolve_user(
    rootfs: Path,
    *,
    image_user: str,
    run_as_user: int | None,
    run_as_group: int | None,
    run_as_username: str,
    supplemental_groups: tuple[int, ...],
    policy: Literal["merge", "strict"],
) -> ProcessUser:
    if run_as_group is not None and run_as_user is None and not run_as_username:
        raise InvalidArgument("run_as_group is set without run_as_user or run_as_username")
    gid: int | None = None
    if run_as_user is not None:
        entry = _lookup_user(rootfs, str(run_as_user))
        assert entry is not None  # numeric lookups always answer
    elif run_as_username:
        entry = _lookup_user(rootfs, run_as_username)
        if entry is None:
            raise InvalidArgument(f"user {run_as_username!r} not found in the image's /etc/passwd")
    else:
        user, _, group = (image_user or "0").partition(":")
        entry = _lookup_user(rootfs, user)
        if entry is None:
            raise InvalidArgument(
                f"image user {image_user!r}: {user!r} not found in the image's /etc/passwd"
            )
        if group:
            gid = _lookup_group(rootfs, group)
    if run_as_group is not None:
        gid = run_as_group
    if gid is None:
        gid = entry.gid
    groups: list[int] = [gid]
    if policy == "merge" and entry.name:
        groups += [g for _name, g, members in _groups(rootfs) if entry.name in members]
    groups += supplemental_groups
    return ProcessUser(entry.uid, gid, tuple(dict.fromkeys(groups)), entry.name)
