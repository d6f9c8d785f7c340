"""The CRI ImageService of a real crisp daemon against a real registry on loopback."""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.request

import grpc
import pytest

from criapi import api_pb2 as pb
from critest import images as ci
from critest.registry import Registry, free_port
from tests.crisp_daemon import DaemonPaths, RunningDaemon, start_daemon, write_config


def _push(registry: Registry, image: ci.Image, *tags: str) -> str:
    repo = f"cri/app-{secrets.token_hex(4)}"
    ci.Pusher(registry.host).push_image(repo, image, *tags)
    return f"{registry.host}/{repo}"


def _pull(daemon: RunningDaemon, ref: str, **auth: str) -> str:
    request = pb.PullImageRequest(image=pb.ImageSpec(image=ref), auth=pb.AuthConfig(**auth))
    return daemon.image.PullImage(request).image_ref


def _status(daemon: RunningDaemon, ref: str, verbose: bool = False) -> pb.ImageStatusResponse:
    return daemon.image.ImageStatus(
        pb.ImageStatusRequest(image=pb.ImageSpec(image=ref), verbose=verbose)
    )


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()  # type: ignore[operator]
    return err.value.code()


def _fs_used(daemon: RunningDaemon) -> tuple[str, int, int]:
    (usage,) = daemon.image.ImageFsInfo(pb.ImageFsInfoRequest()).image_filesystems
    assert usage.timestamp > 0
    return usage.fs_id.mountpoint, usage.used_bytes.value, usage.inodes_used.value


def test_pull_status_list_remove(crisp: RunningDaemon, registry: Registry) -> None:
    image = ci.busybox_image(
        ci.RunConfig(user="1002", labels={"app": "crisp"}), [[ci.file("etc/app", "x")]]
    )
    repo = _push(registry, image, "v1", "v2")
    mountpoint, used_before, inodes_before = _fs_used(crisp)
    assert mountpoint == str(crisp.paths.root / "images")

    image_ref = _pull(crisp, f"{repo}:v1")
    assert _pull(crisp, f"{repo}:v2") == image_ref == image.id

    status = _status(crisp, f"{repo}:v1").image
    assert status.id == image_ref
    assert sorted(status.repo_tags) == [f"{repo}:v1", f"{repo}:v2"]
    assert list(status.repo_digests) == [f"{repo}@{image.digest}"]
    assert status.size > 0
    assert status.uid.value == 1002 and status.username == ""
    for ref in (f"{repo}:v2", f"{repo}@{image.digest}", image.id, image.id[7:], image.id[7:19]):
        assert _status(crisp, ref).image == status, ref
    verbose = json.loads(_status(crisp, image.id, verbose=True).info["info"])
    assert verbose["imageSpec"]["config"]["Labels"] == {"app": "crisp"}
    assert verbose["chainID"]

    listed = crisp.image.ListImages(pb.ListImagesRequest()).images
    assert [i.id for i in listed] == [image_ref]
    only = pb.ListImagesRequest(filter=pb.ImageFilter(image=pb.ImageSpec(image=f"{repo}:v2")))
    assert list(crisp.image.ListImages(only).images) == [status]
    streamed = [
        i for batch in crisp.image.StreamImages(pb.StreamImagesRequest()) for i in batch.images
    ]
    assert streamed == list(listed)

    _, used_after, inodes_after = _fs_used(crisp)
    assert used_after > used_before + 1_000_000 and inodes_after > inodes_before + 200

    # One tag removes the image with all its names, as containerd does.
    crisp.image.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=f"{repo}:v1")))
    assert not _status(crisp, f"{repo}:v2").HasField("image")
    assert not _status(crisp, image.id).HasField("image")
    assert crisp.image.ListImages(pb.ListImagesRequest()).images == []
    crisp.image.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=image.id)))
    assert _fs_used(crisp)[1] <= used_before + 64 * 1024


@pytest.mark.parametrize(
    ("user", "uid", "username"),
    [("1002", 1002, ""), ("www-data", None, "www-data"), ("1003:1004", 1003, ""),
     ("www-data:1004", None, "www-data")],
)  # fmt: skip
def test_uid_and_username(
    crisp: RunningDaemon, registry: Registry, user: str, uid: int | None, username: str
) -> None:
    repo = _push(registry, ci.busybox_image(ci.RunConfig(user=user)), "v1")
    _pull(crisp, f"{repo}:v1")
    status = _status(crisp, f"{repo}:v1").image
    assert status.HasField("uid") == (uid is not None)
    assert status.uid.value == (uid or 0)
    assert status.username == username


