from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from imagesvc.content import ContentStore
from imagesvc.digest import Digest
from imagesvc.errors import BlobNotFound, DigestMismatch


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_write_read_roundtrip(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    digest = store.write(b"hello world")
    assert digest == Digest.of(b"hello world")
    assert store.exists(digest)
    assert store.read(digest) == b"hello world"
    assert store.size(digest) == 11
    assert store.path(digest) == tmp_path / "blobs" / "sha256" / digest.hex
    with store.open(digest) as f:
        assert f.read(5) == b"hello"
    assert list(store.list()) == [digest]


def test_write_verifies_expected_digest(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    good = Digest.of(b"data")
    assert store.write(b"data", good) == good
    with pytest.raises(DigestMismatch, match="expected sha256:") as info:
        store.write(b"tampered", Digest.of(b"other"))
    assert info.value.actual == str(Digest.of(b"tampered"))
    assert _files(tmp_path) == [f"blobs/sha256/{good.hex}"]


def test_streaming_writer_in_chunks(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    payload = os.urandom(3 * (1 << 20) + 17)
    expected = Digest.of(payload)
    with store.writer(expected, len(payload)) as w:
        for i in range(0, len(payload), 65536):
            w.write(payload[i : i + 65536])
        assert not store.exists(expected)  # invisible until committed
        assert w.commit() == expected
    assert w.written == len(payload)
    assert store.read(expected) == payload


def test_ingest_stream(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    payload = b"x" * 5000
    digest = store.ingest(io.BytesIO(payload), Digest.of(payload), 5000)
    assert store.read(digest) == payload


def test_digest_mismatch_leaves_nothing(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    with store.writer(Digest.of(b"expected")) as w:
        w.write(b"something else")
        with pytest.raises(DigestMismatch):
            w.commit()
    assert _files(tmp_path) == []
    assert list(store.list()) == []


def test_size_too_short_leaves_nothing(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    with pytest.raises(DigestMismatch, match="size mismatch: expected 10, got 3"):
        store.ingest(io.BytesIO(b"abc"), Digest.of(b"abc"), 10)
    assert _files(tmp_path) == []


def test_size_too_long_fails_early(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    with store.writer(None, 4) as w:
        w.write(b"abc")
        with pytest.raises(DigestMismatch, match="size"):
            w.write(b"de")
        with pytest.raises(ValueError, match="closed"):
            w.write(b"f")
    assert _files(tmp_path) == []


def test_abandoned_writer_is_removed(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    with pytest.raises(RuntimeError), store.writer() as w:
        w.write(b"partial")
        raise RuntimeError("connection reset")
    assert _files(tmp_path) == []


def test_uncommitted_writer_is_discarded_on_exit(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    with store.writer() as w:
        w.write(b"never committed")
    assert _files(tmp_path) == []


def test_rewrite_same_blob_is_harmless(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    a = store.write(b"same")
    b = store.write(b"same", a)
    assert a == b
    assert list(store.list()) == [a]


def test_missing_blob(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    missing = Digest.of(b"nope")
    assert not store.exists(missing)
    for call in (store.read, store.size, store.open):
        with pytest.raises(BlobNotFound, match=missing.hex):
            call(missing)
    assert isinstance(BlobNotFound("x"), LookupError)


def test_delete_is_idempotent(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    digest = store.write(b"bye")
    assert store.delete(digest)
    assert not store.exists(digest)
    assert not store.delete(digest)


def test_list_skips_temporaries_and_junk(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    digests = {store.write(b"one"), store.write(b"two")}
    sha512 = store.write(b"x", Digest.of(b"x", "sha512"))
    folder = tmp_path / "blobs" / "sha256"
    (folder / ".tmp-deadbeef").write_bytes(b"partial")
    (folder / "not-a-digest").write_bytes(b"junk")
    assert set(store.list()) == digests | {sha512}
    assert store.remove_stale_temporaries() == 1
    assert not (folder / ".tmp-deadbeef").exists()


def test_blob_file_is_fully_written_before_visible(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    w = store.writer()
    w.write(b"abc")
    temps = os.listdir(tmp_path / "blobs" / "sha256")
    assert len(temps) == 1 and temps[0].startswith(".tmp-")
    digest = w.commit()
    assert os.listdir(tmp_path / "blobs" / "sha256") == [digest.hex]


def test_store_root_is_private(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "content")
    store.write(b"secret layer")
    assert (tmp_path / "content").stat().st_mode & 0o777 == 0o700
