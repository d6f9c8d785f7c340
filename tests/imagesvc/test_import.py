"""Registry-less import: OCI image layouts (directory or tar) and docker-archive tars."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri.state import StateDB
from critest import images as ci
from imagesvc.errors import DigestMismatch
from imagesvc.importer import InvalidArchive
from imagesvc.manager import ImageManager

NAME = "registry.example.com/team/app"


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[ImageManager]:
    db = StateDB(tmp_path / "state.db")
    yield ImageManager(tmp_path / "images", db)
    db.close()


def _nothing_stored(manager: ImageManager) -> None:
    assert list(manager.content.list()) == []
    assert list(manager.layers.list()) == []
    assert manager.images.all() == []


def test_oci_layout_directory_with_an_index(manager: ImageManager, tmp_path: Path) -> None:
    amd = ci.busybox_image(extra_layers=[[ci.file("etc/imported", "yes")]])
    arm = ci.busybox_image(platform=ci.Platform(architecture="arm64"))
    plain = ci.busybox_image(ci.RunConfig(user="1002"), compression="zstd")
    layout = tmp_path / "layout"
    ci.write_oci_layout(
        str(layout), {f"{NAME}:multi": ci.build_index([arm, amd]), f"{NAME}:plain": plain}
    )

    multi, single = manager.import_archive(layout)

    assert str(multi.id) == amd.id and multi.repo_tags == (f"{NAME}:multi",)
    assert str(single.id) == plain.id and single.uid_and_username() == (1002, "")
    top = manager.layers.path(multi.layers[-1])
    assert (top / "etc/imported").read_text() == "yes"
    found = manager.find(f"{NAME}:plain")
    assert found is not None and found.id == single.id


def test_oci_layout_as_a_tar(manager: ImageManager, tmp_path: Path) -> None:
    image = ci.busybox_image()
    layout = tmp_path / "layout"
    ci.write_oci_layout(str(layout), {f"{NAME}:v1": image})
    archive = tmp_path / "layout.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, str(path.relative_to(layout)), recursive=False)
    (record,) = manager.import_archive(archive)
    assert str(record.id) == image.id


def test_docker_archive(manager: ImageManager, tmp_path: Path) -> None:
    first = ci.busybox_image(compression="none")
    second = ci.busybox_image(extra_layers=[[ci.file("etc/second", "2")]], compression="gzip")
    archive = tmp_path / "saved.tar"
    archive.write_bytes(
        ci.docker_archive([(first, ["app:v1", "app:latest"]), (second, [f"{NAME}:v2"])])
    )

    one, two = manager.import_archive(archive)

    assert str(one.id) == first.id
    assert one.repo_tags == ("docker.io/library/app:v1", "docker.io/library/app:latest")
    assert str(two.id) == second.id and two.repo_tags == (f"{NAME}:v2",)
    assert one.layers[0] == two.layers[0]  # the shared base layer is one layer
    found = manager.find("app")
    assert found is not None and found.id == one.id


def test_corrupt_blob_is_rejected_and_leaves_nothing(manager: ImageManager, tmp_path: Path) -> None:
    image = ci.busybox_image(extra_layers=[[ci.file("etc/x", "x")]])
    layout = tmp_path / "layout"
    ci.write_oci_layout(str(layout), {f"{NAME}:v1": image})
    blob = layout / "blobs/sha256" / image.layers[1].digest[7:]
    data = bytearray(blob.read_bytes())
    data[-10] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch):
        manager.import_archive(layout)
    _nothing_stored(manager)


def test_what_is_not_an_archive_is_named(manager: ImageManager, tmp_path: Path) -> None:
    with pytest.raises(InvalidArchive, match="no such file"):
        manager.import_archive(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArchive, match="neither an OCI layout"):
        manager.import_archive(tmp_path / "empty")
    layout = tmp_path / "tag-only"
    ci.write_oci_layout(str(layout), {"v1": ci.busybox_image()})
    with pytest.raises(InvalidArchive, match="names no repository"):
        manager.import_archive(layout)
    _nothing_stored(manager)
