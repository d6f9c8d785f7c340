"""Cgroup managers behind one interface (youki's layout): `v1` and `v2` drive cgroupfs,
one small module per controller holds what that controller's files mean."""

from __future__ import annotations

from runtime.cgroups.files import CgroupError, ControllerUnavailableError
from runtime.cgroups.manager import CgroupManager, CgroupVersion
from runtime.cgroups.mounts import CgroupMounts, detect, find_mounts
from runtime.cgroups.resources import InvalidResourcesError, LinuxResources, from_oci
from runtime.cgroups.stats import CpuStats, MemoryStats, PidsStats, Stats
from runtime.cgroups.v1 import V1Manager
from runtime.cgroups.v2 import V2Manager

__all__ = [
    "CgroupError",
    "CgroupManager",
    "CgroupMounts",
    "CgroupVersion",
    "ControllerUnavailableError",
    "CpuStats",
    "InvalidResourcesError",
    "LinuxResources",
    "MemoryStats",
    "PidsStats",
    "Stats",
    "V1Manager",
    "V2Manager",
    "detect",
    "find_mounts",
    "from_oci",
    "new_manager",
]


def new_manager(path: str, version: CgroupVersion | None = None) -> CgroupManager:
    """The cgroupfs manager for this host (or for `version`), for OCI cgroupsPath `path`."""
    if (version or detect()) is CgroupVersion.V1:
        return V1Manager(path)
    return V2Manager(path)
