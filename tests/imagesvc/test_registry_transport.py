"""Transport behaviour against a scriptable loopback registry: progress timeout, retries
on 5xx and never on 4xx, redirects that must not carry Authorization to another host."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from cri.state import StateDB
from critest import images as ci
from imagesvc.auth import Credentials
from imagesvc.endpoints import Endpoint, Endpoints, RegistryHost
from imagesvc.errors import PullTimeout, RegistryError, RegistryUnavailable
from imagesvc.manager import ImageManager
from imagesvc.reference import parse_reference
from imagesvc.registry import ClientOptions, RegistryClient, RepositoryClient
from tests.imagesvc.fake_registry import FakeRegistry, send
from tests.imagesvc.token_server import TokenServer

REPO = "team/app"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    state = StateDB(tmp_path / "state.db")
    yield state
    state.close()


@pytest.fixture(scope="module")
def image() -> ci.Image:
    return ci.busybox_image(extra_layers=[[ci.file("etc/fake", "fake")]])


def _manager(tmp_path: Path, db: StateDB, **options: float) -> ImageManager:
    settings = {"retries": 2, "backoff_seconds": 0.01, "progress_timeout": 5.0, **options}
    return ImageManager(
        tmp_path / "images",
        db,
        client_options=ClientOptions(**settings),  # type: ignore[arg-type]
    )


def _assert_nothing_stored(manager: ImageManager) -> None:
    assert list(manager.content.list()) == []
    assert list(manager.layers.list()) == []
    assert manager.images.all() == []
    assert [p for p in manager.root.rglob(".tmp-*")] == []


def test_a_stalled_download_aborts_after_the_progress_timeout(
    tmp_path: Path, db: StateDB, image: ci.Image
) -> None:
    with FakeRegistry(REPO, image) as fake:

        def stall(request: BaseHTTPRequestHandler, blob: ci.Blob) -> bool:
            if blob.digest != image.layers[0].digest:
                return False
            request.send_response(200)
            request.send_header("Content-Length", str(blob.size))
            request.end_headers()
            request.wfile.write(blob.data[: blob.size // 2])
            request.wfile.flush()
            fake.release.wait(10)
            return True

        fake.behaviour.blob = stall
        manager = _manager(tmp_path, db, progress_timeout=0.5)
        with pytest.raises(PullTimeout, match=r"no data for 0\.5 s"):
            manager.pull(f"{fake.host}/{REPO}:v1")
        _assert_nothing_stored(manager)


def test_server_errors_are_retried(tmp_path: Path, db: StateDB, image: ci.Image) -> None:
    with FakeRegistry(REPO, image) as fake:
        failures = {"left": 2}

        def flaky(request: BaseHTTPRequestHandler, blob: ci.Blob) -> bool:
            if failures["left"] == 0:
                return False
            failures["left"] -= 1
            send(request, 503, b'{"errors":[{"code":"UNAVAILABLE","message":"busy"}]}')
            return True

        fake.behaviour.blob = flaky
        record = _manager(tmp_path, db).pull(f"{fake.host}/{REPO}:v1")
        assert str(record.id) == image.id
        assert failures["left"] == 0


def test_server_errors_past_the_retries_fail_clearly(
    tmp_path: Path, db: StateDB, image: ci.Image
) -> None:
    with FakeRegistry(REPO, image) as fake:

        def bad_gateway(request: BaseHTTPRequestHandler, blob: ci.Blob) -> bool:
            send(request, 502, b"bad gateway")
            return True

        fake.behaviour.blob = bad_gateway
        manager = _manager(tmp_path, db)
        with pytest.raises(RegistryUnavailable, match="HTTP 502"):
            manager.pull(f"{fake.host}/{REPO}:v1")
        config_gets = [s for s in fake.behaviour.seen if image.config.digest in s.path]
        assert len(config_gets) == 3  # the first try and two retries
        _assert_nothing_stored(manager)


def test_client_errors_are_not_retried(tmp_path: Path, db: StateDB, image: ci.Image) -> None:
    with FakeRegistry(REPO, image) as fake:

        def bad_request(request: BaseHTTPRequestHandler, blob: ci.Blob) -> bool:
            send(request, 400, b"no")
            return True

        fake.behaviour.blob = bad_request
        with pytest.raises(RegistryError, match="HTTP 400"):
            _manager(tmp_path, db).pull(f"{fake.host}/{REPO}:v1")
        assert len([s for s in fake.behaviour.seen if "/blobs/" in s.path]) == 1


def test_redirect_to_another_host_drops_authorization(
    tmp_path: Path, db: StateDB, image: ci.Image
) -> None:
    with FakeRegistry(REPO, image) as storage, FakeRegistry() as front:
        # Same loopback, another port: another host to HTTP, so no Authorization.
        def redirect(request: BaseHTTPRequestHandler) -> bool:
            if request.headers.get("Authorization") != "Bearer secret-token":
                send(request, 401, b"{}", headers={"WWW-Authenticate": 'Bearer realm="x"'})
                return True
            if "/blobs/" in request.path:
                send(
                    request, 307, b"", headers={"Location": f"http://{storage.host}{request.path}"}
                )
                return True
            return False

        front.behaviour.any = redirect
        front._repository, front._image = REPO, image
        record = _manager(tmp_path, db).pull(
            f"{front.host}/{REPO}:v1", Credentials(registry_token="secret-token")
        )
        assert str(record.id) == image.id
        blob_requests = [s for s in storage.behaviour.seen if "/blobs/" in s.path]
        assert blob_requests, "the blobs were fetched from the redirect target"
        assert all("Authorization" not in s.headers for s in blob_requests)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "registry.key", folder / "registry.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert


def _tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate[1], certificate[0])
    return context


def test_tls_registry_verified_with_its_ca_file(
    tmp_path: Path, db: StateDB, image: ci.Image, certificate: tuple[Path, Path]
) -> None:
    with FakeRegistry(REPO, image, tls=_tls(certificate)) as fake:
        manager = ImageManager(
            tmp_path / "images",
            db,
            registries={fake.host: RegistryHost(ca_file=str(certificate[1]))},
            client_options=ClientOptions(retries=0),
        )
        assert str(manager.pull(f"{fake.host}/{REPO}:v1").id) == image.id


def test_tls_registry_with_an_unknown_certificate_is_refused_unless_insecure(
    tmp_path: Path, db: StateDB, image: ci.Image, certificate: tuple[Path, Path]
) -> None:
    with FakeRegistry(REPO, image, tls=_tls(certificate)) as fake:
        # Every loopback registry may fall back to plain HTTP; a remote one may not. Built
        # by hand, this endpoint is remote to the client while its traffic stays local.
        remote = Endpoint(
            host=fake.host,
            prefix="",
            mirror=False,
            plain_http_allowed=False,
            force_plain_http=False,
            ssl_context=ssl.create_default_context(),
        )
        client = RegistryClient(Endpoints(), ClientOptions(retries=0))
        repository = RepositoryClient(client, parse_reference(f"{fake.host}/{REPO}"), [remote])
        with pytest.raises(RegistryError, match="certificate verify failed"):
            repository.get_manifest("v1")
        assert fake.behaviour.seen == []
        insecure = ImageManager(
            tmp_path / "insecure",
            db,
            registries={fake.host: RegistryHost(insecure=True)},
            client_options=ClientOptions(retries=0),
        )
        assert str(insecure.pull(f"{fake.host}/{REPO}:v1").id) == image.id


def test_a_refused_cached_token_is_replaced_once(
    tmp_path: Path, db: StateDB, image: ci.Image
) -> None:
    with TokenServer(tmp_path, {"alice": "pw"}) as tokens, FakeRegistry(REPO, image) as fake:
        revoked: set[str] = set()

        def bearer_only(request: BaseHTTPRequestHandler) -> bool:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme == "Bearer" and token and token not in revoked:
                return False
            challenge = f'Bearer realm="{tokens.auth.realm}",service="{tokens.auth.service}"'
            send(request, 401, b"{}", headers={"WWW-Authenticate": challenge})
            return True

        fake.behaviour.any = bearer_only
        manager = _manager(tmp_path, db)
        credentials = Credentials("alice", "pw")
        manager.pull(f"{fake.host}/{REPO}:v1", credentials)
        assert len(tokens.requests) == 1
        first = fake.behaviour.seen[-1].headers["Authorization"].split(" ", 1)[1]
        revoked.add(first)  # the registry no longer takes the cached token

        manager.remove(image.id)
        manager.pull(f"{fake.host}/{REPO}:v1", credentials)
        assert len(tokens.requests) == 2
        assert fake.behaviour.seen[-1].headers["Authorization"] != f"Bearer {first}"
