"""Content digests (``algorithm:hex``) as the OCI image spec defines them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from imagesvc.errors import InvalidDigest

# Registered algorithms and the length of their lowercase-hex encoding.
HEX_LENGTHS: dict[str, int] = {"sha256": 64, "sha384": 96, "sha512": 128}

_ALGORITHM = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*")
_ENCODED = re.compile(r"[a-zA-Z0-9=_-]+")
_LOWER_HEX = re.compile(r"[a-f0-9]+")


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True, order=True)
class Digest:
    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        text = f"{self.algorithm}:{self.hex}"
        if not _ALGORITHM.fullmatch(self.algorithm) or not _ENCODED.fullmatch(self.hex):
            raise InvalidDigest(text, "expected algorithm:encoded")
        expected = HEX_LENGTHS.get(self.algorithm)
        if expected is None:
            raise InvalidDigest(text, f"unsupported digest algorithm {self.algorithm!r}")
        if len(self.hex) != expected:
            raise InvalidDigest(
                text, f"{self.algorithm} needs {expected} hex characters, got {len(self.hex)}"
            )
        if not _LOWER_HEX.fullmatch(self.hex):
            raise InvalidDigest(text, "encoded part must be lowercase hexadecimal")

    @classmethod
    def parse(cls, text: str) -> Digest:
        algorithm, sep, encoded = text.partition(":")
        if not sep:
            raise InvalidDigest(text, "missing ':' between algorithm and encoded part")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        hasher = new_hasher(algorithm)
        hasher.update(data)
        return cls(algorithm, hasher.hexdigest())

    def hasher(self) -> Hasher:
        return new_hasher(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def new_hasher(algorithm: str) -> Hasher:
    if algorithm not in HEX_LENGTHS:
        raise InvalidDigest(f"{algorithm}:", f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)
