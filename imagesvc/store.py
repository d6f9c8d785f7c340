"""Image metadata: names (repo tags, repo digests) → manifest, config and layers, kept as
one record per image (kind "image", id = config digest) in an injected record store, with
an in-memory index for lookups.

A name belongs to one image. Moving a tag writes the image that gains it first, then the
one that loses it; a crash in between leaves the name on both, and loading resolves that
in favour of the record written last. So every write is one record, one transaction.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from imagesvc.digest import Digest
from imagesvc.errors import ImageNotFound, InvalidDigest, InvalidReference
from imagesvc.reference import parse_reference

KIND: Literal["image"] = "image"
STATE = "present"
_HEX_PREFIX = re.compile(r"[a-f0-9]{1,64}")
# Shorter hex prefixes are too likely to be a repository name (``cafe``, ``abc``).
MIN_ID_PREFIX = 12


class StoredRecord(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def updated_ns(self) -> int: ...
    @property
    def document(self) -> dict[str, Any]: ...


class RecordStore(Protocol):
    """What imagesvc needs of the daemon's state database (cri.state.StateDB)."""

    def put(
        self, kind: Literal["image"], id: str, state: str, document: dict[str, Any]
    ) -> object: ...
    def list_kind(self, kind: Literal["image"]) -> Sequence[StoredRecord]: ...
    def delete(self, kind: Literal["image"], id: str) -> bool: ...


@dataclass(frozen=True)
class ImageRecord:
    id: Digest
    """The config digest."""
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    manifest_digest: Digest
    """The platform manifest (an index, when pulled through one, is in ``blobs``)."""
    config_media_type: str
    layers: tuple[Digest, ...]
    """Chain IDs, base first."""
    blobs: tuple[Digest, ...]
    """Every blob of the content store this image holds on to (indexes, manifest, config,
    compressed layers)."""
    size: int
    user: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    pinned: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return self.repo_tags + self.repo_digests

    def uid_and_username(self) -> tuple[int | None, str]:
        """The config's User as CRI reports it: a numeric user part is the uid, any other
        the username; a group part is ignored ("1003:1004" → 1003, "www-data:1004" →
        www-data)."""
        user = self.user.partition(":")[0]
        if not user:
            return None, ""
        if user.isdigit():
            return int(user), ""
        return None, user

    def to_document(self) -> dict[str, Any]:
        return {
            "repo_tags": list(self.repo_tags),
            "repo_digests": list(self.repo_digests),
            "manifest_digest": str(self.manifest_digest),
            "config_media_type": self.config_media_type,
            "layers": [str(d) for d in self.layers],
            "blobs": [str(d) for d in self.blobs],
            "size": self.size,
            "user": self.user,
            "annotations": dict(self.annotations),
            "pinned": self.pinned,
        }

    @classmethod
    def from_document(cls, id: str, doc: Mapping[str, Any]) -> ImageRecord:
        return cls(
            id=Digest.parse(id),
            repo_tags=tuple(doc["repo_tags"]),
            repo_digests=tuple(doc["repo_digests"]),
            manifest_digest=Digest.parse(doc["manifest_digest"]),
            config_media_type=doc["config_media_type"],
            layers=tuple(Digest.parse(d) for d in doc["layers"]),
            blobs=tuple(Digest.parse(d) for d in doc["blobs"]),
            size=int(doc["size"]),
            user=doc.get("user", ""),
            annotations=dict(doc.get("annotations", {})),
            pinned=bool(doc.get("pinned", False)),
        )


