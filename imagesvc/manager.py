"""The image service's domain facade: pull, look up, list, remove and measure images.
What the CRI ImageService (and later the sandbox, for containers' images) calls.

Layout under the image root: ``content/`` (blobs by digest), ``layers/`` (unpacked layers
by chain ID); metadata lives in the injected record store.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from imagesvc.auth import Credentials
from imagesvc.collect import Collector
from imagesvc.content import ContentStore
from imagesvc.digest import Digest
from imagesvc.endpoints import Endpoints, RegistryHost
from imagesvc.imageconfig import ImageConfig, parse_image_config
from imagesvc.importer import Importer
from imagesvc.layers import LayerStore
from imagesvc.pull import Puller, PullOptions, PullStats
from imagesvc.registry import ClientOptions, RegistryClient
from imagesvc.store import ImageRecord, ImageStore, RecordStore
from imagesvc.usage import FsUsage, measure

_CACHED_IMAGES = 256

log = logging.getLogger("crisp.images")


class ImageManager:
    def __init__(
        self,
        root: Path | str,
        records: RecordStore,
        *,
        registries: Mapping[str, RegistryHost] | None = None,
        client_options: ClientOptions | None = None,
        pull_options: PullOptions | None = None,
        layers_in_use: Callable[[], Iterable[Digest]] = lambda: (),
    ) -> None:
        self.root = Path(root)
        self.content = ContentStore(self.root / "content")
        self.layers = LayerStore(self.root / "layers")
        self.images = ImageStore(records)
        self.collector = Collector(self.content, self.layers, self.images, layers_in_use)
        self.client = RegistryClient(Endpoints(registries), client_options)
        self._puller = Puller(
            self.client, self.content, self.layers, self.images, self.collector, pull_options
        )
        # Removal and the untagged sweep after a pull must not interleave.
        self._remove_lock = threading.Lock()
        # Every CreateContainer asks both; their sources are content-addressed and never
        # change, where reading and parsing them again costs a create ~0.5 ms.
        self._config = functools.lru_cache(maxsize=_CACHED_IMAGES)(self._read_config)
        self._lower_dirs = functools.lru_cache(maxsize=_CACHED_IMAGES)(self.layers.lower_dirs)

    @property
    def stats(self) -> PullStats:
        return self._puller.stats

    def recover(self) -> tuple[int, int, int]:
        """Clear what a crashed daemon left behind; only before serving. Temporaries of
        interrupted writes go, and so do blobs and layers that a pull had committed but
        never recorded an image for. Returns (temporaries, blobs, layers) removed."""
        temporaries = (
            self.content.remove_stale_temporaries() + self.layers.remove_stale_temporaries()
        )
        blobs = layers = 0
        while True:
            # Children before parents: a layer with a child survives one pass.
            removed = self.collector.collect(list(self.content.list()), list(self.layers.list()))
            blobs, layers = blobs + removed[0], layers + removed[1]
            if removed[1] == 0:
                return temporaries, blobs, layers

    def pull(
        self,
        reference: str,
        credentials: Credentials | None = None,
        annotations: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
    ) -> ImageRecord:
        record = self._puller.pull(reference, credentials, annotations, cancel)
        # A tag that moved may have left an image with no name at all: it is gone.
        for orphan in self.images.untagged():
            self._forget(orphan)
        return record

    def import_archive(self, path: Path | str) -> list[ImageRecord]:
        """Load an OCI image layout (directory or tar) or a docker-archive tar."""
        importer = Importer(
            self.content, self.layers, self.images, self.collector, self._puller.options.platform
        )
        records = importer.load(path)
        for orphan in self.images.untagged():  # names the import took from other images
            self._forget(orphan)
        return records

    def find(self, reference: str) -> ImageRecord | None:
        return self.images.find(reference)

    def list_images(self, reference: str = "") -> list[ImageRecord]:
        """Every named image, or only the one ``reference`` resolves to."""
        if not reference:
            return self.images.named()
        found = self.images.find(reference)
        return [found] if found is not None else []

    def remove(self, reference: str) -> ImageRecord | None:
        """Remove the image ``reference`` resolves to, with all its names (as containerd
        does), then its blobs and layers unless another image or a container uses them.
        None when there is no such image: removal is idempotent."""
        record = self.images.find(reference)
        if record is None:
            return None
        self._forget(record)
        return record

    def _forget(self, record: ImageRecord) -> None:
        with self._remove_lock:
            if self.images.remove(record.id) is None:
                return
            blobs, layers = self.collector.collect(record.blobs, record.layers)
            log.info("removed image %s (%d blobs, %d layers freed)", record.id, blobs, layers)

    def config_of(self, record: ImageRecord) -> ImageConfig:
        """What a container of this image runs with (entrypoint, env, user...)."""
        return self._config(record.id)

    def _read_config(self, config_digest: Digest) -> ImageConfig:
        return parse_image_config(self.content.read(config_digest))

    def lower_dirs(self, record: ImageRecord) -> list[Path]:
        """The image's unpacked layers, topmost first, as overlayfs's lowerdir lists them."""
        if not record.layers:
            return []
        dirs = self._lower_dirs(record.layers[-1])
        if not dirs[0].is_dir():  # collected since (the image was removed meanwhile)
            self._lower_dirs.cache_clear()
            return self.layers.lower_dirs(record.layers[-1])  # raises LayerNotFound
        return list(dirs)

    def usage(self) -> FsUsage:
        self.root.mkdir(parents=True, exist_ok=True)
        return measure(self.root)

    def verbose_info(self, record: ImageRecord) -> dict[str, Any]:
        """containerd's ImageStatus verbose shape: the chain ID and the image config."""
        info: dict[str, Any] = {
            "id": str(record.id),
            "chainID": str(record.layers[-1]) if record.layers else "",
            "manifestDigest": str(record.manifest_digest),
            "layers": [str(c) for c in record.layers],
            "size": record.size,
        }
        if self.content.exists(record.id):
            info["imageSpec"] = json.loads(self.content.read(record.id))
        return info
