"""Loading images without a registry (air-gapped nodes): an OCI image layout (a directory,
or a tar of one) or a docker-archive tar (``docker save``: ``manifest.json`` naming each
image's config, layers and tags).

Everything is verified as a pull verifies it: OCI blobs against their descriptors, layers
against the config's diff IDs. Names come from the layout's
``io.containerd.image.name`` / ``org.opencontainers.image.ref.name`` annotations (which
must be full references) or the archive's ``RepoTags``. A failed import removes what it
wrote and records nothing.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from imagesvc import mediatypes as mt
from imagesvc.collect import Collector, Guard
from imagesvc.compression import Compression, detect_compression
from imagesvc.content import ContentStore
from imagesvc.digest import Digest
from imagesvc.errors import ImageError, InvalidManifest, InvalidReference
from imagesvc.imageconfig import ImageConfig, parse_image_config
from imagesvc.layers import LayerStore, chain_ids
from imagesvc.manifest import Descriptor, Index, Manifest, parse_manifest_document, select_manifest
from imagesvc.platform import Platform
from imagesvc.reference import parse_reference
from imagesvc.store import ImageRecord, ImageStore

CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"
_MAX_DOCUMENT = 8 << 20
_DOCKER_LAYER = {
    Compression.NONE: "application/vnd.docker.image.rootfs.diff.tar",
    Compression.GZIP: "application/vnd.docker.image.rootfs.diff.tar.gzip",
    Compression.ZSTD: "application/vnd.docker.image.rootfs.diff.tar.zstd",
}


class InvalidArchive(ImageError, ValueError):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot import {path}: {reason}")


class _Source:
    """Files of the archive by their path inside it, from a directory or a tar."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tar: tarfile.TarFile | None = None
        if path.is_file():
            try:
                self._tar = tarfile.open(path)  # noqa: SIM115 - closed by close()
            except tarfile.TarError as err:
                raise InvalidArchive(path, f"not a directory or a tar: {err}") from None
        elif not path.is_dir():
            raise InvalidArchive(path, "no such file or directory")

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def exists(self, name: str) -> bool:
        if self._tar is None:
            return (self.path / name).is_file()
        try:
            return self._tar.getmember(name).isfile()
        except KeyError:
            return False

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        if ".." in Path(name).parts or name.startswith("/"):
            raise InvalidArchive(self.path, f"member {name!r} points outside the archive")
        if self._tar is None:
            try:
                with (self.path / name).open("rb") as f:
                    yield f
            except FileNotFoundError:
                raise InvalidArchive(self.path, f"{name} is missing") from None
            return
        try:
            member = self._tar.extractfile(name)
        except KeyError:
            member = None
        if member is None:
            raise InvalidArchive(self.path, f"{name} is missing or not a file")
        with member:
            yield member  # type: ignore[misc]

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            data = f.read(_MAX_DOCUMENT + 1)
        if len(data) > _MAX_DOCUMENT:
            raise InvalidArchive(self.path, f"{name} is larger than {_MAX_DOCUMENT} bytes")
        return data


@dataclass(frozen=True)
class _Layer:
    member: str
    descriptor: Descriptor | None
    """Known for OCI layouts; a docker archive's layers are measured while ingested."""


