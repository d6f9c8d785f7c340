"""Pulling an image: reference → manifest (index → the platform's manifest) → config →
layers downloaded concurrently into the content store → unpacked by chain ID → recorded.

Every document and blob is verified against its digest, every unpacked layer against its
diff ID. Layers present already are not fetched; identical concurrent pulls share each
download and each unpack. A failed pull removes what it alone had written (blobs, layers)
and records nothing.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from imagesvc.auth import Credentials
from imagesvc.collect import Collector, Guard
from imagesvc.content import ContentStore
from imagesvc.digest import Digest
from imagesvc.errors import (
    InvalidManifest,
    NoMatchingPlatform,
    PullCancelled,
    RegistryUnavailable,
)
from imagesvc.imageconfig import ImageConfig, parse_image_config
from imagesvc.inflight import SingleFlight
from imagesvc.layers import LayerInfo, LayerStore, chain_ids
from imagesvc.manifest import Descriptor, Index, Manifest, parse_manifest_document, select_manifest
from imagesvc.platform import Platform, match_rank
from imagesvc.reference import ImageReference, parse_reference
from imagesvc.registry import RegistryClient, RepositoryClient
from imagesvc.store import ImageRecord, ImageStore

log = logging.getLogger("crisp.images.pull")

_CHUNK = 1 << 20
MAX_CONFIG_BYTES = 8 << 20
# An index pointing at an index is allowed once (nested indexes exist in the wild).
_MAX_INDEX_DEPTH = 2


@dataclass(frozen=True)
class PullOptions:
    max_concurrent_downloads: int = 3
    platform: Platform = field(default_factory=Platform.host)


@dataclass
class PullStats:
    """Counters since start; the daemon exports them as metrics."""

    bytes_fetched: int = 0
    blobs_fetched: int = 0
    layers_reused: int = 0
    pulls: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fetched(self, n: int) -> None:
        with self._lock:
            self.bytes_fetched += n

    def blob_done(self) -> None:
        with self._lock:
            self.blobs_fetched += 1

    def layer_reused(self) -> None:
        with self._lock:
            self.layers_reused += 1

    def pulled(self) -> None:
        with self._lock:
            self.pulls += 1

    def failed(self, reason: str) -> None:
        with self._lock:
            self.failures[reason] = self.failures.get(reason, 0) + 1


class Puller:
    def __init__(
        self,
        client: RegistryClient,
        content: ContentStore,
        layers: LayerStore,
        images: ImageStore,
        collector: Collector,
        options: PullOptions | None = None,
    ) -> None:
        self._client = client
        self._content = content
        self._layers = layers
        self._images = images
        self._collector = collector
        self.options = options or PullOptions()
        self.stats = PullStats()
        self._downloads: SingleFlight[None] = SingleFlight()
        self._unpacks: SingleFlight[LayerInfo] = SingleFlight()

    def pull(
        self,
        text: str,
        credentials: Credentials | None = None,
        annotations: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
    ) -> ImageRecord:
        reference = parse_reference(text)
        if reference.digest is not None:
            reference = reference.with_tag(None)  # containerd's rule: the digest decides
        run = _Pull(self, reference, credentials, cancel or threading.Event())
        try:
            record = run.execute(dict(annotations or {}))
        except BaseException as err:
            self.stats.failed(type(err).__name__)
            run.clean_up()
            raise
        self.stats.pulled()
        return record


class _Pull:
    def __init__(
        self,
        puller: Puller,
        reference: ImageReference,
        credentials: Credentials | None,
        cancel: threading.Event,
    ) -> None:
        self._p = puller
        self.reference = reference
        self._repo: RepositoryClient = puller._client.repository(reference, credentials)
        self._cancel = cancel
        # Set on failure so that this pull's other downloads stop early.
        self._abort = threading.Event()
        self._created_blobs: list[Digest] = []
        self._created_layers: list[Digest] = []
        self._created_lock = threading.Lock()
        self._guard: Guard | None = None

    def _cancelled(self) -> bool:
        return self._cancel.is_set() or self._abort.is_set()

    def _check_cancel(self) -> None:
        if self._cancelled():
            raise PullCancelled(self.reference.string())

    def execute(self, annotations: dict[str, str]) -> ImageRecord:
        with self._p._collector.protect() as guard:
            self._guard = guard
            return self._execute(guard, annotations)

    def _execute(self, guard: Guard, annotations: dict[str, str]) -> ImageRecord:
        ref = self.reference
        top = self._repo.get_manifest(str(ref.digest) if ref.digest else str(ref.tag))
        guard.add(top.digest)
        self._store_document(top.digest, top.data)
        blobs = [top.digest]
        document = parse_manifest_document(top.data, top.content_type)
        manifest_digest, manifest_data = top.digest, top.data
        depth = 0
        while isinstance(document, Index):
            depth += 1
            if depth > _MAX_INDEX_DEPTH:
                raise InvalidManifest("image index", "indexes nested too deeply")
            entry = select_manifest(document, self._p.options.platform)
            self._check_cancel()
            fetched = self._repo.get_manifest(str(entry.digest))
            entry.verify(fetched.data)
            guard.add(entry.digest)
            self._store_document(entry.digest, fetched.data)
            blobs.append(entry.digest)
            document = parse_manifest_document(fetched.data, entry.media_type)
            manifest_digest, manifest_data = entry.digest, fetched.data
        manifest: Manifest = document

        guard.add(manifest.config.digest)
        config_data = self._config_bytes(manifest.config)
        config = parse_image_config(config_data)
        config.check_manifest(manifest)
        self._check_platform(config)
        blobs.append(manifest.config.digest)

        chains = chain_ids(config.diff_ids)
        guard.add(*chains, *(layer.digest for layer in manifest.layers))
        self._fetch_and_unpack(manifest, config, chains)
        blobs.extend(layer.digest for layer in manifest.layers)

        size = len(manifest_data) + manifest.config.size + sum(d.size for d in manifest.layers)
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
            annotations=annotations,
        )
        names = [f"{ref.repository}@{top.digest}"]
        if ref.tag is not None:
            names.insert(0, ref.string())
        self._check_cancel()
        return self._p._images.add(record, names)

    def _store_document(self, digest: Digest, data: bytes) -> None:
        if not self._p._content.exists(digest):
            self._p._content.write(data, digest)
            self._created(blob=digest)

    def _config_bytes(self, descriptor: Descriptor) -> bytes:
        if descriptor.size > MAX_CONFIG_BYTES:
            raise InvalidManifest(
                "image manifest", f"config of {descriptor.size} bytes exceeds {MAX_CONFIG_BYTES}"
            )
        content = self._p._content
        if content.exists(descriptor.digest):
            return content.read(descriptor.digest)
        with self._repo.open_blob(descriptor.digest) as stream:
            data = stream.read(descriptor.size + 1)
        descriptor.verify(data)
        self._store_document(descriptor.digest, data)
        return data

    def _check_platform(self, config: ImageConfig) -> None:
        offered = Platform(config.os, config.architecture, config.variant)
        if match_rank(self._p.options.platform, offered) is None:
            raise NoMatchingPlatform(str(self._p.options.platform), [str(offered.normalized())])

    # --- layers ---------------------------------------------------------------------------

    def _fetch_and_unpack(
        self, manifest: Manifest, config: ImageConfig, chains: list[Digest]
    ) -> None:
        """Downloads run concurrently; unpacking follows in order as each arrives, so the
        first layers unpack while later ones download."""
        workers = max(1, self._p.options.max_concurrent_downloads)
        pending: list[Future[None] | None] = []
        with ThreadPoolExecutor(workers, thread_name_prefix="pull") as pool:
            try:
                for descriptor, chain in zip(manifest.layers, chains, strict=True):
                    if self._p._layers.has(chain):
                        self._p.stats.layer_reused()
                        pending.append(None)
                    else:
                        pending.append(pool.submit(self._download, descriptor))
                parent: Digest | None = None
                for position, (descriptor, chain) in enumerate(
                    zip(manifest.layers, chains, strict=True)
                ):
                    download = pending[position]
                    if download is not None:
                        download.result()
                    self._unpack(descriptor, chain, parent, config.diff_ids[position])
                    parent = chain
            except BaseException:
                self._abort.set()
                raise

    def _download(self, descriptor: Descriptor) -> None:
        if self._p._content.exists(descriptor.digest):
            return
        _, shared = self._p._downloads.do(
            descriptor.digest, lambda: self._fetch_blob(descriptor), self._cancelled
        )
        if shared:
            log.debug("%s: shared a running download of %s", self.reference, descriptor.digest)

    def _fetch_blob(self, descriptor: Descriptor) -> None:
        content, options = self._p._content, self._p._client.options
        if content.exists(descriptor.digest):
            return
        attempt = 0
        while True:
            self._check_cancel()
            try:
                with (
                    content.writer(descriptor.digest, descriptor.size) as writer,
                    self._repo.open_blob(descriptor.digest) as stream,
                ):
                    while chunk := stream.read(_CHUNK):
                        self._check_cancel()
                        writer.write(chunk)
                        self._p.stats.fetched(len(chunk))
                    writer.commit()
                self._p.stats.blob_done()
                self._created(blob=descriptor.digest)
                return
            except RegistryUnavailable:
                attempt += 1
                if attempt > options.retries:
                    raise
                delay = options.backoff_seconds * (2 ** (attempt - 1))
                time.sleep(delay * random.uniform(0.5, 1.5))

    def _unpack(
        self, descriptor: Descriptor, chain: Digest, parent: Digest | None, diff_id: Digest
    ) -> None:
        layers = self._p._layers
        if layers.has(chain):
            return

        def unpack() -> LayerInfo:
            if layers.has(chain):
                return layers.info(chain)
            info = layers.add_from_blob(
                self._p._content,
                descriptor.digest,
                parent=parent,
                diff_id=diff_id,
                media_type=descriptor.media_type,
            )
            self._created(layer=chain)
            return info

        self._check_cancel()
        self._p._unpacks.do(chain, unpack, self._cancelled)

    def _created(self, *, blob: Digest | None = None, layer: Digest | None = None) -> None:
        with self._created_lock:
            if blob is not None:
                self._created_blobs.append(blob)
            if layer is not None:
                self._created_layers.append(layer)

    def clean_up(self) -> None:
        """After a failure: remove what this pull wrote and no image references."""
        removed = self._p._collector.collect(self._created_blobs, self._created_layers)
        if any(removed):
            log.info("%s: failed pull cleaned up %d blobs, %d layers", self.reference, *removed)
