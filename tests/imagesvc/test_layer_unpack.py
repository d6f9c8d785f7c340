from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import struct
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zstandard

from imagesvc.compression import Compression, detect_compression
from imagesvc.digest import Digest
from imagesvc.errors import DigestMismatch, InvalidLayer, UnsafeLayer
from imagesvc.unpack import unpack_layer

MTIME = 1_600_000_000
# A valid VFS_CAP_REVISION_2 value: effective, permitted = CAP_NET_RAW.
NET_RAW_CAP = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


@dataclass
class Entry:
    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = MTIME
    linkname: str = ""
    dev: tuple[int, int] = (0, 0)
    xattrs: dict[str, bytes] = field(default_factory=dict)


def d(
    name: str,
    mode: int = 0o755,
    *,
    uid: int = 0,
    gid: int = 0,
    mtime: int = MTIME,
    xattrs: dict[str, bytes] | None = None,
) -> Entry:
    return Entry(
        name, tarfile.DIRTYPE, mode=mode, uid=uid, gid=gid, mtime=mtime, xattrs=xattrs or {}
    )


def sym(name: str, target: str) -> Entry:
    return Entry(name, tarfile.SYMTYPE, mode=0o777, linkname=target)


def hard(name: str, target: str) -> Entry:
    return Entry(name, tarfile.LNKTYPE, linkname=target)


def tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.type
            info.mode = e.mode
            info.uid, info.gid = e.uid, e.gid
            info.mtime = e.mtime
            info.linkname = e.linkname
            info.devmajor, info.devminor = e.dev
            info.pax_headers = {
                f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                for k, v in e.xattrs.items()
            }
            if e.type == tarfile.REGTYPE:
                info.size = len(e.data)
                archive.addfile(info, io.BytesIO(e.data))
            else:
                archive.addfile(info)
    return buf.getvalue()


def compress(raw: bytes, how: Compression) -> bytes:
    if how is Compression.GZIP:
        return gzip.compress(raw)
    if how is Compression.ZSTD:
        return zstandard.ZstdCompressor().compress(raw)
    return raw


def unpack(
    raw: bytes,
    target: Path,
    *,
    media_type: str | None = None,
    expected_diff_id: Digest | None = None,
) -> Digest:
    result = unpack_layer(
        io.BytesIO(raw), target, media_type=media_type, expected_diff_id=expected_diff_id
    )
    return result.diff_id


