"""runtime.rootfs.resolve: container paths resolved inside the rootfs, never outside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.rootfs import RootfsError, resolve


@pytest.fixture
def root(tmp_path: Path) -> str:
    (tmp_path / "etc").mkdir()
    (tmp_path / "usr" / "lib").mkdir(parents=True)
    (tmp_path / "lib").symlink_to("usr/lib")
    (tmp_path / "abs").symlink_to("/usr/lib")
    (tmp_path / "up").symlink_to("../../..")
    (tmp_path / "loop").symlink_to("loop")
    return str(tmp_path)


def test_plain_and_missing_components(root: str) -> None:
    assert resolve(root, "/etc") == os.path.join(root, "etc")
    assert resolve(root, "/etc/new/dir") == os.path.join(root, "etc/new/dir")
    assert resolve(root, "/") == root


def test_symlinks_are_followed_inside_the_rootfs(root: str) -> None:
    assert resolve(root, "/lib/x") == os.path.join(root, "usr/lib/x")
    # an absolute target starts again at the rootfs, as it would inside the container
    assert resolve(root, "/abs/x") == os.path.join(root, "usr/lib/x")


def test_escapes_and_loops_are_refused(root: str) -> None:
    with pytest.raises(RootfsError, match="escapes the container rootfs"):
        resolve(root, "/up/etc")
    with pytest.raises(RootfsError, match="too many levels of symbolic links"):
        resolve(root, "/loop/x")
