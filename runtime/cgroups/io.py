"""cgroup v2 io controller: weights (io.weight / io.bfq.weight) and io.max throttling."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from runtime.cgroups import files
from runtime.cgroups.resources import BlockIO


def blkio_weight_to_io_weight(weight: int) -> int:
    """v1 blkio weight [10, 1000] → v2 io.weight [1, 10000] (OCI/runc convention)."""
    if weight == 0:
        return 0
    weight = min(max(weight, 10), 1000)
    return 1 + (weight - 10) * 9999 // 990


def _write_weight(directory: Path, device: str, weight: int) -> None:
    # io.bfq.weight takes the v1 scale; io.weight needs converting.
    if (directory / "io.bfq.weight").exists():
        files.write(directory, "io.bfq.weight", f"{device} {weight}")
    else:
        files.write(directory, "io.weight", f"{device} {blkio_weight_to_io_weight(weight)}")


def io_max_lines(blkio: BlockIO) -> list[str]:
    """One io.max line per device, all limits of that device together."""
    limits: dict[tuple[int, int], list[str]] = defaultdict(list)
    for key, devices in (
        ("rbps", blkio.throttle_read_bps_device),
        ("wbps", blkio.throttle_write_bps_device),
        ("riops", blkio.throttle_read_iops_device),
        ("wiops", blkio.throttle_write_iops_device),
    ):
        for dev in devices:
            limits[(dev.major, dev.minor)].append(f"{key}={dev.rate or 'max'}")
    return [f"{major}:{minor} {' '.join(parts)}" for (major, minor), parts in limits.items()]


def set_v2(directory: Path, blkio: BlockIO) -> None:
    if blkio.weight:
        _write_weight(directory, "default", blkio.weight)
    for dev in blkio.weight_device:
        if dev.weight:
            _write_weight(directory, f"{dev.major}:{dev.minor}", dev.weight)
    for line in io_max_lines(blkio):
        files.write(directory, "io.max", line)
