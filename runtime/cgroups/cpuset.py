"""cpuset controller: which CPUs and memory nodes the cgroup may use."""

from __future__ import annotations

from pathlib import Path

from runtime.cgroups import files
from runtime.cgroups.resources import Cpu


def set_v1(directory: Path, cpu: Cpu) -> None:
    if cpu.cpus:
        files.write(directory, "cpuset.cpus", cpu.cpus)
    if cpu.mems:
        files.write(directory, "cpuset.mems", cpu.mems)


def set_v2(directory: Path, cpu: Cpu) -> None:
    set_v1(directory, cpu)  # same file names in v2


def inherit_v1(mountpoint: Path, directory: Path) -> None:
    """A new v1 cpuset starts with empty cpus/mems and refuses tasks until they are
    filled, so copy them down from the first ancestor that has them."""
    chain: list[Path] = []
    current = directory
    while current != mountpoint and mountpoint in current.parents:
        chain.append(current)
        current = current.parent
    for child in reversed(chain):
        for name in ("cpuset.cpus", "cpuset.mems"):
            if files.read(child, name) == "":
                files.write(child, name, files.read(child.parent, name))
