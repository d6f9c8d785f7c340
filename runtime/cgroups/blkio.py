"""cgroup v1 blkio controller: proportional weights and per-device throttling."""

from __future__ import annotations

from pathlib import Path

from runtime.cgroups import files
from runtime.cgroups.resources import BlockIO, ThrottleDevice


def _weight_file(directory: Path, name: str) -> str:
    # CFQ's blkio.weight is gone since Linux 5.0; BFQ exposes blkio.bfq.weight instead.
    if (directory / f"blkio.{name}").exists():
        return f"blkio.{name}"
    if (directory / f"blkio.bfq.{name}").exists():
        return f"blkio.bfq.{name}"
    raise files.ControllerUnavailableError(
        f"blkio {name} requested but neither blkio.{name} nor blkio.bfq.{name} exists in "
        f"{directory} (no CFQ/BFQ I/O scheduler)"
    )


def _throttle(directory: Path, name: str, devices: tuple[ThrottleDevice, ...]) -> None:
    for dev in devices:
        files.write(directory, name, f"{dev.major}:{dev.minor} {dev.rate}")


def set_v1(directory: Path, blkio: BlockIO) -> None:
    if blkio.weight:
        files.write(directory, _weight_file(directory, "weight"), blkio.weight)
    if blkio.leaf_weight:
        files.write(directory, _weight_file(directory, "leaf_weight"), blkio.leaf_weight)
    for dev in blkio.weight_device:
        if dev.weight:
            name = _weight_file(directory, "weight_device")
            files.write(directory, name, f"{dev.major}:{dev.minor} {dev.weight}")
        if dev.leaf_weight:
            name = _weight_file(directory, "leaf_weight_device")
            files.write(directory, name, f"{dev.major}:{dev.minor} {dev.leaf_weight}")
    _throttle(directory, "blkio.throttle.read_bps_device", blkio.throttle_read_bps_device)
    _throttle(directory, "blkio.throttle.write_bps_device", blkio.throttle_write_bps_device)
    _throttle(directory, "blkio.throttle.read_iops_device", blkio.throttle_read_iops_device)
    _throttle(directory, "blkio.throttle.write_iops_device", blkio.throttle_write_iops_device)
