"""Image metadata: names, lookups of every kind, tag moves and what a crash leaves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from cri.state import StateDB
from imagesvc.digest import Digest
from imagesvc.errors import ImageNotFound, InvalidReference
from imagesvc.store import ImageRecord, ImageStore

REPO = "registry.example.com/team/app"


def _digest(n: int) -> Digest:
    return Digest.of(str(n).encode())


def _record(n: int, user: str = "") -> ImageRecord:
    return ImageRecord(
        id=_digest(n),
        repo_tags=(),
        repo_digests=(),
        manifest_digest=_digest(n + 100),
        config_media_type="application/vnd.oci.image.config.v1+json",
        layers=(_digest(n + 200),),
        blobs=(_digest(n + 100), _digest(n)),
        size=1234,
        user=user,
    )


@pytest.fixture
def db(tmp_path: Path) -> Any:
    state = StateDB(tmp_path / "state.db")
    yield state
    state.close()


def test_every_kind_of_reference_finds_the_same_image(db: StateDB) -> None:
    store = ImageStore(db)
    manifest = _digest(101)
    store.add(_record(1), [f"{REPO}:v1", f"{REPO}@{manifest}"])
    found = {
        text: store.find(text)
        for text in (
            f"{REPO}:v1",
            f"{REPO}@{manifest}",
            f"{REPO}:other@{manifest}",  # a tag beside a digest is ignored
            str(_digest(1)),
            _digest(1).hex,
            _digest(1).hex[:12],
        )
    }
    assert {r.id if r else None for r in found.values()} == {_digest(1)}
    assert store.find(_digest(1).hex[:11]) is None  # too short to be an ID prefix
    assert store.find(f"{REPO}:v2") is None
    with pytest.raises(ImageNotFound):
        store.resolve(f"{REPO}:v2")
    with pytest.raises(InvalidReference):
        store.find("Bad Reference")


def test_short_names_are_normalised(db: StateDB) -> None:
    store = ImageStore(db)
    store.add(_record(1), ["docker.io/library/busybox:latest"])
    found = store.find("busybox")
    assert found is not None and found.id == _digest(1)


def test_a_tag_moves_to_the_image_pulled_last(db: StateDB) -> None:
    store = ImageStore(db)
    store.add(_record(1), [f"{REPO}:latest", f"{REPO}:v1"])
    store.add(_record(2), [f"{REPO}:latest"])
    first, second = store.get(_digest(1)), store.get(_digest(2))
    assert first is not None and first.repo_tags == (f"{REPO}:v1",)
    assert second is not None and second.repo_tags == (f"{REPO}:latest",)
    reloaded = ImageStore(db)
    assert {r.id: r.repo_tags for r in reloaded.named()} == {
        _digest(1): (f"{REPO}:v1",),
        _digest(2): (f"{REPO}:latest",),
    }


def test_same_image_under_another_name_gains_a_tag(db: StateDB) -> None:
    store = ImageStore(db)
    store.add(_record(1), [f"{REPO}:v1"])
    merged = store.add(_record(1), [f"{REPO}:v2", f"{REPO}@{_digest(101)}"])
    assert merged.repo_tags == (f"{REPO}:v1", f"{REPO}:v2")
    assert merged.repo_digests == (f"{REPO}@{_digest(101)}",)
    assert len(store.named()) == 1


@dataclass
class _Record:
    id: str
    updated_ns: int
    document: dict[str, Any]


class _CrashedBetweenWrites:
    """Two records holding the same tag, as a crash between the two writes of a tag
    move leaves them."""

    def __init__(self) -> None:
        older, newer = _record(1), _record(2)
        tag = f"{REPO}:latest"
        self.records = [
            _Record(str(newer.id), 20, {**newer.to_document(), "repo_tags": [tag]}),
            _Record(str(older.id), 10, {**older.to_document(), "repo_tags": [tag]}),
        ]

    def put(self, kind: Literal["image"], id: str, state: str, document: dict[str, Any]) -> None:
        raise AssertionError("loading must not write")

    def list_kind(self, kind: Literal["image"]) -> list[_Record]:
        return self.records

    def delete(self, kind: Literal["image"], id: str) -> bool:
        raise AssertionError("loading must not write")


def test_a_name_left_on_two_images_belongs_to_the_newer() -> None:
    store = ImageStore(_CrashedBetweenWrites())
    found = store.find(f"{REPO}:latest")
    assert found is not None and found.id == _digest(2)
    assert [r.id for r in store.named()] == [_digest(2)]


@pytest.mark.parametrize(
    ("user", "uid", "username"),
    [
        ("1002", 1002, ""),
        ("www-data", None, "www-data"),
        ("1003:1004", 1003, ""),
        ("www-data:1004", None, "www-data"),
        ("", None, ""),
    ],
)
def test_uid_and_username_as_critest_expects(user: str, uid: int | None, username: str) -> None:
    assert _record(1, user).uid_and_username() == (uid, username)


def test_remove_forgets_every_name(db: StateDB) -> None:
    store = ImageStore(db)
    store.add(_record(1), [f"{REPO}:v1", f"{REPO}:v2"])
    removed = store.remove(_digest(1))
    assert removed is not None
    assert store.find(f"{REPO}:v1") is None and store.find(f"{REPO}:v2") is None
    assert store.remove(_digest(1)) is None
    assert ImageStore(db).named() == []