class ImageStore:
    def __init__(self, records: RecordStore) -> None:
        self._records = records
        self._lock = threading.RLock()
        self._images: dict[Digest, ImageRecord] = {}
        self._names: dict[str, Digest] = {}
        self._load()

    def _load(self) -> None:
        loaded = sorted(self._records.list_kind(KIND), key=lambda r: r.updated_ns)
        for stored in loaded:
            record = ImageRecord.from_document(stored.id, stored.document)
            # Later records win a name a crash left on two images.
            for name in record.names:
                owner = self._names.get(name)
                if owner is not None and owner != record.id:
                    self._images[owner] = _without(self._images[owner], [name])
            self._images[record.id] = record
            for name in record.names:
                self._names[name] = record.id

    # --- reading ----------------------------------------------------------------------

    def named(self) -> list[ImageRecord]:
        """The images ListImages shows: those with at least one name."""
        with self._lock:
            return [r for r in self._images.values() if r.names]

    def get(self, id: Digest) -> ImageRecord | None:
        with self._lock:
            return self._images.get(id)

    def resolve(self, text: str) -> ImageRecord:
        found = self.find(text)
        if found is None:
            raise ImageNotFound(text)
        return found

    def find(self, text: str) -> ImageRecord | None:
        """An image by ID (``sha256:…`` or bare hex), by reference (tag, digest, or
        ``name:tag@digest``, which is its digest), or by an unambiguous ID prefix of at
        least 12 hex digits. Raises ``InvalidReference`` for text that is none of these."""
        with self._lock:
            as_id = _as_id(text)
            by_id = self._images.get(as_id) if as_id is not None else None
            if by_id is not None:
                return by_id
            try:
                names = _lookup_names(text)
            except InvalidReference:
                if _HEX_PREFIX.fullmatch(text):
                    return self._by_prefix(text)
                raise
            for name in names:
                owner = self._names.get(name)
                if owner is not None:
                    return self._images[owner]
            if _HEX_PREFIX.fullmatch(text):
                return self._by_prefix(text)
            return None

    def _by_prefix(self, prefix: str) -> ImageRecord | None:
        if len(prefix) < MIN_ID_PREFIX:
            return None
        matches = [r for d, r in self._images.items() if d.hex.startswith(prefix)]
        return matches[0] if len(matches) == 1 else None

    # --- writing ----------------------------------------------------------------------

    def add(self, record: ImageRecord, names: Iterable[str]) -> ImageRecord:
        """Record ``record`` (merged into the image of the same ID if there is one) with
        ``names`` added; names held by other images move here."""
        with self._lock:
            existing = self._images.get(record.id)
            new_names = [n for n in names]
            if existing is not None:
                record = replace(
                    existing,
                    blobs=_union(existing.blobs, record.blobs),
                    annotations={**existing.annotations, **record.annotations},
                    pinned=existing.pinned or record.pinned,
                    repo_tags=existing.repo_tags,
                    repo_digests=existing.repo_digests,
                )
            tags = list(record.repo_tags)
            digests = list(record.repo_digests)
            for name in new_names:
                target = digests if "@" in name else tags
                if name not in target:
                    target.append(name)
            record = replace(record, repo_tags=tuple(tags), repo_digests=tuple(digests))
            self._write(record)
            losers: dict[Digest, list[str]] = {}
            for name in record.names:
                owner = self._names.get(name)
                if owner is not None and owner != record.id:
                    losers.setdefault(owner, []).append(name)
                self._names[name] = record.id
            for owner, lost in losers.items():
                self._write(_without(self._images[owner], lost))
            return record

    def remove(self, id: Digest) -> ImageRecord | None:
        """Forget an image and all its names; None if it was not there."""
        with self._lock:
            record = self._images.pop(id, None)
            if record is None:
                return None
            self._records.delete(KIND, str(id))
            for name in record.names:
                if self._names.get(name) == id:
                    del self._names[name]
            return record

    def _write(self, record: ImageRecord) -> None:
        # An image that lost its last name is kept: it still holds its layers until an
        # explicit removal by ID or garbage collection lets them go.
        self._records.put(KIND, str(record.id), STATE, record.to_document())
        self._images[record.id] = record

    def all(self) -> list[ImageRecord]:
        """Every image, including those whose names all moved to other images."""
        with self._lock:
            return list(self._images.values())

    def untagged(self) -> list[ImageRecord]:
        with self._lock:
            return [r for r in self._images.values() if not r.names]


# kubelet and crictl ask for the same few images over and over, and parsing a name costs
# more than the lookup itself: both parses below are pure, so their answers are kept. Only
# for texts of a plausible length (no ID or valid reference comes near it): the cache must
# stay small whatever clients send.
_PARSED_NAMES = 1024
_KEPT_TEXT = 1024


def _as_id(text: str) -> Digest | None:
    """`text` as an image ID (``sha256:…`` or bare hex), or None."""
    return _parse_id(text) if len(text) <= _KEPT_TEXT else _parse_id.__wrapped__(text)


def _lookup_names(text: str) -> tuple[str, ...]:
    """The names the reference `text` is indexed under; InvalidReference if it is none."""
    if len(text) <= _KEPT_TEXT:
        return _parse_names(text)
    return _parse_names.__wrapped__(text)


@functools.lru_cache(maxsize=_PARSED_NAMES)
def _parse_id(text: str) -> Digest | None:
    candidate = text if ":" in text else f"sha256:{text}"
    try:
        return Digest.parse(candidate)
    except InvalidDigest:
        return None


@functools.lru_cache(maxsize=_PARSED_NAMES)
def _parse_names(text: str) -> tuple[str, ...]:
    reference = parse_reference(text)
    if reference.digest is not None:
        # containerd's rule: with a digest, the tag says nothing.
        return (f"{reference.repository}@{reference.digest}",)
    return (reference.string(),)


def _without(record: ImageRecord, names: Iterable[str]) -> ImageRecord:
    gone = set(names)
    return replace(
        record,
        repo_tags=tuple(n for n in record.repo_tags if n not in gone),
        repo_digests=tuple(n for n in record.repo_digests if n not in gone),
    )


def _union(first: Sequence[Digest], second: Sequence[Digest]) -> tuple[Digest, ...]:
    return tuple(dict.fromkeys([*first, *second]))
