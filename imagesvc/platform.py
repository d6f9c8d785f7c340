"""Platforms (os/architecture/variant) and how a manifest list entry is chosen."""

from __future__ import annotations

import platform as host
from dataclasses import dataclass

# Names Go's GOARCH uses for what uname(2) reports.
_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}
# The variant an image without one is built for; "arm64" and "arm64/v8" are one platform.
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7", "amd64": "v1"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch[/variant]``, e.g. ``linux/arm64/v8``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"invalid platform {text!r}: expected os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None).normalized()

    @classmethod
    def host(cls) -> Platform:
        return cls("linux", host.machine().lower()).normalized()

    def normalized(self) -> Platform:
        arch = _ARCH_ALIASES.get(self.architecture.lower(), self.architecture.lower())
        variant = self.variant.lower() if self.variant else None
        if arch == "arm64" and variant == "8":
            variant = "v8"
        if arch == "arm" and variant in ("5", "6", "7", "8"):
            variant = f"v{variant}"
        return Platform(self.os.lower(), arch, variant, self.os_version)

    def effective_variant(self) -> str | None:
        return self.variant or _DEFAULT_VARIANT.get(self.architecture)

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base


def match_rank(wanted: Platform, offered: Platform | None) -> int | None:
    """How well ``offered`` serves ``wanted``: lower is better, None is unusable.
    0: same variant (an absent variant counts as the architecture's default),
    1: a specific variant was wanted and ``offered`` names none, 2: no platform at all.
    Another variant than the one wanted is never used: it may not run on this CPU."""
    if offered is None:
        return 2
    want, have = wanted.normalized(), offered.normalized()
    if (want.os, want.architecture) != (have.os, have.architecture):
        return None
    if have.effective_variant() == want.effective_variant():
        return 0
    if have.variant is None:
        return 1
    return None
