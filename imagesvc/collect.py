"""Garbage collection of blobs and layers no image references, and the protection a
running pull gives to what it is using before it has recorded an image."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from imagesvc.content import ContentStore
from imagesvc.digest import Digest
from imagesvc.errors import LayerInUse
from imagesvc.layers import LayerStore
from imagesvc.store import ImageStore

log = logging.getLogger("crisp.images")


class Guard:
    """What one pull protects; everything added stays until the pull ends."""

    def __init__(self, collector: Collector) -> None:
        self._collector = collector
        self.digests: list[Digest] = []

    def add(self, *digests: Digest) -> None:
        with self._collector.lock:
            self._collector.protected.update(digests)
        self.digests.extend(digests)


class Collector:
    def __init__(
        self,
        content: ContentStore,
        layers: LayerStore,
        images: ImageStore,
        layers_in_use: Callable[[], Iterable[Digest]] = lambda: (),
    ) -> None:
        self._content = content
        self._layers = layers
        self._images = images
        self._layers_in_use = layers_in_use
        self.lock = threading.Lock()
        self.protected: Counter[Digest] = Counter()

    @contextlib.contextmanager
    def protect(self) -> Iterator[Guard]:
        guard = Guard(self)
        try:
            yield guard
        finally:
            with self.lock:
                self.protected.subtract(guard.digests)
                self.protected += Counter()  # drops the zero counts

    def collect(self, blobs: Iterable[Digest], layers: Iterable[Digest]) -> tuple[int, int]:
        """Delete those of ``blobs`` and ``layers`` (chain IDs, base first) that no image
        references, no pull protects and no container uses. Returns (blobs, layers)
        removed."""
        removed_blobs = removed_layers = 0
        with self.lock:
            kept_blobs: set[Digest] = set()
            kept_layers: set[Digest] = set(self._layers_in_use())
            for record in self._images.all():
                kept_blobs.update(record.blobs)
                kept_layers.update(record.layers)
            for chain in reversed(list(layers)):
                if chain in kept_layers or self.protected[chain]:
                    continue
                try:
                    removed_layers += self._layers.remove(chain)
                except LayerInUse as err:
                    log.info("keeping layer: %s", err)
            for blob in blobs:
                if blob in kept_blobs or self.protected[blob]:
                    continue
                removed_blobs += self._content.delete(blob)
        return removed_blobs, removed_layers