def test_pull_by_digest_has_no_tag(crisp: RunningDaemon, registry: Registry) -> None:
    image = ci.busybox_image(extra_layers=[[ci.file("etc/by-digest", "x")]])
    repo = _push(registry, image, "v1")
    ref = f"{repo}@{image.digest}"
    assert _pull(crisp, ref) == image.id
    status = _status(crisp, ref).image
    assert list(status.repo_tags) == []
    assert list(status.repo_digests) == [ref]


def test_errors_map_to_codes(crisp: RunningDaemon, registry: Registry) -> None:
    assert _code(lambda: _pull(crisp, "Not A Reference")) == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: _pull(crisp, f"{registry.host}/no/such:v1")) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: _status(crisp, "busybox@sha256:xyz")) == grpc.StatusCode.INVALID_ARGUMENT
    assert not _status(crisp, f"{registry.host}/no/such:v1").HasField("image")
    # Removing what is not there succeeds.
    crisp.image.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image="absent:v1")))


def test_pull_deadline_is_deadline_exceeded_and_leaves_nothing(
    crisp: RunningDaemon, registry: Registry
) -> None:
    image = ci.busybox_image(extra_layers=[[ci.file("etc/deadline", "x")]])
    repo = _push(registry, image, "v1")
    request = pb.PullImageRequest(image=pb.ImageSpec(image=f"{repo}:v1"))
    with pytest.raises(grpc.RpcError) as err:
        crisp.image.PullImage(request, timeout=0.001)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 10
    while _status(crisp, f"{repo}:v1").HasField("image") and time.monotonic() < deadline:
        time.sleep(0.05)  # a pull that completed just before the cancel is fine to keep
    blobs = crisp.paths.root / "images/content/blobs/sha256"
    leftovers = [p.name for p in blobs.iterdir()] if blobs.exists() else []
    assert [n for n in leftovers if n.startswith(".tmp-")] == []


def test_images_survive_a_daemon_restart(daemon_paths: DaemonPaths, registry: Registry) -> None:
    repo = _push(registry, ci.busybox_image(), "v1")
    daemon = start_daemon(daemon_paths)
    try:
        image_ref = _pull(daemon, f"{repo}:v1")
        before = daemon.image.ListImages(pb.ListImagesRequest()).images
    finally:
        assert daemon.stop() == 0
    daemon = start_daemon(daemon_paths)
    try:
        started = time.monotonic()
        after = daemon.image.ListImages(pb.ListImagesRequest()).images
        elapsed = time.monotonic() - started
        assert after == before and after[0].id == image_ref
        assert elapsed < 1.0
    finally:
        assert daemon.stop() == 0


def test_mirror_config_and_credentials(daemon_paths: DaemonPaths, registry: Registry) -> None:
    upstream = f"localhost:{free_port()}"  # nothing listens: only the mirror can answer
    image = ci.busybox_image(extra_layers=[[ci.file("etc/mirrored", "x")]])
    with Registry(basic_auth={"bob": "pw"}) as private:
        ci.Pusher(private.host, "bob", "pw").push_image("mirrored/team/app", image, "v1")
        write_config(
            daemon_paths,
            f'[registries."{upstream}"]\nmirrors = ["127.0.0.1:{free_port()}", '
            f'"{private.host}/mirrored"]\n'
            f'[registries."{private.host}"]\nusername = "bob"\npassword = "pw"\n',
        )
        daemon = start_daemon(daemon_paths)
        try:
            assert _pull(daemon, f"{upstream}/team/app:v1") == image.id
            with urllib.request.urlopen(f"http://{daemon.metrics_address}/metrics") as page:
                metrics = page.read().decode()
            pulled = re.search(r"^crisp_image_pull_bytes_total (\S+)$", metrics, re.M)
            assert pulled and float(pulled.group(1)) > 0
            assert re.search(r"^crisp_image_pulls_total 1\.0$", metrics, re.M)
            info = daemon.runtime.Status(pb.StatusRequest(verbose=True)).info
            registry_config = json.loads(info["config"])["registries"][private.host]
            assert registry_config == {
                "mirrors": [], "insecure": False, "ca_file": "", "username": "bob",
                "password": "<redacted>",
            }  # fmt: skip
            status = _status(daemon, f"{upstream}/team/app:v1").image
            assert list(status.repo_tags) == [f"{upstream}/team/app:v1"]
            # Request credentials through the CRI AuthConfig, straight to the registry.
            direct = f"{private.host}/mirrored/team/app:v1"
            assert _code(lambda: _pull(daemon, direct, username="bob", password="no")) == (
                grpc.StatusCode.UNKNOWN
            )
        finally:
            assert daemon.stop() == 0
