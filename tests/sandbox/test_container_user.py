from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.container_user import ProcessUser, resolve_user
from sandbox.errors import InvalidArgument


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "www:x:33:33:www:/var/www:/bin/sh\n"
        "alice:x:1000:1000::/home/alice:/bin/sh\n"
    )
    (etc / "group").write_text(
        "root:x:0:\nwww:x:33:\nalice:x:1000:\nwheel:x:10:alice,bob\nvideo:x:44:alice\n"
    )
    return tmp_path


def resolve(rootfs: Path, **kwargs: object) -> ProcessUser:
    defaults: dict[str, object] = {
        "image_user": "",
        "run_as_user": None,
        "run_as_group": None,
        "run_as_username": "",
        "supplemental_groups": (),
        "policy": "merge",
    }
    defaults.update(kwargs)
    return resolve_user(rootfs, **defaults)  # type: ignore[arg-type]


def test_default_is_root(rootfs: Path) -> None:
    assert resolve(rootfs) == ProcessUser(0, 0, (0,), "root")


def test_image_user_by_name_and_group(rootfs: Path) -> None:
    assert resolve(rootfs, image_user="www").uid == 33
    user = resolve(rootfs, image_user="alice:video")
    assert (user.uid, user.gid) == (1000, 44)
    assert resolve(rootfs, image_user="5000:6000") == ProcessUser(5000, 6000, (6000,), "")


def test_image_user_unknown_is_invalid(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument, match="'nobody' not found"):
        resolve(rootfs, image_user="nobody")


def test_run_as_user_overrides_image_and_takes_passwd_gid(rootfs: Path) -> None:
    user = resolve(rootfs, image_user="www", run_as_user=1000)
    assert (user.uid, user.gid, user.username) == (1000, 1000, "alice")


def test_run_as_unknown_uid_gets_gid_zero(rootfs: Path) -> None:
    assert resolve(rootfs, run_as_user=4321) == ProcessUser(4321, 0, (0,), "")


def test_run_as_username(rootfs: Path) -> None:
    assert resolve(rootfs, run_as_username="www").uid == 33
    with pytest.raises(InvalidArgument, match="user 'mallory' not found"):
        resolve(rootfs, run_as_username="mallory")


def test_run_as_group(rootfs: Path) -> None:
    assert resolve(rootfs, run_as_user=1000, run_as_group=44).gid == 44
    with pytest.raises(InvalidArgument, match="run_as_group is set without run_as_user"):
        resolve(rootfs, run_as_group=44)


def test_supplemental_groups_merge_with_image_groups(rootfs: Path) -> None:
    user = resolve(rootfs, run_as_user=1000, supplemental_groups=(1234,))
    assert user.additional_gids == (1000, 10, 44, 1234)


def test_supplemental_groups_strict_ignores_image_groups(rootfs: Path) -> None:
    user = resolve(rootfs, run_as_user=1000, supplemental_groups=(1234,), policy="strict")
    assert user.additional_gids == (1000, 1234)


def test_symlinked_passwd_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(InvalidArgument, match="not found"):
        resolve(tmp_path, run_as_username="root")
