"""Finding the cgroup hierarchies this process sees, and which version to drive."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runtime.cgroups.manager import CgroupVersion

DEFAULT_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class CgroupMounts:
    v1: dict[str, Path] = field(default_factory=dict)  # controller → mountpoint
    unified: Path | None = None  # the cgroup2 mount, if any

    @property
    def version(self) -> CgroupVersion:
        # Hybrid hosts keep every controller on v1, so they are driven as v1.
        return CgroupVersion.V1 if self.v1 else CgroupVersion.V2


def _unescape(field_: str) -> str:
    # mountinfo octal-escapes space, tab, newline and backslash.
    return field_.encode().decode("unicode_escape") if "\\" in field_ else field_


def parse_mountinfo(text: str) -> CgroupMounts:
    v1: dict[str, Path] = {}
    unified: Path | None = None
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        if not sep:
            continue
        fstype, _source, super_options = [*after.split(), "", ""][:3]
        # Hosts with many containers have thousands of other mounts: skip them cheaply.
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mountpoint = Path(_unescape(before.split()[4]))
        if fstype == "cgroup2":
            unified = mountpoint
        else:
            for option in super_options.split(","):
                if option not in ("rw", "ro") and option not in v1:
                    v1[option] = mountpoint
    return CgroupMounts(v1, unified)


def find_mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> CgroupMounts:
    return parse_mountinfo(mountinfo.read_text())


def detect(mountinfo: Path = Path("/proc/self/mountinfo")) -> CgroupVersion:
    """V2 only on a pure unified host; legacy and hybrid hosts are V1."""
    return find_mounts(mountinfo).version
