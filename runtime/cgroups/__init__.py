"""Cgroup managers behind one interface (youki's layout): `v1` and `v2` drive cgroupfs,
one small module per controller holds what that controller's files mean."""

from __future__ import annotations

from runtime.cgroups.files import CgroupError, ControllerUnavailableError
from runtime.cgroups.manager import CgroupManager, CgroupVersion
from runtime.cgroups.mounts import DEFAULT_ROOT, CgroupMounts, detect, find_mounts
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
    if version is not None:
        return V1Manager(path) if version is CgroupVersion.V1 else V2Manager(path)
    mounts = find_mounts()  # read once for both the version and the hierarchies
    if mounts.version is CgroupVersion.V1:
        return V1Manager(path, mounts.v1)
    return V2Manager(path, mounts.unified or DEFAULT_ROOT)
