"""CNI spec versions: which we speak, and how they compare."""

from __future__ import annotations

from collections.abc import Iterable

LATEST = "1.1.0"
# 0.1.0/0.2.0 predate chaining and the rich result; no plugin shipped in the last years
# needs them, so configs declaring them are rejected rather than half-supported.
SUPPORTED = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


def parse(version: str) -> tuple[int, int, int]:
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"malformed CNI version {version!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def at_least(version: str, minimum: str) -> bool:
    return parse(version) >= parse(minimum)


def is_supported(version: str) -> bool:
    return version in SUPPORTED


def highest_supported(candidates: Iterable[str]) -> str | None:
    best: str | None = None
    for cand in candidates:
        if is_supported(cand) and (best is None or parse(cand) > parse(best)):
            best = cand
    return best
