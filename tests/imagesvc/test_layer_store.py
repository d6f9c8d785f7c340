from __future__ import annotations

import ctypes
import ctypes.util
import errno
import gzip
import hashlib
import io
import os
import stat
import tarfile
import threading
from pathlib import Path

import pytest
import zstandard

from imagesvc.content import ContentStore
from imagesvc.digest import Digest
from imagesvc.errors import DigestMismatch, LayerInUse, LayerNotFound, UnsafeLayer
from imagesvc.layers import LayerStore, chain_id, chain_ids

ZSTD_MEDIA = "application/vnd.oci.image.layer.v1.tar+zstd"
GZIP_MEDIA = "application/vnd.oci.image.layer.v1.tar+gzip"


def tar(files: dict[str, bytes | None]) -> bytes:
    """A layer from ``{path: content}``; ``None`` content makes a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(text: str) -> Digest:
    return Digest("sha256", hashlib.sha256(text.encode()).hexdigest())


class NoRead(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        raise AssertionError("the stream of an existing layer must not be read")


def test_chain_ids() -> None:
    a, b, c = sha("a"), sha("b"), sha("c")
    ab = sha(f"{a} {b}")
    abc = sha(f"{ab} {c}")
    assert chain_id(None, a) == a
    assert chain_id(a, b) == ab
    assert chain_ids([a, b, c]) == [a, ab, abc]
    assert chain_ids([]) == []


def test_chain_id_known_vector() -> None:
    # Two well-known diff IDs (busybox-like) and the chain ID the spec's formula gives.
    first = Digest.parse("sha256:" + "1" * 64)
    second = Digest.parse("sha256:" + "2" * 64)
    expected = hashlib.sha256(f"sha256:{'1' * 64} sha256:{'2' * 64}".encode()).hexdigest()
    assert chain_ids([first, second])[1].hex == expected


@pytest.fixture
def stores(tmp_path: Path) -> tuple[ContentStore, LayerStore]:
    return ContentStore(tmp_path / "content"), LayerStore(tmp_path / "layers")


def test_add_from_blob_and_lookup(stores: tuple[ContentStore, LayerStore]) -> None:
    content, layers = stores
    raw0, raw1 = tar({"a": b"0", "d": None}), tar({"b": b"1"})
    blob0 = content.write(gzip.compress(raw0))
    blob1 = content.write(zstandard.ZstdCompressor().compress(raw1))
    l0 = layers.add_from_blob(content, blob0, parent=None, media_type=GZIP_MEDIA)
    l1 = layers.add_from_blob(
        content, blob1, parent=l0.chain_id, diff_id=Digest.of(raw1), media_type=ZSTD_MEDIA
    )
    assert (l0.diff_id, l1.diff_id) == (Digest.of(raw0), Digest.of(raw1))
    assert [l0.chain_id, l1.chain_id] == chain_ids([l0.diff_id, l1.diff_id])
    assert (l0.parent, l1.parent) == (None, l0.chain_id)
    assert (l0.blob, l1.blob) == (blob0, blob1)
    assert l1.size == len(raw1)
    assert layers.has(l0.chain_id) and layers.has(l1.chain_id)
    assert layers.info(l1.chain_id) == l1
    assert (layers.path(l0.chain_id) / "a").read_bytes() == b"0"
    assert layers.path(l1.chain_id) == layers.root / "sha256" / l1.chain_id.hex / "diff"
    assert layers.lower_dirs(l1.chain_id) == [
        layers.path(l1.chain_id),
        layers.path(l0.chain_id),
    ]
    assert set(layers.list()) == {l0.chain_id, l1.chain_id}
    assert [e for e in os.listdir(layers.root) if e.startswith(".")] == []


def test_existing_layer_is_reused_without_reading(stores: tuple[ContentStore, LayerStore]) -> None:
    _, layers = stores
    raw = tar({"a": b"x"})
    first = layers.add(io.BytesIO(raw), parent=None)
    again = layers.add(io.BufferedReader(NoRead()), parent=None, diff_id=Digest.of(raw))
    assert again == first
    # Without a diff ID the stream must be read, but the result is still the same layer.
    assert layers.add(io.BytesIO(raw), parent=None) == first
    assert list(layers.list()) == [first.chain_id]


def test_missing_parent(stores: tuple[ContentStore, LayerStore]) -> None:
    _, layers = stores
    missing = sha("nope")
    with pytest.raises(LayerNotFound, match=missing.hex):
        layers.add(io.BytesIO(tar({"a": b""})), parent=missing)
    for call in (layers.path, layers.info, layers.lower_dirs):
        with pytest.raises(LayerNotFound):
            call(missing)
    assert not layers.has(missing)


def test_failed_adds_leave_nothing(stores: tuple[ContentStore, LayerStore]) -> None:
    _, layers = stores
    raw = tar({"a": b"x"})
    with pytest.raises(DigestMismatch):
        layers.add(io.BytesIO(raw), parent=None, diff_id=sha("other"))
    with pytest.raises(UnsafeLayer):
        layers.add(io.BytesIO(tar({"ok": b"", "../evil": b"x"})), parent=None)
    assert list(layers.list()) == []
    assert [p for p in layers.root.rglob("*") if not p.is_dir()] == []
    assert not (layers.root.parent / "evil").exists()


def test_remove(stores: tuple[ContentStore, LayerStore]) -> None:
    _, layers = stores
    base = layers.add(io.BytesIO(tar({"a": b"0"})), parent=None)
    top = layers.add(io.BytesIO(tar({"b": b"1"})), parent=base.chain_id)
    with pytest.raises(LayerInUse, match=top.chain_id.hex):
        layers.remove(base.chain_id)
    assert layers.remove(top.chain_id)
    assert not layers.remove(top.chain_id)
    assert layers.remove(base.chain_id)
    assert list(layers.list()) == []
    assert os.listdir(layers.root / "sha256") == []


def test_remove_stale_temporaries(stores: tuple[ContentStore, LayerStore]) -> None:
    _, layers = stores
    assert layers.remove_stale_temporaries() == 0
    kept = layers.add(io.BytesIO(tar({"a": b""})), parent=None)
    (layers.root / ".tmp-crashed/diff").mkdir(parents=True)
    (layers.root / ".trash-crashed").mkdir()
    assert layers.remove_stale_temporaries() == 2
    assert sorted(os.listdir(layers.root)) == ["sha256"]
    assert layers.has(kept.chain_id)


def test_concurrent_adds_of_the_same_layer(stores: tuple[ContentStore, LayerStore]) -> None:
    _, layers = stores
    raw = tar({f"f{i}": os.urandom(1000) for i in range(200)})
    results: list[Digest] = []
    errors: list[BaseException] = []

    def add() -> None:
        try:
            results.append(layers.add(io.BytesIO(raw), parent=None).chain_id)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(results) == {Digest.of(raw)}
    assert sorted(os.listdir(layers.root)) == ["sha256"]
    assert len(os.listdir(layers.path(Digest.of(raw)))) == 200


# --- overlayfs over real unpacked layers -------------------------------------------------

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
MNT_DETACH = 2


def mount_overlay(target: Path, options: str) -> None:
    if _libc.mount(b"overlay", os.fsencode(target), b"overlay", 0, options.encode()) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount overlay on {target}: {os.strerror(code)}")


def umount(target: Path) -> None:
    if _libc.umount2(os.fsencode(target), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"umount {target}: {os.strerror(code)}")


def test_overlay_merges_layers_with_whiteouts(
    tmp_path: Path, stores: tuple[ContentStore, LayerStore]
) -> None:
    content, layers = stores
    lower = tar(
        {
            "etc": None,
            "etc/passwd": b"root:x:0:0\n",
            "etc/hosts": b"127.0.0.1\n",
            "var": None,
            "var/cache": None,
            "var/cache/old1": b"1",
            "var/cache/old2": b"2",
            "keep": None,
            "keep/x": b"x",
            "gone": b"bye",
        }
    )
    upper = tar(
        {
            "etc": None,
            "etc/.wh.hosts": b"",
            ".wh.gone": b"",
            "var/cache": None,
            "var/cache/.wh..wh..opq": b"",
            "var/cache/new": b"n",
            "added": b"a",
        }
    )
    base = layers.add_from_blob(content, content.write(gzip.compress(lower)), parent=None)
    top = layers.add_from_blob(
        content,
        content.write(zstandard.ZstdCompressor().compress(upper)),
        parent=base.chain_id,
        diff_id=Digest.of(upper),
    )
    assert stat.S_ISCHR((layers.path(top.chain_id) / "gone").lstat().st_mode)

    merged, work, rw = tmp_path / "merged", tmp_path / "work", tmp_path / "upper"
    for folder in (merged, work, rw):
        folder.mkdir()
    lowerdir = ":".join(str(p) for p in layers.lower_dirs(top.chain_id))
    try:
        mount_overlay(merged, f"lowerdir={lowerdir},upperdir={rw},workdir={work}")
    except OSError as err:
        if err.errno == errno.EPERM:
            print(f"skipping: overlay mount not permitted here ({err})")
            pytest.skip(f"overlay mount not permitted: {err}")
        raise
    try:
        assert sorted(os.listdir(merged)) == ["added", "etc", "keep", "var"]
        assert sorted(os.listdir(merged / "etc")) == ["passwd"]
        assert (merged / "etc/passwd").read_bytes() == b"root:x:0:0\n"
        assert sorted(os.listdir(merged / "var/cache")) == ["new"]
        assert (merged / "keep/x").read_bytes() == b"x"
        assert (merged / "added").read_bytes() == b"a"
        # Writes land in the container's upper dir, never in the shared layers.
        (merged / "keep/x").write_bytes(b"changed")
        (merged / "etc/passwd").unlink()
        assert (layers.path(base.chain_id) / "keep/x").read_bytes() == b"x"
        assert (layers.path(base.chain_id) / "etc/passwd").exists()
        assert (rw / "keep/x").read_bytes() == b"changed"
    finally:
        umount(merged)
    assert not os.path.ismount(merged)
    assert layers.remove(top.chain_id)
    assert layers.remove(base.chain_id)