def xattr(path: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def leftovers(parent: Path, *keep: str) -> list[str]:
    return sorted(set(os.listdir(parent)) - set(keep))


# --- what gets unpacked, and how faithfully --------------------------------------------


def test_unpacks_every_entry_type_with_metadata(tmp_path: Path) -> None:
    raw = tar(
        [
            d("./", mode=0o755),
            d("etc", mode=0o750, uid=5, gid=6, mtime=MTIME - 100),
            Entry("etc/hosts", data=b"127.0.0.1 localhost\n", uid=1000, gid=1001),
            Entry(
                "bin/ping",
                data=b"\x7fELF",
                mode=0o4755,
                uid=0,
                gid=0,
                xattrs={"security.capability": NET_RAW_CAP},
            ),
            Entry("usr/bin/sudo", data=b"x", mode=0o6755, uid=1000, gid=1000),
            d("tmp", mode=0o1777),
            sym("etc/localtime", "/usr/share/zoneinfo/UTC"),
            sym("lib", "usr/lib"),
            hard("etc/hosts.link", "etc/hosts"),
            Entry("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
            Entry("dev/loop0", tarfile.BLKTYPE, mode=0o660, gid=6, dev=(7, 0)),
            Entry("run/fifo", tarfile.FIFOTYPE, mode=0o620),
            Entry("data", data=b"v", xattrs={"user.note": b"hello", "trusted.x": b"\xff\x00"}),
        ]
    )
    target = tmp_path / "layer"
    result = unpack_layer(io.BytesIO(raw), target)
    assert result.diff_id == Digest("sha256", hashlib.sha256(raw).hexdigest())
    assert result.size == len(raw)
    assert result.compression is Compression.NONE

    hosts = (target / "etc/hosts").lstat()
    assert (target / "etc/hosts").read_bytes() == b"127.0.0.1 localhost\n"
    assert (hosts.st_uid, hosts.st_gid, stat.S_IMODE(hosts.st_mode)) == (1000, 1001, 0o644)
    assert hosts.st_mtime == MTIME
    assert hosts.st_nlink == 2
    assert (target / "etc/hosts.link").lstat().st_ino == hosts.st_ino

    etc = (target / "etc").lstat()
    assert (stat.S_IMODE(etc.st_mode), etc.st_uid, etc.st_gid) == (0o750, 5, 6)
    assert etc.st_mtime == MTIME - 100  # restored after its children were written
    assert stat.S_IMODE((target / "tmp").lstat().st_mode) == 0o1777
    assert stat.S_IMODE(target.lstat().st_mode) == 0o755
    assert target.lstat().st_mtime == MTIME

    assert stat.S_IMODE((target / "bin/ping").lstat().st_mode) == 0o4755
    assert xattr(target / "bin/ping", "security.capability") == NET_RAW_CAP
    sudo = (target / "usr/bin/sudo").lstat()
    assert (stat.S_IMODE(sudo.st_mode), sudo.st_uid) == (0o6755, 1000)
    assert stat.S_IMODE((target / "bin").lstat().st_mode) == 0o755  # implicit parent

    assert os.readlink(target / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert (target / "etc/localtime").lstat().st_mtime == MTIME
    assert os.readlink(target / "lib") == "usr/lib"

    null = (target / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1
    assert os.minor(null.st_rdev) == 3 and stat.S_IMODE(null.st_mode) == 0o666
    loop = (target / "dev/loop0").lstat()
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 0)
    assert loop.st_gid == 6
    assert stat.S_ISFIFO((target / "run/fifo").lstat().st_mode)

    assert xattr(target / "data", "user.note") == b"hello"
    assert xattr(target / "data", "trusted.x") == b"\xff\x00"
    assert leftovers(tmp_path) == ["layer"]


@pytest.mark.parametrize("how", list(Compression))
def test_compressions_give_same_diff_id(tmp_path: Path, how: Compression) -> None:
    raw = tar([Entry("a", data=b"A" * 100_000), d("b"), Entry("b/c", data=b"C")])
    blob = compress(raw, how)
    assert detect_compression(blob[:6]) is how
    result = unpack_layer(io.BytesIO(blob), tmp_path / "l")
    assert result.compression is how
    assert result.diff_id == Digest.of(raw)
    assert (tmp_path / "l/a").read_bytes() == b"A" * 100_000
    assert (tmp_path / "l/b/c").read_bytes() == b"C"


def test_multi_frame_zstd_and_multi_member_gzip(tmp_path: Path) -> None:
    raw = tar([Entry("a", data=os.urandom(70_000))])
    half = len(raw) // 2
    cctx = zstandard.ZstdCompressor()
    zst = cctx.compress(raw[:half]) + cctx.compress(raw[half:])
    gz = gzip.compress(raw[:half]) + gzip.compress(raw[half:])
    assert unpack(zst, tmp_path / "z") == Digest.of(raw)
    assert unpack(gz, tmp_path / "g") == Digest.of(raw)


def test_magic_wins_over_media_type(tmp_path: Path) -> None:
    raw = tar([Entry("a", data=b"x")])
    media = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert unpack(raw, tmp_path / "l", media_type=media) == Digest.of(raw)


def test_unsupported_media_type_and_codec(tmp_path: Path) -> None:
    raw = tar([Entry("a")])
    with pytest.raises(InvalidLayer, match="unsupported layer media type"):
        unpack(raw, tmp_path / "l", media_type="application/vnd.oci.image.layer.v1.tar+bzip2")
    with pytest.raises(InvalidLayer, match="bzip2"):
        unpack(b"BZh91AY&SY" + raw, tmp_path / "l")
    assert leftovers(tmp_path) == []


def test_expected_diff_id(tmp_path: Path) -> None:
    raw = tar([Entry("a", data=b"x")])
    gz = gzip.compress(raw)
    assert unpack(gz, tmp_path / "ok", expected_diff_id=Digest.of(raw)) == Digest.of(raw)
    with pytest.raises(DigestMismatch, match="layer diff ID mismatch"):
        unpack(gz, tmp_path / "bad", expected_diff_id=Digest.of(gz))
    assert leftovers(tmp_path) == ["ok"]


def test_target_must_not_exist(tmp_path: Path) -> None:
    (tmp_path / "l").mkdir()
    with pytest.raises(FileExistsError):
        unpack(tar([Entry("a")]), tmp_path / "l")
    assert leftovers(tmp_path) == ["l"]
    assert os.listdir(tmp_path / "l") == []


def test_later_entries_replace_earlier_ones(tmp_path: Path) -> None:
    raw = tar(
        [
            Entry("f", data=b"old"),
            Entry("f", data=b"new"),
            d("was_dir"),
            Entry("was_dir/child", data=b"c"),
            Entry("was_dir", data=b"now a file"),
            Entry("was_file", data=b"x"),
            d("was_file", mode=0o711),
            d("keep"),
            Entry("keep/child", data=b"c"),
            d("keep", mode=0o700),
            sym("s", "/nowhere"),
            Entry("s", data=b"real"),
        ]
    )
    target = tmp_path / "l"
    unpack(raw, target)
    assert (target / "f").read_bytes() == b"new"
    assert (target / "was_dir").read_bytes() == b"now a file"
    assert stat.S_IMODE((target / "was_file").lstat().st_mode) == 0o711
    assert (target / "keep/child").read_bytes() == b"c"
    assert stat.S_IMODE((target / "keep").lstat().st_mode) == 0o700
    assert (target / "s").read_bytes() == b"real"


def test_non_utf8_names_and_large_files(tmp_path: Path) -> None:
    name = b"caf\xe9".decode("utf-8", "surrogateescape")
    payload = os.urandom(3 << 20)
    unpack(gzip.compress(tar([Entry(name, data=payload)])), tmp_path / "l")
    assert os.listdir(os.fsencode(tmp_path / "l")) == [b"caf\xe9"]
    assert (tmp_path / "l" / name).read_bytes() == payload


# --- whiteouts ---------------------------------------------------------------------------


def is_overlay_whiteout(path: Path) -> bool:
    st = path.lstat()
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    raw = tar(
        [
            Entry(".wh.gone"),
            d("etc"),
            Entry("etc/.wh.passwd"),
            Entry("deep/er/.wh.x"),  # parents created implicitly
            d("opaque"),
            Entry("opaque/.wh..wh..opq"),
            Entry("opaque/kept", data=b"k"),
            Entry(".wh..wh.plnk"),  # aufs bookkeeping: ignored
            Entry("plain", xattrs={"trusted.overlay.opaque": b"y"}),  # forged: dropped
            d("forged", xattrs={"trusted.overlay.redirect": b"/etc"}),
        ]
    )
    target = tmp_path / "l"
    unpack(raw, target)
    assert is_overlay_whiteout(target / "gone")
    assert is_overlay_whiteout(target / "etc/passwd")
    assert is_overlay_whiteout(target / "deep/er/x")
    assert not (target / ".wh.gone").exists()
    assert xattr(target / "opaque", "trusted.overlay.opaque") == b"y"
    assert (target / "opaque/kept").read_bytes() == b"k"
    assert sorted(os.listdir(target / "opaque")) == ["kept"]
    assert not os.path.lexists(target / ".wh..wh.plnk")
    assert xattr(target / "plain", "trusted.overlay.opaque") is None
    assert xattr(target / "forged", "trusted.overlay.redirect") is None
    assert xattr(target / "etc", "trusted.overlay.opaque") is None


@pytest.mark.parametrize("whiteout_first", [True, False])
def test_whiteout_never_hides_same_layer_entry(tmp_path: Path, whiteout_first: bool) -> None:
    entries = [Entry(".wh.f"), Entry("f", data=b"mine")]
    dir_entries = [Entry(".wh.dd"), d("dd"), Entry("dd/x", data=b"x")]
    if not whiteout_first:
        entries.reverse()
        dir_entries = [d("dd"), Entry("dd/x", data=b"x"), Entry(".wh.dd")]
    target = tmp_path / "l"
    unpack(tar(entries + dir_entries + [Entry(".wh.p"), Entry("p/child", data=b"c")]), target)
    assert (target / "f").read_bytes() == b"mine"
    assert (target / "dd/x").read_bytes() == b"x"
    assert (target / "p/child").read_bytes() == b"c"


@pytest.mark.parametrize("name", [".wh.", "a/.wh..", "a/.wh..."])
def test_invalid_whiteout_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafeLayer, match="whiteout"):
        unpack(tar([Entry(name)]), tmp_path / "l")
    assert leftovers(tmp_path) == []


# --- hostile archives ----------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the target that no layer may touch."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret").write_bytes(b"untouched")
    return folder


def assert_untouched(tmp_path: Path, outside: Path) -> None:
    assert leftovers(tmp_path) == ["outside"]
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_bytes() == b"untouched"


@pytest.mark.parametrize(
    ("entries", "bad", "reason"),
    [
        ([Entry("../outside/evil", data=b"x")], "../outside/evil", "contains '..'"),
        ([Entry("a/../../outside/evil")], "a/../../outside/evil", "contains '..'"),
        ([d("ok"), Entry("ok/..")], "ok/..", "contains '..'"),
        ([Entry("/abs", data=b"x")], "/abs", "absolute path"),
        ([sym("..", "/")], "..", "contains '..'"),
        ([Entry("f"), hard("l", "../outside/secret")], "l", "contains '..'"),
        ([hard("l", "../../x")], "l", "contains '..'"),
        ([hard("l", "/etc/passwd")], "l", "absolute"),
        ([d("dir"), hard("l", "dir")], "l", "hardlink to directory"),
        ([hard("l", ".")], "l", "layer root"),
        ([Entry("f"), Entry("./", data=b"")], "./", "must be a directory"),
    ],
)
def test_rejects_paths_leaving_the_layer(
    tmp_path: Path, outside: Path, entries: list[Entry], bad: str, reason: str
) -> None:
    raw = tar([Entry("first", data=b"written before the bad entry"), *entries])
    with pytest.raises(UnsafeLayer, match=reason) as info:
        unpack(raw, tmp_path / "layer")
    assert info.value.entry == bad
    assert repr(bad) in str(info.value)
    assert_untouched(tmp_path, outside)


def test_symlink_parent_pointing_outside(tmp_path: Path, outside: Path) -> None:
    raw = tar([sym("a", str(outside)), Entry("a/secret", data=b"pwned")])
    with pytest.raises(UnsafeLayer, match="parent 'a' is a symlink") as info:
        unpack(raw, tmp_path / "layer")
    assert info.value.entry == "a/secret"
    assert_untouched(tmp_path, outside)


def test_relative_symlink_parent_escape(tmp_path: Path, outside: Path) -> None:
    raw = tar([d("x"), sym("x/up", "../../outside"), Entry("x/up/evil", data=b"pwned")])
    with pytest.raises(UnsafeLayer, match="parent 'x/up' is a symlink"):
        unpack(raw, tmp_path / "layer")
    assert_untouched(tmp_path, outside)


def test_symlink_to_etc_then_passwd(tmp_path: Path) -> None:
    # The payload equals the real file, so even a regression could not damage the host;
    # the inode check is what would catch it.
    passwd = Path("/etc/passwd")
    before = passwd.stat()
    raw = tar([sym("a", "/etc"), Entry("a/passwd", data=passwd.read_bytes())])
    with pytest.raises(UnsafeLayer, match="'a/passwd'"):
        unpack(raw, tmp_path / "layer")
    after = passwd.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert leftovers(tmp_path) == []


def test_hardlink_through_symlink(tmp_path: Path, outside: Path) -> None:
    raw = tar([sym("o", str(outside)), hard("stolen", "o/secret")])
    with pytest.raises(UnsafeLayer, match="parent 'o' is a symlink") as info:
        unpack(raw, tmp_path / "layer")
    assert info.value.entry == "stolen"
    assert_untouched(tmp_path, outside)
    assert os.stat(outside / "secret").st_nlink == 1


def test_symlinks_are_created_not_followed(tmp_path: Path, outside: Path) -> None:
    # Absolute and escaping symlinks are legal content; they only mean something inside
    # the container's root, and nothing here writes through them.
    raw = tar(
        [
            sym("abs", str(outside / "secret")),
            sym("rel", "../outside/secret"),
            Entry("abs", data=b"replaces the link, not its target"),
            hard("samelink", "rel"),
        ]
    )
    unpack(raw, tmp_path / "layer")
    assert (tmp_path / "layer/abs").read_bytes() == b"replaces the link, not its target"
    assert os.readlink(tmp_path / "layer/samelink") == "../outside/secret"
    assert (outside / "secret").read_bytes() == b"untouched"


def test_hardlink_to_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidLayer, match="not in the layer"):
        unpack(tar([hard("l", "missing")]), tmp_path / "l")
    with pytest.raises(InvalidLayer, match="missing directory 'nodir'"):
        unpack(tar([hard("l", "nodir/missing")]), tmp_path / "l")
    assert leftovers(tmp_path) == []


def test_parent_is_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidLayer, match="parent 'f' is not a directory"):
        unpack(tar([Entry("f"), Entry("f/x")]), tmp_path / "l")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("how", list(Compression))
