from __future__ import annotations

import json
from typing import Any

import pytest

from imagesvc import mediatypes as mt
from imagesvc.digest import Digest
from imagesvc.errors import DigestMismatch, InvalidManifest, NoMatchingPlatform
from imagesvc.manifest import (
    Descriptor,
    Index,
    Manifest,
    parse_index,
    parse_manifest,
    parse_manifest_document,
    select_manifest,
)
from imagesvc.platform import Platform, match_rank

GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def digest(seed: str) -> str:
    return str(Digest.of(seed.encode()))


def desc(media_type: str, seed: str, size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(seed), "size": size, **extra}


def oci_manifest(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": desc(mt.OCI_CONFIG, "config", 1234),
        "layers": [desc(GZ, "l0", 100), desc(GZ, "l1", 200)],
        "annotations": {"org.opencontainers.image.ref.name": "v1"},
    }
    doc.update(overrides)
    return doc


def entry(arch: str, variant: str | None = None, os: str = "linux", **extra: Any) -> dict[str, Any]:
    platform: dict[str, Any] = {"os": os, "architecture": arch}
    if variant:
        platform["variant"] = variant
    return desc(mt.OCI_MANIFEST, f"{os}/{arch}/{variant}", 500, platform=platform, **extra)


def index(*entries: dict[str, Any], media_type: str = mt.OCI_INDEX) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)}


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_oci_manifest() -> None:
    m = parse_manifest(encode(oci_manifest()), mt.OCI_MANIFEST)
    assert m.media_type == mt.OCI_MANIFEST
    assert m.config == Descriptor(mt.OCI_CONFIG, Digest.parse(digest("config")), 1234)
    assert [layer.digest for layer in m.layers] == [
        Digest.parse(digest("l0")),
        Digest.parse(digest("l1")),
    ]
    assert [layer.size for layer in m.layers] == [100, 200]
    assert m.annotations == {"org.opencontainers.image.ref.name": "v1"}


def test_docker_schema2_manifest() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": desc(mt.DOCKER_CONFIG, "c"),
        "layers": [
            desc(DOCKER_GZ, "a"),
            desc(
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                "b",
                urls=["https://example.com/b"],
            ),
        ],
    }
    m = parse_manifest_document(encode(doc), "application/vnd.docker.distribution.manifest.v2+json")
    assert isinstance(m, Manifest)
    assert m.media_type == mt.DOCKER_MANIFEST
    assert m.layers[1].urls == ("https://example.com/b",)


def test_media_type_from_document_when_content_type_is_generic() -> None:
    data = encode(oci_manifest())
    for content_type in (None, "", "application/json; charset=utf-8", "application/octet-stream"):
        assert isinstance(parse_manifest_document(data, content_type), Manifest)


def test_content_type_parameters_are_ignored() -> None:
    data = encode(oci_manifest())
    assert isinstance(parse_manifest_document(data, f"{mt.OCI_MANIFEST}; charset=utf-8"), Manifest)


def test_oci_documents_without_media_type_are_recognised_by_shape() -> None:
    manifest = oci_manifest()
    del manifest["mediaType"]
    idx = index(entry("amd64"))
    del idx["mediaType"]
    assert parse_manifest_document(encode(manifest)).media_type == mt.OCI_MANIFEST
    assert parse_manifest_document(encode(idx)).media_type == mt.OCI_INDEX


def test_oci_index_and_docker_list() -> None:
    idx = parse_index(encode(index(entry("amd64"), entry("arm64", "v8"))))
    assert idx.media_type == mt.OCI_INDEX
    assert [str(e.platform) for e in idx.manifests] == ["linux/amd64", "linux/arm64/v8"]
    docker = index(
        {**entry("amd64"), "mediaType": mt.DOCKER_MANIFEST},
        media_type=mt.DOCKER_MANIFEST_LIST,
    )
    parsed = parse_manifest_document(encode(docker), mt.DOCKER_MANIFEST_LIST)
    assert isinstance(parsed, Index)
    assert parsed.manifests[0].media_type == mt.DOCKER_MANIFEST


