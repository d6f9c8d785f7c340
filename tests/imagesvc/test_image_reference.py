from __future__ import annotations

import pytest

from imagesvc.digest import Digest
from imagesvc.errors import InvalidReference
from imagesvc.reference import ImageReference, parse_reference

HEX = "a" * 64
SHA = f"sha256:{HEX}"


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/busybox:1", "docker.io/library/busybox:1"),
        ("user/app", "docker.io/user/app:latest"),
        ("user/app/sub:v2", "docker.io/user/app/sub:v2"),
        ("quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5"),
        ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
        ("localhost/x", "localhost/x:latest"),
        ("localhost:5000/a/b:v1", "localhost:5000/a/b:v1"),
        ("127.0.0.1:5000/team/app:1.0", "127.0.0.1:5000/team/app:1.0"),
        ("[::1]:5000/app:tag", "[::1]:5000/app:tag"),
        ("myhost:443/app", "myhost:443/app:latest"),
        ("Registry/app", "Registry/app:latest"),
        ("localhost:5000", "docker.io/library/localhost:5000"),
        (f"busybox@{SHA}", f"docker.io/library/busybox@{SHA}"),
        (f"busybox:1.36@{SHA}", f"docker.io/library/busybox:1.36@{SHA}"),
        (f"ghcr.io/o/r:t@{SHA}", f"ghcr.io/o/r:t@{SHA}"),
        ("a_b/c__d/e-f--g.h", "docker.io/a_b/c__d/e-f--g.h:latest"),
        ("x:_tag", "docker.io/library/x:_tag"),
        ("x:" + "t" * 128, "docker.io/library/x:" + "t" * 128),
        (f"x@sha512:{'b' * 128}", f"docker.io/library/x@sha512:{'b' * 128}"),
    ],
)
def test_parse_normalises(given: str, canonical: str) -> None:
    ref = ImageReference.parse(given)
    assert ref.string() == canonical
    assert str(ref) == canonical
    # The canonical form is a fixed point.
    assert ImageReference.parse(canonical) == ref


def test_fields() -> None:
    ref = parse_reference(f"localhost:5000/team/app:1.0@{SHA}")
    assert ref.domain == "localhost:5000"
    assert ref.path == "team/app"
    assert ref.tag == "1.0"
    assert ref.digest == Digest("sha256", HEX)
    assert ref.repository == "localhost:5000/team/app"


def test_digest_only_gets_no_default_tag() -> None:
    ref = parse_reference(f"busybox@{SHA}")
    assert ref.tag is None
    assert ref.digest == Digest.parse(SHA)


def test_default_tag_can_be_disabled() -> None:
    ref = parse_reference("busybox", default_tag=False)
    assert ref.tag is None
    assert ref.string() == "docker.io/library/busybox"


@pytest.mark.parametrize(
    ("given", "familiar"),
    [
        ("busybox", "busybox:latest"),
        ("docker.io/library/busybox:1", "busybox:1"),
        ("docker.io/user/app", "user/app:latest"),
        ("docker.io/library/a/b", "library/a/b:latest"),
        ("quay.io/x/y:z", "quay.io/x/y:z"),
        ("localhost/x", "localhost/x:latest"),
        (f"busybox@{SHA}", f"busybox@{SHA}"),
    ],
)
def test_familiar(given: str, familiar: str) -> None:
    assert parse_reference(given).familiar == familiar


def test_familiar_name() -> None:
    assert parse_reference("docker.io/library/nginx:1").familiar_name == "nginx"


def test_with_tag_and_digest() -> None:
    ref = parse_reference("busybox")
    assert ref.with_tag("2").string() == "docker.io/library/busybox:2"
    pinned = ref.with_tag(None).with_digest(Digest.parse(SHA))
    assert pinned.string() == f"docker.io/library/busybox@{SHA}"


def test_is_frozen_and_hashable() -> None:
    a = parse_reference("busybox")
    b = parse_reference("docker.io/library/busybox:latest")
    assert a == b
    assert len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.tag = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", "empty"),
        (" busybox", "whitespace"),
        ("busybox ", "whitespace"),
        ("Busybox", "must be lowercase"),
        ("quay.io/Org/app", "must be lowercase"),
        ("docker.io/User/app", "must be lowercase"),
        ("busybox:", "invalid tag"),
        ("busybox:-x", "invalid tag"),
        ("busybox:.x", "invalid tag"),
        ("busybox:a/b", "invalid registry domain"),
        ("busybox:" + "t" * 129, "invalid tag"),
        ("busybox:t@g", "invalid digest"),
        ("busybox@sha256:abc", "64 hex"),
        (f"busybox@sha256:{'A' * 64}", "lowercase hexadecimal"),
        (f"busybox@md5:{'a' * 32}", "unsupported digest algorithm"),
        (f"busybox@{HEX}", "missing ':'"),
        ("busybox@", "missing ':'"),
        (f"busybox@sha512:{HEX}", "128 hex"),
        (HEX, "image ID"),
        (f"{HEX}:tag", "image ID"),
        ("-busybox", "invalid repository path"),
        ("busy--box-", "invalid repository path"),
        ("a//b", "invalid repository path"),
        ("a/", "invalid repository path"),
        ("/a", "invalid repository path"),
        ("a...b", "invalid repository path"),
        ("a___b", "invalid repository path"),
        ("-host.io/app", "invalid registry domain"),
        ("host.io:port/app", "invalid registry domain"),
        ("host_name.io/app", "invalid registry domain"),
        ("::1/app", "invalid registry domain"),
        (":tag", "repository name is empty"),
        ("a/" + "b" * 260, "longer than 255"),
        ("ba$d", "invalid repository path"),
        ("café", "invalid repository path"),
    ],
)
def test_rejects(given: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(given)
    message = str(info.value)
    assert repr(given) in message
    assert reason in message
    assert isinstance(info.value, ValueError)


def test_constructor_validates() -> None:
    with pytest.raises(InvalidReference, match="lowercase"):
        ImageReference("docker.io", "Library/x", "latest")
    with pytest.raises(InvalidReference, match="invalid tag"):
        ImageReference("docker.io", "library/x", "bad tag")
    with pytest.raises(InvalidReference, match="domain"):
        ImageReference("bad domain", "x", None)
    with pytest.raises(InvalidReference, match="longer than 255"):
        ImageReference("docker.io", "a/" + "b" * 260, None)
