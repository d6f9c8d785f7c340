"""hugetlb controller: per-page-size limits on huge pages."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from runtime.cgroups import files
from runtime.cgroups.resources import HugepageLimit

_HUGEPAGES = Path("/sys/kernel/mm/hugepages")


def page_sizes(sysfs: Path = _HUGEPAGES) -> list[str]:
    """Sizes the kernel supports, named as in cgroup files: hugepages-2048kB → "2MB"."""
    sizes = []
    try:
        entries = sorted(p.name for p in sysfs.iterdir())
    except FileNotFoundError:
        return []
    for entry in entries:
        kib = int(entry.removeprefix("hugepages-").removesuffix("kB"))
        for unit, factor in (("GB", 1 << 20), ("MB", 1 << 10), ("KB", 1)):
            if kib % factor == 0:
                sizes.append(f"{kib // factor}{unit}")
                break
    return sizes


def _set(directory: Path, limits: Iterable[HugepageLimit], suffix: str) -> None:
    for item in limits:
        files.write(directory, f"hugetlb.{item.page_size}.{suffix}", item.limit)


def set_v1(directory: Path, limits: Iterable[HugepageLimit]) -> None:
    _set(directory, limits, "limit_in_bytes")


def set_v2(directory: Path, limits: Iterable[HugepageLimit]) -> None:
    _set(directory, limits, "max")


def usage_v1(directory: Path, sizes: Iterable[str]) -> dict[str, int]:
    return {s: files.read_int(directory, f"hugetlb.{s}.usage_in_bytes") for s in sizes}


def usage_v2(directory: Path, sizes: Iterable[str]) -> dict[str, int]:
    return {s: files.read_int(directory, f"hugetlb.{s}.current") for s in sizes}