def test_parse_manifest_and_index_insist_on_their_kind() -> None:
    with pytest.raises(InvalidManifest, match="expected an image manifest"):
        parse_manifest(encode(index(entry("amd64"))))
    with pytest.raises(InvalidManifest, match="expected an index"):
        parse_index(encode(oci_manifest()))


def _break(path: list[str | int], value: Any) -> dict[str, Any]:
    doc = oci_manifest()
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (_break(["schemaVersion"], 1), "schemaVersion must be 2"),
        (_break(["schemaVersion"], True), "schemaVersion must be 2"),
        (_break(["schemaVersion"], KeyError), "schemaVersion must be 2"),
        (_break(["config"], KeyError), "missing config"),
        (_break(["config"], []), "config must be an object"),
        (_break(["layers"], KeyError), "missing layers"),
        (_break(["layers"], {}), "layers must be an array"),
        (_break(["layers", 0], "sha256:x"), "descriptor must be an object"),
        (_break(["config", "mediaType"], "application/json"), "not an image config"),
        (_break(["config", "mediaType"], ""), "mediaType is empty"),
        (_break(["config", "digest"], "sha256:123"), "64 hex"),
        (_break(["config", "digest"], 5), "digest must be a string"),
        (_break(["config", "size"], -1), "negative size"),
        (_break(["config", "size"], "10"), "size must be an integer"),
        (_break(["config", "size"], 1.5), "size must be an integer"),
        (_break(["config", "size"], False), "size must be an integer"),
        (_break(["layers", 1, "mediaType"], "application/x-tar+bzip2"), "layer 1 has unsupported"),
        (_break(["layers", 0, "urls"], "http://x"), "urls must be a list"),
        (_break(["annotations"], {"a": 1}), "annotations must map"),
        (_break(["mediaType"], 7), "mediaType must be a string"),
    ],
)
def test_invalid_manifests(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidManifest, match=reason) as info:
        parse_manifest_document(encode(doc))
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("data", "content_type", "reason"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"\xff\xfe", None, "not valid JSON"),
        (b"[]", None, "top level must be a JSON object"),
        (b'{"schemaVersion": 2}', None, "neither a manifest nor an index"),
        (encode(oci_manifest()), mt.OCI_INDEX, "contradicts mediaType"),
        (b'{"schemaVersion": 1, "name": "x"}', mt.DOCKER_SCHEMA1_SIGNED_MANIFEST, "schema 1"),
        (b"{}", "application/vnd.example+json", "unsupported media type"),
        (
            encode(index(desc(mt.OCI_MANIFEST, "x", platform="linux"))),
            None,
            "platform must be an object",
        ),
        (
            encode(index(desc(mt.OCI_MANIFEST, "x", platform={"os": "linux"}))),
            None,
            "missing architecture",
        ),
        (encode({**index(), "manifests": None}), None, "manifests must be an array"),
    ],
)
def test_invalid_documents(data: bytes, content_type: str | None, reason: str) -> None:
    with pytest.raises(InvalidManifest, match=reason):
        parse_manifest_document(data, content_type)


# --- platform selection --------------------------------------------------------------------

LINUX_AMD64 = Platform("linux", "amd64")


def pick(doc: dict[str, Any], wanted: Platform = LINUX_AMD64) -> str:
    chosen = select_manifest(parse_index(encode(doc)), wanted)
    return str(chosen.platform)


def test_selects_linux_amd64() -> None:
    doc = index(
        entry("arm64", "v8"),
        entry("amd64", os="windows", **{"os.version": "10.0.17763.1"}),
        entry("amd64"),
        entry("s390x"),
    )
    chosen = select_manifest(parse_index(encode(doc)), LINUX_AMD64)
    assert chosen.digest == Digest.parse(digest("linux/amd64/None"))


