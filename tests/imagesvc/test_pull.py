"""Pulls against a real registry process (docker-registry on loopback) with images built
from busybox-static by critest.images."""

from __future__ import annotations

import os
import secrets
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri.state import StateDB
from critest import images as ci
from critest.registry import Registry, free_port
from imagesvc.auth import Credentials
from imagesvc.digest import Digest
from imagesvc.endpoints import RegistryHost
from imagesvc.errors import (
    AuthenticationFailed,
    DigestMismatch,
    RegistryNotFound,
    UnsafeLayer,
)
from imagesvc.manager import ImageManager
from imagesvc.registry import ClientOptions
from tests.imagesvc.token_server import TokenServer

FAST = ClientOptions(retries=1, backoff_seconds=0.01, connect_timeout=2, progress_timeout=5)


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with Registry() as r:
        yield r


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    state = StateDB(tmp_path / "state.db")
    yield state
    state.close()


def _manager(root: Path, db: StateDB, **kwargs: object) -> ImageManager:
    kwargs.setdefault("client_options", FAST)
    return ImageManager(root / "images", db, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def manager(tmp_path: Path, db: StateDB) -> ImageManager:
    return _manager(tmp_path, db)


def _repo() -> str:
    return f"test/app-{secrets.token_hex(4)}"


def _marker(text: str) -> list[ci.Entry]:
    return [ci.file(f"etc/marker-{text}", text)]


def _nothing_stored(manager: ImageManager) -> None:
    assert list(manager.content.list()) == []
    assert list(manager.layers.list()) == []
    assert manager.images.all() == []
    leftovers = [p for p in manager.root.rglob("*") if p.name.startswith((".tmp-", ".trash-"))]
    assert leftovers == []


def test_pull_by_tag_records_names_and_unpacks_layers(
    registry: Registry, manager: ImageManager
) -> None:
    repo = _repo()
    image = ci.busybox_image(
        ci.RunConfig(user="www-data"),
        [[ci.file("etc/hello", "hello\n"), ci.whiteout("home"), ci.opaque("var")]],
    )
    ci.Pusher(registry.host).push_image(repo, image, "v1")

    record = manager.pull(f"{registry.host}/{repo}:v1")

    assert str(record.id) == image.id
    assert record.repo_tags == (f"{registry.host}/{repo}:v1",)
    assert record.repo_digests == (f"{registry.host}/{repo}@{image.digest}",)
    assert record.size == image.manifest.size + image.config.size + sum(
        layer.size for layer in image.layers
    )
    assert record.uid_and_username() == (None, "www-data")
    base, top = (manager.layers.path(chain) for chain in record.layers)
    assert (base / "bin/busybox").stat().st_mode & 0o777 == 0o755
    assert os.readlink(base / "bin/sh") == "busybox"
    assert (top / "etc/hello").read_text() == "hello\n"
    whiteout = (top / "home").lstat()
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    assert os.getxattr(top / "var", "trusted.overlay.opaque") == b"y"
    assert manager.lower_dirs(record) == [top, base]
    config = manager.config_of(record)
    assert config.user == "www-data" and config.cmd == ("sh",)


def test_pull_without_tag_means_latest(registry: Registry, manager: ImageManager) -> None:
    repo = _repo()
    ci.Pusher(registry.host).push_image(repo, ci.busybox_image(), "latest")
    record = manager.pull(f"{registry.host}/{repo}")
    assert record.repo_tags == (f"{registry.host}/{repo}:latest",)


def test_pull_by_digest_adds_a_repo_digest_and_no_tag(
    registry: Registry, manager: ImageManager
) -> None:
    repo = _repo()
    image = ci.busybox_image(extra_layers=[_marker("digest")])
    ci.Pusher(registry.host).push_image(repo, image, "v1")
    record = manager.pull(f"{registry.host}/{repo}:ignored@{image.digest}")
    assert record.repo_tags == ()
    assert record.repo_digests == (f"{registry.host}/{repo}@{image.digest}",)
    # Pulling it again by tag adds the tag to the same image.
    again = manager.pull(f"{registry.host}/{repo}:v1")
    assert again.id == record.id and again.repo_tags == (f"{registry.host}/{repo}:v1",)
    assert len(manager.list_images()) == 1


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-list"])
def test_index_selects_the_host_platform_only(
    registry: Registry, manager: ImageManager, docker: bool
) -> None:
    repo = _repo()
    arm = ci.busybox_image(platform=ci.Platform(architecture="arm64", variant="v8"), docker=docker)
    amd = ci.busybox_image(extra_layers=[_marker("amd64")], docker=docker)
    index = ci.build_index([arm, amd], docker=docker)
    ci.Pusher(registry.host).push_index(repo, index, "multi")

    record = manager.pull(f"{registry.host}/{repo}:multi")

    assert str(record.id) == amd.id
    assert str(record.manifest_digest) == amd.digest
    # The repo digest is the index's, as containerd reports it.
    assert record.repo_digests == (f"{registry.host}/{repo}@{index.digest}",)
    fetched = {
        e.path.rsplit("/", 1)[1]
        for e in registry.access_log()
        if repo in e.path and e.method == "GET"
    }
    assert arm.digest not in fetched and arm.id not in fetched


@pytest.mark.parametrize(
    ("docker", "compression"),
    [
        (False, "gzip"),
        (False, "zstd"),
        (False, "none"),
        (True, "gzip"),
        (True, "none"),
    ],
)
def test_each_media_type(
    registry: Registry, manager: ImageManager, docker: bool, compression: ci.Compression
) -> None:
    repo = _repo()
    image = ci.busybox_image(
        extra_layers=[_marker(compression)], docker=docker, compression=compression
    )
    ci.Pusher(registry.host).push_image(repo, image, "v1")
    record = manager.pull(f"{registry.host}/{repo}:v1")
    assert str(record.id) == image.id
    top = manager.layers.path(record.layers[-1])
    assert (top / f"etc/marker-{compression}").read_text() == compression


def test_unknown_repository_or_tag_is_not_found(registry: Registry, manager: ImageManager) -> None:
    with pytest.raises(RegistryNotFound, match="not found"):
        manager.pull(f"{registry.host}/no/such-repo:v1")
    _nothing_stored(manager)


def test_digest_mismatch_is_rejected_and_leaves_nothing(
    registry: Registry, manager: ImageManager
) -> None:
    repo = _repo()
    image = ci.busybox_image(extra_layers=[_marker("corrupt")])
    ci.Pusher(registry.host).push_image(repo, image, "v1")
    served = registry.blob_path(image.layers[1].digest)
    data = bytearray(served.read_bytes())
    data[-20] ^= 0xFF  # same size, other bytes: only the digest can tell
    served.write_bytes(bytes(data))

    with pytest.raises(DigestMismatch, match=image.layers[1].digest):
        manager.pull(f"{registry.host}/{repo}:v1")
    _nothing_stored(manager)


@pytest.mark.parametrize(
    "entries",
    [
        [ci.directory("etc"), ci.symlink("etc/escape", "/"), ci.file("etc/escape/evil", "x")],
        [ci.directory("etc"), ci.file("etc/../../crisp-test-evil", "x")],
    ],
    ids=["escaping-symlink", "dot-dot"],
)
def test_layer_escaping_its_directory_is_rejected_and_leaves_nothing(
    registry: Registry, manager: ImageManager, entries: list[ci.Entry]
) -> None:
    repo = _repo()
    ci.Pusher(registry.host).push_image(repo, ci.build_image([entries]), "v1")
    with pytest.raises(UnsafeLayer):
        manager.pull(f"{registry.host}/{repo}:v1")
    _nothing_stored(manager)
    assert not Path("/evil").exists()
    assert not (manager.root.parent / "crisp-test-evil").exists()


def test_present_layers_are_not_fetched_again(registry: Registry, manager: ImageManager) -> None:
    repo = _repo()
    first = ci.busybox_image(extra_layers=[_marker("one")])
    second = ci.busybox_image(extra_layers=[_marker("two")])
    pusher = ci.Pusher(registry.host)
    pusher.push_image(repo, first, "one")
    pusher.push_image(repo, second, "two")
    base = first.layers[0].digest
    assert base == second.layers[0].digest

    manager.pull(f"{registry.host}/{repo}:one")
    manager.pull(f"{registry.host}/{repo}:two")

    assert registry.blob_downloads(base, repo) == 1
    assert manager.stats.layers_reused == 1


def test_concurrent_identical_pulls_share_one_download(
    registry: Registry, manager: ImageManager
) -> None:
    repo = _repo()
    # Incompressible, so the download lasts long enough for the pulls to overlap.
    big = ci.file("opt/big", os.urandom(48 << 20))
    image = ci.busybox_image(extra_layers=[[ci.directory("opt"), big]], compression="none")
    ci.Pusher(registry.host).push_image(repo, image, "v1")
    start = threading.Barrier(4)
    results: list[str] = []
    errors: list[BaseException] = []

    def pull() -> None:
        start.wait()
        try:
            results.append(str(manager.pull(f"{registry.host}/{repo}:v1").id))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert results == [image.id] * 4
    for layer in image.layers:
        assert registry.blob_downloads(layer.digest, repo) == 1
    assert manager.stats.bytes_fetched == sum(layer.size for layer in image.layers)


def test_remove_keeps_what_another_image_uses(registry: Registry, manager: ImageManager) -> None:
    repo = _repo()
    first = ci.busybox_image(extra_layers=[_marker("keep-one")])
    second = ci.busybox_image(extra_layers=[_marker("keep-two")])
    pusher = ci.Pusher(registry.host)
    pusher.push_image(repo, first, "one")
    pusher.push_image(repo, second, "two")
    one = manager.pull(f"{registry.host}/{repo}:one")
    two = manager.pull(f"{registry.host}/{repo}:two")

    assert manager.remove(f"{registry.host}/{repo}:one") is not None
    assert manager.find(str(one.id)) is None
    assert [manager.layers.has(c) for c in two.layers] == [True, True]
    assert not manager.layers.has(one.layers[1])
    assert manager.remove(str(one.id)) is None  # idempotent

    manager.remove(str(two.id))
    _nothing_stored(manager)


def test_images_survive_a_restart(
    registry: Registry, tmp_path: Path, db: StateDB, manager: ImageManager
) -> None:
    repo = _repo()
    ci.Pusher(registry.host).push_image(repo, ci.busybox_image(), "v1")
    record = manager.pull(f"{registry.host}/{repo}:v1")
    again = _manager(tmp_path, db)
    assert again.list_images() == [record]
    assert again.find(f"{registry.host}/{repo}:v1") == record


# --- authentication ------------------------------------------------------------------------


def test_basic_auth(tmp_path: Path, db: StateDB) -> None:
    manager = _manager(tmp_path, db)
    with Registry(basic_auth={"alice": "s3cret"}) as registry:
        ci.Pusher(registry.host, "alice", "s3cret").push_image("priv/app", ci.busybox_image(), "v1")
        ref = f"{registry.host}/priv/app:v1"
        with pytest.raises(AuthenticationFailed, match="none were given"):
            manager.pull(ref)
        with pytest.raises(AuthenticationFailed, match="401"):
            manager.pull(ref, Credentials("alice", "wrong"))
        auth = Credentials.from_auth_config(auth="YWxpY2U6czNjcmV0")  # alice:s3cret
        assert manager.pull(ref, auth).repo_tags == (ref,)
    _nothing_stored_but(manager, 1)


def _nothing_stored_but(manager: ImageManager, images: int) -> None:
    assert len(manager.images.all()) == images


def test_bearer_token_auth_with_token_cache(tmp_path: Path, db: StateDB) -> None:
    manager = _manager(tmp_path, db)
    with (
        TokenServer(tmp_path, {"alice": "s3cret"}) as tokens,
        Registry(token_auth=tokens.auth) as registry,
    ):
        pusher = ci.Pusher(registry.host, "alice", "s3cret")
        pusher.push_image("priv/app", ci.busybox_image(), "v1")
        pusher.push_image("priv/app", ci.busybox_image(extra_layers=[_marker("v2")]), "v2")
        ref = f"{registry.host}/priv/app"
        with pytest.raises(AuthenticationFailed, match="pull access denied"):
            manager.pull(f"{ref}:v1")
        with pytest.raises(AuthenticationFailed, match="refused"):
            manager.pull(f"{ref}:v1", Credentials("alice", "wrong"))
        asked = len(tokens.requests)
        manager.pull(f"{ref}:v1", Credentials("alice", "s3cret"))
        manager.pull(f"{ref}:v2", Credentials("alice", "s3cret"))
        # One token for both pulls: same realm, service, scope and credentials.
        assert len(tokens.requests) == asked + 1
        assert tokens.requests[-1]["scope"] == "repository:priv/app:pull"
        assert tokens.requests[-1]["service"] == tokens.auth.service

        # A registry token from the CRI AuthConfig goes straight to the registry.
        token = tokens._sign(
            "alice", [{"type": "repository", "name": "priv/app", "actions": ["pull"]}]
        )
        other = _manager(tmp_path / "other", db_for(tmp_path / "other"))
        asked = len(tokens.requests)
        record = other.pull(f"{ref}:v1", Credentials(registry_token=token))
        assert record.repo_tags == (f"{ref}:v1",)
        assert len(tokens.requests) == asked


def db_for(path: Path) -> StateDB:
    path.mkdir(parents=True, exist_ok=True)
    return StateDB(path / "state.db")


# --- mirrors -------------------------------------------------------------------------------


def test_mirror_with_path_prefix_after_a_dead_mirror(
    registry: Registry, tmp_path: Path, db: StateDB
) -> None:
    # The registry itself is a loopback port nobody listens on: only the mirror can serve.
    upstream = f"localhost:{free_port()}"
    dead_mirror = f"127.0.0.1:{free_port()}"
    image = ci.busybox_image(extra_layers=[_marker("mirrored")])
    ci.Pusher(registry.host).push_image(
        f"mirror/{upstream.replace(':', '-')}/team/app", image, "v1"
    )
    manager = _manager(
        tmp_path,
        db,
        registries={
            upstream: RegistryHost(
                mirrors=(dead_mirror, f"{registry.host}/mirror/{upstream.replace(':', '-')}")
            )
        },
    )

    record = manager.pull(f"{upstream}/team/app:v1")

    # Names are the ones asked for, never the mirror's.
    assert record.repo_tags == (f"{upstream}/team/app:v1",)
    assert record.repo_digests == (f"{upstream}/team/app@{image.digest}",)
    assert str(record.id) == image.id


def test_mirror_without_the_image_falls_back_to_the_next(
    registry: Registry, tmp_path: Path, db: StateDB
) -> None:
    repo = _repo()
    image = ci.busybox_image(extra_layers=[_marker("fallback")])
    ci.Pusher(registry.host).push_image(repo, image, "v1")
    with Registry() as empty_mirror:
        manager = _manager(
            tmp_path, db, registries={registry.host: RegistryHost(mirrors=(empty_mirror.host,))}
        )
        record = manager.pull(f"{registry.host}/{repo}:v1")
        assert str(record.id) == image.id
        asked_mirror = [e for e in empty_mirror.access_log() if repo in e.path]
        assert asked_mirror and asked_mirror[0].status == 404


def test_remove_while_in_use_keeps_the_layers_until_recovery(
    registry: Registry, tmp_path: Path, db: StateDB
) -> None:
    repo = _repo()
    ci.Pusher(registry.host).push_image(repo, ci.busybox_image(extra_layers=[_marker("use")]), "v1")
    in_use: set[Digest] = set()
    manager = _manager(tmp_path, db, layers_in_use=lambda: set(in_use))
    record = manager.pull(f"{registry.host}/{repo}:v1")
    in_use.update(record.layers)  # a container runs on the top layer and its parent

    assert manager.remove(f"{registry.host}/{repo}:v1") is not None
    assert manager.list_images() == []
    assert all(manager.layers.has(chain) for chain in record.layers)

    in_use.clear()  # the container is gone; the next start-up recovery frees the layers
    temporaries, blobs, layers = manager.recover()
    assert (temporaries, blobs, layers) == (0, 0, 2)
    _nothing_stored(manager)


def test_recovery_removes_what_a_crashed_pull_left(
    registry: Registry, tmp_path: Path, db: StateDB, manager: ImageManager
) -> None:
    repo = _repo()
    image = ci.busybox_image(extra_layers=[_marker("crash")])
    ci.Pusher(registry.host).push_image(repo, image, "v1")
    record = manager.pull(f"{registry.host}/{repo}:v1")
    # As if the daemon died after committing content but before recording the image.
    manager.images.remove(record.id)
    (manager.content.root / "blobs/sha256/.tmp-interrupted").write_bytes(b"partial")

    restarted = _manager(tmp_path, db)
    assert restarted.recover() == (1, 4, 2)
    _nothing_stored(restarted)


def test_identity_token_is_exchanged_at_the_realm(tmp_path: Path, db: StateDB) -> None:
    manager = _manager(tmp_path, db)
    with (
        TokenServer(tmp_path, {"alice": "s3cret"}, refresh_tokens={"refresh-1": "alice"}) as tokens,
        Registry(token_auth=tokens.auth) as registry,
    ):
        ci.Pusher(registry.host, "alice", "s3cret").push_image("priv/app", ci.busybox_image(), "v1")
        ref = f"{registry.host}/priv/app:v1"
        with pytest.raises(AuthenticationFailed, match="refused"):
            manager.pull(ref, Credentials(identity_token="stale"))
        assert manager.pull(ref, Credentials(identity_token="refresh-1")).repo_tags == (ref,)
        assert tokens.requests[-1]["grant_type"] == "refresh_token"
        assert tokens.requests[-1]["scope"] == "repository:priv/app:pull"