class Importer:
    def __init__(
        self,
        content: ContentStore,
        layers: LayerStore,
        images: ImageStore,
        collector: Collector,
        platform: Platform,
    ) -> None:
        self._content = content
        self._layers = layers
        self._images = images
        self._collector = collector
        self._platform = platform

    def load(self, path: Path | str) -> list[ImageRecord]:
        source = _Source(Path(path))
        try:
            if source.exists("index.json") and source.exists("oci-layout"):
                return self._oci_layout(source)
            if source.exists("manifest.json"):
                return self._docker_archive(source)
            raise InvalidArchive(
                source.path, "neither an OCI layout (oci-layout, index.json) nor a docker archive"
            )
        finally:
            source.close()

    # --- OCI image layout -------------------------------------------------------------------

    def _oci_layout(self, source: _Source) -> list[ImageRecord]:
        index = parse_manifest_document(source.read("index.json"), mt.OCI_INDEX)
        if not isinstance(index, Index):
            raise InvalidArchive(source.path, "index.json is not an image index")
        records = []
        for entry in index.manifests:
            names = _layout_names(source.path, entry)
            records.append(self._transaction(partial(self._oci_image, source, entry, names)))
        return records

    def _oci_image(
        self, source: _Source, entry: Descriptor, names: list[str], created: _Created
    ) -> ImageRecord:
        blobs = []
        descriptor = entry
        data = self._document(source, descriptor, created)
        blobs.append(descriptor.digest)
        document = parse_manifest_document(data, descriptor.media_type)
        while isinstance(document, Index):
            descriptor = select_manifest(document, self._platform)
            data = self._document(source, descriptor, created)
            blobs.append(descriptor.digest)
            document = parse_manifest_document(data, descriptor.media_type)
        manifest: Manifest = document
        config_data = self._document(source, manifest.config, created)
        config = parse_image_config(config_data)
        config.check_manifest(manifest)
        layers = [_Layer(_blob_path(d.digest), d) for d in manifest.layers]
        chains = self._unpack(source, layers, config, created)
        blobs += [manifest.config.digest, *(d.digest for d in manifest.layers)]
        size = len(data) + manifest.config.size + sum(d.size for d in manifest.layers)
        return self._record(manifest, descriptor.digest, config, chains, blobs, size, names)

    def _document(self, source: _Source, descriptor: Descriptor, created: _Created) -> bytes:
        data = source.read(_blob_path(descriptor.digest))
        descriptor.verify(data)
        self._store(descriptor.digest, data, created)
        return data

    # --- docker archive ---------------------------------------------------------------------

    def _docker_archive(self, source: _Source) -> list[ImageRecord]:
        try:
            entries = json.loads(source.read("manifest.json"))
        except ValueError as err:
            raise InvalidArchive(source.path, f"manifest.json is not JSON: {err}") from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise InvalidArchive(source.path, "manifest.json must be a list of objects")
        return [self._transaction(partial(self._docker_image, source, e)) for e in entries]

    def _docker_image(
        self, source: _Source, entry: dict[str, Any], created: _Created
    ) -> ImageRecord:
        config_member, layer_members = entry.get("Config"), entry.get("Layers")
        tags = entry.get("RepoTags") or []
        if not isinstance(config_member, str) or not isinstance(layer_members, list):
            raise InvalidArchive(source.path, "manifest.json entry needs Config and Layers")
        if not tags:
            # An image without a name could never be listed, used or removed by name.
            raise InvalidArchive(source.path, f"{config_member} has no RepoTags")
        config_data = source.read(config_member)
        config_descriptor = Descriptor(mt.DOCKER_CONFIG, Digest.of(config_data), len(config_data))
        self._store(config_descriptor.digest, config_data, created)
        config = parse_image_config(config_data)
        if len(config.diff_ids) != len(layer_members):
            raise InvalidManifest(
                "image config", f"{len(config.diff_ids)} diff IDs for {len(layer_members)} layers"
            )
        layers = [_Layer(str(m), None) for m in layer_members]
        descriptors: list[Descriptor] = []
        chains = self._unpack(source, layers, config, created, descriptors)
        manifest = Manifest(mt.DOCKER_MANIFEST, config_descriptor, tuple(descriptors))
        manifest_data = _docker_manifest(manifest)
        manifest_digest = Digest.of(manifest_data)
        self._store(manifest_digest, manifest_data, created)
        names = []
        for tag in tags:
            try:
                names.append(parse_reference(str(tag)).string())
            except InvalidReference as err:
                raise InvalidArchive(source.path, f"RepoTags: {err}") from None
        blobs = [manifest_digest, config_descriptor.digest, *(d.digest for d in descriptors)]
        size = len(manifest_data) + len(config_data) + sum(d.size for d in descriptors)
        return self._record(manifest, manifest_digest, config, chains, blobs, size, names)

    # --- shared ------------------------------------------------------------------------------

    def _transaction(self, work: Callable[[_Created], ImageRecord]) -> ImageRecord:
        """One image: recorded whole, or what it wrote removed again."""
        created: _Created | None = None
        try:
            with self._collector.protect() as guard:
                created = _Created(guard)
                return work(created)
        except BaseException:
            if created is not None:
                self._collector.collect(created.blobs, created.layers)
            raise

    def _unpack(
        self,
        source: _Source,
        layers: list[_Layer],
        config: ImageConfig,
        created: _Created,
        measured: list[Descriptor] | None = None,
    ) -> list[Digest]:
        chains = chain_ids(config.diff_ids)
        created.guard.add(*chains)
        parent: Digest | None = None
        for layer, chain, diff_id in zip(layers, chains, config.diff_ids, strict=True):
            descriptor = layer.descriptor
            with source.open(layer.member) as stream:
                if descriptor is None:
                    with self._content.writer() as writer:
                        head = stream.read(6)
                        writer.write(head)
                        while chunk := stream.read(1 << 20):
                            writer.write(chunk)
                        digest = writer.commit()
                    media_type = _DOCKER_LAYER[detect_compression(head)]
                    descriptor = Descriptor(media_type, digest, writer.written)
                    created.guard.add(digest)
                    created.blobs.append(digest)
                    assert measured is not None
                    measured.append(descriptor)
                else:
                    created.guard.add(descriptor.digest)
                    if not self._content.exists(descriptor.digest):
                        self._content.ingest(stream, descriptor.digest, descriptor.size)
                        created.blobs.append(descriptor.digest)
            if not self._layers.has(chain):
                self._layers.add_from_blob(
                    self._content,
                    descriptor.digest,
                    parent=parent,
                    diff_id=diff_id,
                    media_type=descriptor.media_type,
                )
                created.layers.append(chain)
            parent = chain
        return chains

    def _store(self, digest: Digest, data: bytes, created: _Created) -> None:
        created.guard.add(digest)
        if not self._content.exists(digest):
            self._content.write(data, digest)
            created.blobs.append(digest)

    def _record(
        self,
        manifest: Manifest,
        manifest_digest: Digest,
        config: ImageConfig,
        chains: list[Digest],
        blobs: list[Digest],
        size: int,
        names: list[str],
    ) -> ImageRecord:
        record = ImageRecord(
            id=manifest.config.digest,
            repo_tags=(),
            repo_digests=(),
            manifest_digest=manifest_digest,
            config_media_type=manifest.config.media_type,
            layers=tuple(chains),
            blobs=tuple(dict.fromkeys(blobs)),
            size=size,
            user=config.user,
        )
        return self._images.add(record, names)


