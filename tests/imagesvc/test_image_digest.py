from __future__ import annotations

import hashlib

import pytest

from imagesvc.digest import Digest
from imagesvc.errors import InvalidDigest


def test_of_and_str() -> None:
    digest = Digest.of(b"hello")
    assert str(digest) == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert Digest.parse(str(digest)) == digest


@pytest.mark.parametrize("algorithm", ["sha256", "sha384", "sha512"])
def test_algorithms(algorithm: str) -> None:
    digest = Digest.of(b"x", algorithm)
    assert digest.hex == hashlib.new(algorithm, b"x").hexdigest()
    hasher = digest.hasher()
    hasher.update(b"x")
    assert hasher.hexdigest() == digest.hex


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("sha256", "missing ':'"),
        ("sha256:", "expected algorithm:encoded"),
        (":" + "a" * 64, "expected algorithm:encoded"),
        ("SHA256:" + "a" * 64, "expected algorithm:encoded"),
        ("md5:" + "a" * 32, "unsupported"),
        ("sha256:" + "a" * 63, "64 hex"),
        ("sha256:" + "G" * 64, "lowercase hexadecimal"),
        ("sha256:" + "g" * 64, "lowercase hexadecimal"),
        ("sha256:" + "a" * 64 + "/", "expected algorithm:encoded"),
    ],
)
def test_rejects(text: str, reason: str) -> None:
    with pytest.raises(InvalidDigest, match=reason) as info:
        Digest.parse(text)
    assert repr(text) in str(info.value)