def test_truncated_archive_leaves_nothing(tmp_path: Path, how: Compression) -> None:
    raw = tar([Entry("a", data=os.urandom(50_000)), Entry("b", data=b"b")])
    blob = compress(raw, how)
    with pytest.raises(InvalidLayer, match="corrupt layer archive"):
        unpack(blob[: len(blob) // 2], tmp_path / "l")
    assert leftovers(tmp_path) == []


def test_garbage_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidLayer):
        unpack(b"\x1f\x8b" + os.urandom(4000), tmp_path / "l")
    with pytest.raises(InvalidLayer):
        unpack(b"\x28\xb5\x2f\xfd" + os.urandom(4000), tmp_path / "l")
    assert leftovers(tmp_path) == []


def test_empty_archive(tmp_path: Path) -> None:
    raw = tar([])
    result = unpack_layer(io.BytesIO(raw), tmp_path / "l")
    assert result.diff_id == Digest.of(raw)
    assert os.listdir(tmp_path / "l") == []


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([sym("s", "")], "layer entry 's'"),
        ([Entry("n" * 300)], "File name too long"),
        ([Entry("odd", b"Z")], "unsupported tar type"),
    ],
)
def test_entries_the_filesystem_refuses(tmp_path: Path, entries: list[Entry], reason: str) -> None:
    with pytest.raises(InvalidLayer, match=reason):
        unpack(tar([Entry("ok"), *entries]), tmp_path / "l")
    assert leftovers(tmp_path) == []


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_no_descriptor_leaks(tmp_path: Path, outside: Path) -> None:
    good = tar([d("a"), d("a/b"), Entry("a/b/f", data=b"x"), Entry(".wh.w"), hard("h", "a/b/f")])
    bad = tar([d("a"), Entry("a/f"), sym("s", str(outside)), Entry("s/x")])
    before = open_fds()
    unpack(gzip.compress(good), tmp_path / "good")
    with pytest.raises(UnsafeLayer):
        unpack(zstandard.ZstdCompressor().compress(bad), tmp_path / "bad")
    with pytest.raises(InvalidLayer):
        unpack(tar([hard("x", "a/nothing")]), tmp_path / "bad")
    assert open_fds() == before


def test_unpacks_from_a_pipe(tmp_path: Path) -> None:
    # Registry responses are not seekable; nothing may rely on seek or tell.
    raw = tar([Entry(f"f{i}", data=os.urandom(10_000)) for i in range(50)])
    blob = gzip.compress(raw)
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as sink:
            sink.write(blob)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        with os.fdopen(read_fd, "rb", buffering=0) as source:
            result = unpack_layer(source, tmp_path / "l")
    finally:
        feeder.join()
    assert result.diff_id == Digest.of(raw)
    assert len(os.listdir(tmp_path / "l")) == 50
