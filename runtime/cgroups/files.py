"""Reading and writing cgroupfs control files, with errors that name the file."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class CgroupError(Exception):
    """A cgroup operation failed; the message names the cgroup file and value."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


class ControllerUnavailableError(CgroupError):
    """A limit was requested for a controller this cgroup does not have."""


def write(directory: Path, name: str, value: str | int) -> None:
    """Write one value with a single write(2): cgroupfs parses each write separately."""
    path = directory / name
    text = str(value)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ControllerUnavailableError(
            f"cannot set {name}={text!r}: {path} does not exist "
            "(controller not mounted/enabled, or kernel lacks the feature)",
            errno.ENOENT,
        ) from None
    except OSError as exc:
        raise CgroupError(f"open {path}: {exc.strerror}", exc.errno) from None
    try:
        os.write(fd, text.encode())
    except OSError as exc:
        raise CgroupError(f"write {text!r} to {path}: {exc.strerror}", exc.errno) from None
    finally:
        os.close(fd)


def read(directory: Path, name: str) -> str:
    path = directory / name
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise CgroupError(f"read {path}: {exc.strerror}", exc.errno) from None


def read_optional(directory: Path, name: str) -> str | None:
    """Contents, or None if the file is absent (controller not there)."""
    try:
        return (directory / name).read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CgroupError(f"read {directory / name}: {exc.strerror}", exc.errno) from None


def parse_int(text: str) -> int:
    """Parse a cgroup number; "max" (v2's "no limit") becomes -1."""
    return -1 if text == "max" else int(text)


def read_int(directory: Path, name: str, default: int = 0) -> int:
    text = read_optional(directory, name)
    if text is None or text == "":
        return default
    try:
        return parse_int(text)
    except ValueError:
        raise CgroupError(f"{directory / name}: not a number: {text!r}") from None


def read_keyed(directory: Path, name: str) -> dict[str, int]:
    """Flat keyed files such as memory.stat, cpu.stat, memory.events ("key value" lines).
    Missing file → empty dict."""
    text = read_optional(directory, name)
    result: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            result[key] = parse_int(value.strip())
        except ValueError:
            continue
    return result


def read_pids(directory: Path, name: str = "cgroup.procs") -> list[int]:
    text = read_optional(directory, name)
    return [int(line) for line in (text or "").split()]
