"""Unix socket endpoints and the lock files that make each daemon the only owner of them."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from pathlib import Path


class StartupError(RuntimeError):
    """The daemon cannot start; the message is the one line the operator sees."""


class LockFile:
    """An exclusive flock on `path`, held for the life of the daemon.

    After locking, the path must still name the locked inode; otherwise a previous owner
    unlinked it between our open and our lock, and we try again on the new file.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        for _ in range(10):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise StartupError(
                    f"{what} is in use by another crisp (pid {owner}; lock {path})"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self._fd = fd
                return
            os.close(fd)
        raise StartupError(f"cannot lock {path}: it keeps being replaced")

    def release(self) -> None:
        # Unlink while still holding the lock, so no one can lock the old inode afterwards.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._fd)


def prepare_socket_path(path: Path) -> None:
    """Make `path` free for binding: its directory must exist, and an old socket there must be dead.

    Call only while holding the socket's lock, so a live crisp cannot be behind it.
    """
    if not path.parent.is_dir():
        raise StartupError(f"socket {path}: directory {path.parent} does not exist")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StartupError(
            f"socket {path}: path exists and is not a socket; refusing to replace it"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as e:
        if e.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise StartupError(f"socket {path}: cannot probe old socket: {e.strerror}") from e
        os.unlink(path)  # nobody listens: a crashed daemon left it
        return
    finally:
        probe.close()
    raise StartupError(f"socket {path} is served by another process; refusing to replace it")
