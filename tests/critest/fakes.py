"""A run-wide Env whose images and endpoint are never contacted, and a registry of cases
separate from the suite's, so framework tests run without any runtime."""

from __future__ import annotations

from pathlib import Path

from critest.fixture import Env
from critest.testimages import Pushed, TestImages


def _pushed(name: str) -> Pushed:
    return Pushed(
        f"127.0.0.1:1/critest/{name}", ("1.0",), "sha256:" + "a" * 64, "sha256:" + "b" * 64
    )


def fake_env(work_dir: Path) -> Env:
    images = TestImages(
        default=_pushed("busybox"),
        pause=_pushed("pause"),
        groups=_pushed("groups"),
        pull_tag=_pushed("pull-tag"),
        pull_no_tag=_pushed("pull-no-tag"),
        pull_digest=_pushed("pull-digest"),
        status_fields=_pushed("status-fields"),
        status_refs=_pushed("status-refs"),
        id_consistency=_pushed("id-consistency"),
        list_three=(_pushed("list"), _pushed("list"), _pushed("list")),
        two_tags=_pushed("two-tags"),
        remove_tags=_pushed("remove-tags"),
        container_id=_pushed("container-id"),
        mirrored=None,
    )
    # A socket path nobody serves: gRPC channels connect lazily, and no case here calls.
    return Env(f"unix://{work_dir}/nobody.sock", "", images, work_dir)