class _Created:
    """What one image's import wrote, and the guard that keeps collection off it."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.blobs: list[Digest] = []
        self.layers: list[Digest] = []


def _blob_path(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


def _layout_names(path: Path, entry: Descriptor) -> list[str]:
    name = entry.annotations.get(CONTAINERD_NAME) or entry.annotations.get(OCI_REF_NAME)
    if not name:
        raise InvalidArchive(path, f"index.json entry {entry.digest} names no image")
    # A bare tag ("v1") would parse as docker.io/library/v1:latest: it must name its
    # repository itself.
    try:
        if "/" not in name and ":" not in name:
            raise InvalidReference(name, "a tag alone names no repository")
        reference = parse_reference(name)
    except InvalidReference as err:
        raise InvalidArchive(path, f"index.json entry {entry.digest}: {err}") from None
    if reference.digest is not None:
        return [f"{reference.repository}@{reference.digest}"]
    return [reference.string()]


def _docker_manifest(manifest: Manifest) -> bytes:
    def descriptor(d: Descriptor) -> dict[str, object]:
        return {"mediaType": d.media_type, "digest": str(d.digest), "size": d.size}

    document = {
        "schemaVersion": 2,
        "mediaType": manifest.media_type,
        "config": descriptor(manifest.config),
        "layers": [descriptor(d) for d in manifest.layers],
    }
    return json.dumps(document, separators=(",", ":")).encode()
