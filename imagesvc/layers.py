"""Unpacked layers keyed by chain ID, each a directory ready to be an overlay lower dir.

Layout: ``<root>/sha256/<chain hex>/diff`` (the lower dir) and ``.../layer.json``. A layer
is staged in ``<root>/.tmp-*`` and renamed into place whole, so a layer that exists is
complete; removal renames it away first, so a half-deleted layer never looks present.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from imagesvc.content import ContentStore
from imagesvc.digest import Digest
from imagesvc.errors import InvalidDigest, LayerInUse, LayerNotFound
from imagesvc.unpack import unpack_layer

DIFF_DIR = "diff"
METADATA_FILE = "layer.json"
_STAGING_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"


def chain_id(parent: Digest | None, diff_id: Digest) -> Digest:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    if parent is None:
        return diff_id
    return Digest.of(f"{parent} {diff_id}".encode())


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    result: list[Digest] = []
    parent: Digest | None = None
    for diff_id in diff_ids:
        parent = chain_id(parent, diff_id)
        result.append(parent)
    return result


@dataclass(frozen=True)
class LayerInfo:
    chain_id: Digest
    diff_id: Digest
    parent: Digest | None
    size: int
    """Bytes of the uncompressed layer tar."""
    blob: Digest | None
    """The compressed blob it was unpacked from, when known."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "chain_id": str(self.chain_id),
                "diff_id": str(self.diff_id),
                "parent": str(self.parent) if self.parent else None,
                "size": self.size,
                "blob": str(self.blob) if self.blob else None,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> LayerInfo:
        raw = json.loads(text)
        return cls(
            chain_id=Digest.parse(raw["chain_id"]),
            diff_id=Digest.parse(raw["diff_id"]),
            parent=Digest.parse(raw["parent"]) if raw["parent"] else None,
            size=int(raw["size"]),
            blob=Digest.parse(raw["blob"]) if raw["blob"] else None,
        )


class LayerStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        # Serialises the parent/child checks of add and remove within this process.
        self._lock = threading.Lock()

    def _dir(self, chain: Digest) -> Path:
        return self.root / chain.algorithm / chain.hex

    def has(self, chain: Digest) -> bool:
        return (self._dir(chain) / METADATA_FILE).is_file()

    def path(self, chain: Digest) -> Path:
        """The layer's own directory, to be used as one overlay lower dir."""
        if not self.has(chain):
            raise LayerNotFound(str(chain))
        return self._dir(chain) / DIFF_DIR

    def info(self, chain: Digest) -> LayerInfo:
        try:
            return LayerInfo.from_json((self._dir(chain) / METADATA_FILE).read_text())
        except FileNotFoundError:
            raise LayerNotFound(str(chain)) from None

    def lower_dirs(self, chain: Digest) -> list[Path]:
        """Directories of the layer and its ancestors, topmost first, as overlayfs's
        ``lowerdir=`` option lists them."""
        dirs: list[Path] = []
        current: Digest | None = chain
        while current is not None:
            dirs.append(self.path(current))
            current = self.info(current).parent
        return dirs

    def list(self) -> Iterator[Digest]:
        folder = self.root / "sha256"
        if not folder.is_dir():
            return
        for entry in sorted(os.listdir(folder)):
            try:
                candidate = Digest("sha256", entry)
            except InvalidDigest:
                continue
            if self.has(candidate):
                yield candidate

    def add(
        self,
        stream: BinaryIO,
        *,
        parent: Digest | None,
        diff_id: Digest | None = None,
        media_type: str | None = None,
        blob: Digest | None = None,
    ) -> LayerInfo:
        """Unpack ``stream`` as the layer above ``parent``. With ``diff_id`` known (from
        the image config) an existing layer is reused without reading the stream, and the
        unpacked content is verified against it."""
        if parent is not None and not self.has(parent):
            raise LayerNotFound(str(parent))
        if diff_id is not None and self.has(chain_id(parent, diff_id)):
            return self.info(chain_id(parent, diff_id))
        # Like containerd's snapshot root: layers may hold private images' files.
        os.makedirs(self.root, 0o700, exist_ok=True)
        staging = self.root / f"{_STAGING_PREFIX}{secrets.token_hex(8)}"
        os.mkdir(staging, 0o700)
        try:
            result = unpack_layer(
                stream, staging / DIFF_DIR, media_type=media_type, expected_diff_id=diff_id
            )
            info = LayerInfo(
                chain_id(parent, result.diff_id), result.diff_id, parent, result.size, blob
            )
            _write_synced(staging / METADATA_FILE, info.to_json())
            os.chmod(staging, 0o755)
            final = self._dir(info.chain_id)
            final.parent.mkdir(exist_ok=True)
            with self._lock:
                if parent is not None and not self.has(parent):
                    raise LayerNotFound(str(parent))
                try:
                    os.rename(staging, final)
                except OSError as err:
                    # Someone else unpacked the same layer first; theirs is as good.
                    if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                    shutil.rmtree(staging)
                    return self.info(info.chain_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return info

    def add_from_blob(
        self,
        content: ContentStore,
        blob: Digest,
        *,
        parent: Digest | None,
        diff_id: Digest | None = None,
        media_type: str | None = None,
    ) -> LayerInfo:
        if diff_id is not None and self.has(chain_id(parent, diff_id)):
            return self.info(chain_id(parent, diff_id))
        with content.open(blob) as stream:
            return self.add(
                stream, parent=parent, diff_id=diff_id, media_type=media_type, blob=blob
            )

    def remove(self, chain: Digest) -> bool:
        """Remove a layer that no other layer is built on; False if it was not there."""
        with self._lock:
            if not self.has(chain):
                return False
            for other in self.list():
                if self.info(other).parent == chain:
                    raise LayerInUse(str(chain), str(other))
            trash = self.root / f"{_TRASH_PREFIX}{secrets.token_hex(8)}"
            os.rename(self._dir(chain), trash)
        shutil.rmtree(trash)
        return True

    def remove_stale_temporaries(self) -> int:
        """Clear staging and trash directories a crashed process left behind. Only safe
        while no ``add`` of this store is running."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for entry in os.listdir(self.root):
            if entry.startswith((_STAGING_PREFIX, _TRASH_PREFIX)):
                shutil.rmtree(self.root / entry, ignore_errors=True)
                removed += 1
        return removed


def _write_synced(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