def test_selects_arm_variants() -> None:
    doc = index(entry("arm", "v6"), entry("arm", "v7"), entry("arm64", "v8"))
    assert pick(doc, Platform.parse("linux/arm/v7")) == "linux/arm/v7"
    assert pick(doc, Platform.parse("linux/arm/v6")) == "linux/arm/v6"
    assert pick(doc, Platform.parse("linux/arm")) == "linux/arm/v7"  # default variant
    assert pick(doc, Platform.parse("linux/aarch64")) == "linux/arm64/v8"
    assert pick(index(entry("arm64")), Platform.parse("linux/arm64/v8")) == "linux/arm64"
    with pytest.raises(NoMatchingPlatform):
        pick(doc, Platform.parse("linux/arm/v5"))


def test_prefers_exact_variant_then_unspecified() -> None:
    doc = index(entry("arm"), entry("arm", "v6"))
    assert pick(doc, Platform.parse("linux/arm/v6")) == "linux/arm/v6"
    assert pick(index(entry("arm")), Platform.parse("linux/arm/v6")) == "linux/arm"


def test_amd64_microarchitecture_variants_are_not_assumed() -> None:
    doc = index(entry("amd64", "v3"), entry("amd64"))
    assert pick(doc) == "linux/amd64"
    with pytest.raises(NoMatchingPlatform):
        pick(index(entry("amd64", "v3")))


def test_first_of_equals_and_attestations_skipped() -> None:
    attestation = desc(
        mt.OCI_MANIFEST, "att", platform={"os": "unknown", "architecture": "unknown"}
    )
    doc = index(attestation, entry("amd64"), {**entry("amd64"), "digest": digest("second")})
    chosen = select_manifest(parse_index(encode(doc)), LINUX_AMD64)
    assert chosen.digest == Digest.parse(digest("linux/amd64/None"))


def test_entries_without_platform_are_a_last_resort() -> None:
    doc = index(desc(mt.OCI_MANIFEST, "anything"), entry("amd64"))
    assert pick(doc) == "linux/amd64"
    chosen = select_manifest(parse_index(encode(index(desc(mt.OCI_MANIFEST, "x")))), LINUX_AMD64)
    assert chosen.platform is None


def test_non_manifest_entries_are_ignored() -> None:
    doc = index(
        desc("application/vnd.example.sbom", "s", platform={"os": "linux", "architecture": "amd64"})
    )
    with pytest.raises(NoMatchingPlatform, match="linux/amd64") as info:
        pick(doc)
    assert isinstance(info.value, LookupError)


def test_no_match_lists_what_is_available() -> None:
    with pytest.raises(NoMatchingPlatform) as info:
        pick(index(entry("arm64", "v8"), entry("ppc64le")))
    assert info.value.available == ["linux/arm64/v8", "linux/ppc64le"]
    assert "linux/arm64/v8, linux/ppc64le" in str(info.value)


def test_platform_parse_and_normalise() -> None:
    assert Platform.parse("linux/x86_64") == LINUX_AMD64
    assert Platform.parse("Linux/AArch64/8") == Platform("linux", "arm64", "v8")
    assert Platform.parse("linux/armhf/7") == Platform("linux", "arm", "v7")
    assert Platform.host().os == "linux"
    for bad in ("linux", "linux/", "/amd64", "a/b/c/d"):
        with pytest.raises(ValueError, match="invalid platform"):
            Platform.parse(bad)
    assert match_rank(LINUX_AMD64, Platform("windows", "amd64")) is None


def test_descriptor_verify() -> None:
    data = b"manifest bytes"
    d = Descriptor(mt.OCI_MANIFEST, Digest.of(data), len(data))
    d.verify(data)
    with pytest.raises(DigestMismatch, match="size"):
        d.verify(data + b"!")
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        d.verify(b"manifest bytez")
