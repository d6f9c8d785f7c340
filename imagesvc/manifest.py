"""Parsing and validation of image manifests and indexes (OCI image spec v1 and Docker
image manifest v2 schema 2), and the choice of a platform's manifest from an index."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from imagesvc import mediatypes as mt
from imagesvc.compression import LAYER_MEDIA_TYPES
from imagesvc.digest import Digest
from imagesvc.errors import DigestMismatch, InvalidDigest, InvalidManifest, NoMatchingPlatform
from imagesvc.platform import Platform, match_rank

# Content types that say nothing about which document a registry returned.
_GENERIC_CONTENT_TYPES = frozenset(
    {"", "application/json", "application/octet-stream", "text/plain"}
)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)

    def verify(self, data: bytes) -> None:
        """Raise ``DigestMismatch`` unless ``data`` is exactly what this describes."""
        if len(data) != self.size:
            raise DigestMismatch(str(self.size), str(len(data)), f"size of {self.digest}")
        actual = Digest.of(data, self.digest.algorithm)
        if actual != self.digest:
            raise DigestMismatch(str(self.digest), str(actual))


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


def parse_manifest_document(data: bytes, content_type: str | None = None) -> Manifest | Index:
    """Parse what a registry returned for a manifest request. ``content_type`` is the
    HTTP Content-Type; where it is generic, the document's ``mediaType`` (or, for OCI
    documents without one, its shape) decides."""
    raw = _load(data, "manifest")
    declared = _optional_str(raw, "mediaType", "manifest")
    given = (content_type or "").split(";")[0].strip()
    if given in _GENERIC_CONTENT_TYPES:
        given = ""
    if given and declared and given != declared:
        raise InvalidManifest(
            "manifest", f"Content-Type {given!r} contradicts mediaType {declared!r}"
        )
    kind = given or declared or _guess_oci_kind(raw)
    if kind in mt.SCHEMA1:
        raise InvalidManifest("manifest", "Docker schema 1 manifests are not supported")
    if kind in mt.MANIFESTS:
        return _manifest(raw, kind)
    if kind in mt.INDEXES:
        return _index(raw, kind)
    raise InvalidManifest("manifest", f"unsupported media type {kind!r}")


def parse_manifest(data: bytes, content_type: str | None = None) -> Manifest:
    document = parse_manifest_document(data, content_type)
    if not isinstance(document, Manifest):
        raise InvalidManifest("manifest", f"expected an image manifest, got {document.media_type}")
    return document


def parse_index(data: bytes, content_type: str | None = None) -> Index:
    document = parse_manifest_document(data, content_type)
    if not isinstance(document, Index):
        raise InvalidManifest("index", f"expected an index, got {document.media_type}")
    return document


def select_manifest(index: Index, wanted: Platform) -> Descriptor:
    """The entry of ``index`` to pull for ``wanted``: the best match by ``match_rank``,
    the earliest among equals (registries list the preferred entry first)."""
    best: tuple[int, int, Descriptor] | None = None
    for position, entry in enumerate(index.manifests):
        if entry.media_type not in mt.MANIFESTS | mt.INDEXES:
            continue
        rank = match_rank(wanted, entry.platform)
        if rank is not None and (best is None or (rank, position) < best[:2]):
            best = (rank, position, entry)
    if best is None:
        available = [str(e.platform) for e in index.manifests if e.platform is not None]
        raise NoMatchingPlatform(str(wanted.normalized()), available)
    return best[2]


def _guess_oci_kind(raw: Mapping[str, Any]) -> str:
    # mediaType is only RECOMMENDED in OCI documents, so the shape has to tell.
    if "manifests" in raw and "config" not in raw:
        return mt.OCI_INDEX
    if "config" in raw and "manifests" not in raw:
        return mt.OCI_MANIFEST
    raise InvalidManifest("manifest", "no mediaType and neither a manifest nor an index shape")


def _manifest(raw: Mapping[str, Any], media_type: str) -> Manifest:
    what = "image manifest"
    _check_schema_version(raw, what)
    config = _descriptor(_required(raw, "config", dict, what), f"{what} config")
    if config.media_type not in mt.CONFIGS:
        raise InvalidManifest(
            what, f"config media type {config.media_type!r} is not an image config"
        )
    layers = []
    for position, entry in enumerate(_required(raw, "layers", list, what)):
        layer = _descriptor(entry, f"{what} layer {position}")
        if layer.media_type not in LAYER_MEDIA_TYPES:
            raise InvalidManifest(
                what, f"layer {position} has unsupported media type {layer.media_type!r}"
            )
        layers.append(layer)
    return Manifest(media_type, config, tuple(layers), _annotations(raw, what))


def _index(raw: Mapping[str, Any], media_type: str) -> Index:
    what = "image index"
    _check_schema_version(raw, what)
    entries = tuple(
        _descriptor(entry, f"{what} entry {position}")
        for position, entry in enumerate(_required(raw, "manifests", list, what))
    )
    return Index(media_type, entries, _annotations(raw, what))


def _descriptor(raw: object, what: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise InvalidManifest(what, "descriptor must be an object")
    media_type = _required(raw, "mediaType", str, what)
    if not media_type:
        raise InvalidManifest(what, "mediaType is empty")
    try:
        digest = Digest.parse(_required(raw, "digest", str, what))
    except InvalidDigest as err:
        raise InvalidManifest(what, str(err)) from None
    size = _required(raw, "size", int, what)
    if size < 0:
        raise InvalidManifest(what, f"negative size {size}")
    urls = raw.get("urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise InvalidManifest(what, "urls must be a list of strings")
    platform = _platform(raw["platform"], what) if raw.get("platform") is not None else None
    return Descriptor(media_type, digest, size, platform, tuple(urls), _annotations(raw, what))


def _platform(raw: object, what: str) -> Platform:
    if not isinstance(raw, dict):
        raise InvalidManifest(what, "platform must be an object")
    os_name = _required(raw, "os", str, f"{what} platform")
    architecture = _required(raw, "architecture", str, f"{what} platform")
    variant = _optional_str(raw, "variant", f"{what} platform") or None
    os_version = _optional_str(raw, "os.version", f"{what} platform") or None
    return Platform(os_name, architecture, variant, os_version)


def _check_schema_version(raw: Mapping[str, Any], what: str) -> None:
    version = raw.get("schemaVersion")
    if version != 2 or isinstance(version, bool):
        raise InvalidManifest(what, f"schemaVersion must be 2, got {version!r}")


def _annotations(raw: Mapping[str, Any], what: str) -> dict[str, str]:
    value = raw.get("annotations") or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidManifest(what, "annotations must map strings to strings")
    return dict(value)


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidManifest(what, f"not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise InvalidManifest(what, "top level must be a JSON object")
    return raw


def _required(raw: Mapping[str, Any], key: str, kind: type[_T], what: str) -> _T:
    if key not in raw:
        raise InvalidManifest(what, f"missing {key}")
    value = raw[key]
    # bool is an int to Python, never to JSON.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidManifest(what, f"{key} must be {_json_kind(kind)}")
    return value


def _optional_str(raw: Mapping[str, Any], key: str, what: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidManifest(what, f"{key} must be a string")
    return value


def _json_kind(kind: type) -> str:
    return {str: "a string", int: "an integer", list: "an array", dict: "an object"}.get(
        kind, kind.__name__
    )
