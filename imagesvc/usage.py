"""Disk usage of the image store, as ImageFsInfo reports it: bytes allocated and inodes
used under a directory (hard links counted once), and the filesystem they live on."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FsUsage:
    mountpoint: str
    """The directory measured; kubelet (cAdvisor) finds its filesystem from it, as it
    does from containerd's snapshotter root."""
    used_bytes: int
    inodes_used: int
    timestamp_ns: int


def measure(root: Path) -> FsUsage:
    timestamp = time.time_ns()
    seen: set[tuple[int, int]] = set()
    used = 0
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue  # removed while we walked: a concurrent image removal
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            key = (info.st_dev, info.st_ino)
            if key in seen:
                continue
            seen.add(key)
            used += info.st_blocks * 512
            if stat.S_ISDIR(info.st_mode):
                stack.append(entry.path)
    try:
        own = root.stat()
        seen.add((own.st_dev, own.st_ino))
        used += own.st_blocks * 512
    except FileNotFoundError:
        pass
    return FsUsage(str(root), used, len(seen), timestamp)
