"""Content store: immutable blobs addressed by digest, under ``<root>/blobs/<alg>/<hex>``.

A blob becomes visible only by an atomic rename of a fully written, fsynced and verified
temporary file, so a reader never sees a partial blob and a crash leaves at most a
temporary file behind (``remove_stale_temporaries`` clears those at start-up).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from imagesvc.digest import HEX_LENGTHS, Digest, Hasher, new_hasher
from imagesvc.errors import BlobNotFound, DigestMismatch, InvalidDigest

TEMP_PREFIX = ".tmp-"
_CHUNK = 1 << 20


class ContentStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs"

    def path(self, digest: Digest) -> Path:
        return self._blobs / digest.algorithm / digest.hex

    def exists(self, digest: Digest) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: Digest) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(str(digest)) from None

    def open(self, digest: Digest) -> BinaryIO:
        try:
            return self.path(digest).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(str(digest)) from None

    def read(self, digest: Digest) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def delete(self, digest: Digest) -> bool:
        """Remove a blob; returns False if it was not there (removal is idempotent)."""
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def list(self) -> Iterator[Digest]:
        for algorithm in sorted(HEX_LENGTHS):
            folder = self._blobs / algorithm
            if not folder.is_dir():
                continue
            for entry in sorted(os.listdir(folder)):
                if entry.startswith(TEMP_PREFIX):
                    continue
                with contextlib.suppress(InvalidDigest):
                    yield Digest(algorithm, entry)

    def writer(
        self,
        expected: Digest | None = None,
        size: int | None = None,
        algorithm: str = "sha256",
    ) -> BlobWriter:
        """Open a streaming writer. Use it as a context manager and call ``commit``; a
        writer left without a successful commit removes its temporary file."""
        if expected is not None:
            algorithm = expected.algorithm
        folder = self._blobs / algorithm
        # Private images' blobs are nobody else's business on this host.
        os.makedirs(self.root, 0o700, exist_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        return BlobWriter(folder, algorithm, expected, size)

    def write(self, data: bytes, expected: Digest | None = None) -> Digest:
        with self.writer(expected, len(data)) as w:
            w.write(data)
            return w.commit()

    def ingest(
        self, stream: BinaryIO, expected: Digest | None = None, size: int | None = None
    ) -> Digest:
        with self.writer(expected, size) as w:
            while chunk := stream.read(_CHUNK):
                w.write(chunk)
            return w.commit()

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files left by writers of a crashed process. Only safe while no
        writer of this store is open."""
        removed = 0
        for algorithm in HEX_LENGTHS:
            folder = self._blobs / algorithm
            if not folder.is_dir():
                continue
            for entry in os.listdir(folder):
                if entry.startswith(TEMP_PREFIX):
                    (folder / entry).unlink(missing_ok=True)
                    removed += 1
        return removed


class BlobWriter:
    def __init__(
        self, folder: Path, algorithm: str, expected: Digest | None, size: int | None
    ) -> None:
        self._folder = folder
        self._algorithm = algorithm
        self._expected = expected
        self._size = size
        self._hasher: Hasher = new_hasher(algorithm)
        self._temp = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        self._fd: int | None = os.open(
            self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644
        )
        self.written = 0
        self.digest: Digest | None = None

    def write(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError("blob writer is closed")
        if self._size is not None and self.written + len(data) > self._size:
            self.abort()
            raise DigestMismatch(str(self._size), f"more than {self._size} bytes", "size")
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._hasher.update(data)
        self.written += len(data)

    def commit(self) -> Digest:
        if self._fd is None:
            raise ValueError("blob writer is closed")
        try:
            if self._size is not None and self.written != self._size:
                raise DigestMismatch(str(self._size), str(self.written), "size")
            actual = Digest(self._algorithm, self._hasher.hexdigest())
            if self._expected is not None and actual != self._expected:
                raise DigestMismatch(str(self._expected), str(actual))
            os.fsync(self._fd)
        except BaseException:
            self.abort()
            raise
        os.close(self._fd)
        self._fd = None
        final = self._folder / actual.hex
        # Same name means same bytes, so losing a race to another writer is harmless.
        os.rename(self._temp, final)
        _fsync_dir(self._folder)
        self.digest = actual
        return actual

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._temp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
