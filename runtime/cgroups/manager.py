"""The one interface every cgroup implementation (v1, v2, later systemd) offers."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from abc import ABC, abstractmethod
from enum import Enum
from pathlib import Path, PurePosixPath

from runtime.cgroups import files
from runtime.cgroups.resources import LinuxResources
from runtime.cgroups.stats import Stats


class CgroupVersion(Enum):
    V1 = "v1"  # legacy or hybrid hierarchy
    V2 = "v2"  # unified hierarchy


class CgroupManager(ABC):
    """One container's (or pod's) cgroup, named by an OCI cgroupsPath like "/crisp/abc".

    A relative path is taken relative to the hierarchy root too. Paths with ".." are
    refused so that a spec cannot point outside the hierarchy."""

    version: CgroupVersion

    def __init__(self, path: str) -> None:
        self.path = normalize(path)

    @abstractmethod
    def create(self) -> None:
        """Make the directories (idempotent) so that set() and apply() can follow."""

    @abstractmethod
    def apply(self, pid: int) -> None:
        """Move process `pid` (all its threads) into the cgroup; creates it if needed."""

    @abstractmethod
    def enter(self) -> None:
        """Move the calling process, which must be single-threaded, into the cgroup (made
        by create() before)."""

    @abstractmethod
    def set(self, resources: LinuxResources) -> None:
        """Write every limit present in `resources`; None fields are left alone."""

    def update(self, resources: LinuxResources) -> None:
        """Change limits of a live cgroup; only the fields present are written."""
        self.set(resources)

    @abstractmethod
    def stats(self) -> Stats: ...

    @abstractmethod
    def oom_kills(self) -> int:
        """How many processes of the cgroup the OOM killer has killed (stats().memory's
        count, read alone)."""

    @abstractmethod
    def pids(self) -> list[int]:
        """Processes in the cgroup and its descendants."""

    @abstractmethod
    def freeze(self, timeout: float = 5.0) -> None: ...

    @abstractmethod
    def thaw(self, timeout: float = 5.0) -> None: ...

    @abstractmethod
    def is_frozen(self) -> bool: ...

    @abstractmethod
    def exists(self) -> bool: ...

    @abstractmethod
    def destroy(self, timeout: float = 5.0) -> None:
        """Remove the cgroup and any child cgroups; idempotent. Waits up to `timeout`
        for dying tasks to leave; raises CgroupError if some are still there."""

    @abstractmethod
    def remove_if_unused(self) -> bool:
        """Remove the cgroup only if it has no tasks and no child cgroups (never touching
        anything below it, which may belong to others); True when it is gone."""

    def _require_exists(self) -> None:
        # Not creating implicitly: an update racing a removal must not resurrect the cgroup.
        if not self.exists():
            raise files.CgroupError(f"cgroup {self.path} does not exist (create it first)")

    def kill(self, timeout: float = 5.0) -> None:
        """SIGKILL every process, freezing first so that nothing forks away meanwhile."""
        if not self.pids():
            return  # nothing inside can fork, and freezing and thawing take milliseconds
        self.freeze(timeout)
        try:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            self.thaw(timeout)


def normalize(path: str) -> str:
    parts = PurePosixPath("/", path).parts[1:]
    if any(part in ("..", ".") for part in path.split("/")):
        raise ValueError(f"cgroupsPath {path!r} must not contain '.' or '..'")
    return "/" + "/".join(parts)


def under(mountpoint: Path, path: str) -> Path:
    return mountpoint.joinpath(*PurePosixPath(path).parts[1:])


def remove_tree(directory: Path, timeout: float) -> None:
    """rmdir `directory` and its child cgroups, deepest first. A cgroup with tasks is
    EBUSY until they have exited, which can lag a SIGKILL by a few milliseconds."""
    if not directory.exists():
        return
    for child in sorted((p for p in directory.iterdir() if p.is_dir()), reverse=True):
        remove_tree(child, timeout)
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                tasks = files.read_pids(directory)
                raise files.CgroupError(
                    f"rmdir {directory}: {exc.strerror}"
                    + (f" (processes still inside: {tasks})" if tasks else ""),
                    exc.errno,
                ) from None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def tree_pids(directory: Path) -> list[int]:
    """cgroup.procs of `directory` and of every cgroup below it."""
    if not directory.is_dir():
        return []
    result = files.read_pids(directory)
    for child in directory.iterdir():
        if child.is_dir():
            result.extend(tree_pids(child))
    return result


def rmdir_if_unused(directory: Path) -> bool:
    """rmdir one cgroup directory; False when tasks or child cgroups keep it (EBUSY)."""
    try:
        directory.rmdir()
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        raise files.CgroupError(f"rmdir {directory}: {exc.strerror}", exc.errno) from None
    return True
