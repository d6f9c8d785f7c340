"""pids controller: cap on the number of tasks (fork bombs)."""

from __future__ import annotations

from pathlib import Path

from runtime.cgroups import files
from runtime.cgroups.resources import Pids
from runtime.cgroups.stats import PidsStats


def set_v1(directory: Path, pids: Pids) -> None:
    # OCI: 0 leaves the limit alone, a negative value removes it.
    if pids.limit != 0:
        files.write(directory, "pids.max", "max" if pids.limit < 0 else pids.limit)


set_v2 = set_v1  # same file and format in both versions


def stats(directory: Path) -> PidsStats:
    return PidsStats(
        current=files.read_int(directory, "pids.current"),
        limit=files.read_int(directory, "pids.max", default=-1),
    )
