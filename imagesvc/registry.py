"""Registry client (OCI distribution spec): manifests and blobs of one repository, fetched
from its endpoints (mirrors in order, then the registry) with authentication, redirects,
retries and a progress timeout.

- Auth: anonymous first; a 401 challenge names Basic or Bearer. Bearer tokens come from the
  challenge's realm (with Basic credentials, an OAuth2 refresh token, or anonymously) and
  are cached per realm/service/scope until they expire; a 401 with a cached token fetches
  a fresh one once. A CRI registry token is sent as the Bearer token directly.
- Redirects (blob storage) are followed; Authorization never goes to another host.
- Retries with exponential back-off on connection resets, timeouts while connecting and
  5xx answers; never on 4xx. A refused connection is not retried: nothing listens there,
  and the next endpoint should be asked at once.
- Plain HTTP only for endpoints configured insecure, written ``http://``, or on loopback;
  there HTTPS is tried first (certificate not verified) and plain HTTP remembered on a
  TLS failure, as Docker does for insecure registries.
- An endpoint that fails (unreachable, 5xx, 404, refused credentials) passes the request
  to the next one; the last (the registry itself) reports its error.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import logging
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from imagesvc import mediatypes
from imagesvc.auth import (
    DEFAULT_TOKEN_SECONDS,
    Challenge,
    Credentials,
    TokenCache,
    parse_challenges,
)
from imagesvc.digest import Digest
from imagesvc.endpoints import Endpoint, Endpoints, is_loopback
from imagesvc.errors import (
    AuthenticationFailed,
    DigestMismatch,
    PullTimeout,
    RegistryError,
    RegistryNotFound,
    RegistryUnavailable,
)
from imagesvc.reference import ImageReference

log = logging.getLogger("crisp.images.registry")

USER_AGENT = "crisp/0.1.0"
# containerd's limit: a manifest larger than this is not an image, it is an attack.
MAX_MANIFEST_BYTES = 4 << 20
_MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_T = TypeVar("_T")


@dataclass(frozen=True)
class ClientOptions:
    retries: int = 3
    """Attempts after the first for transient failures."""
    backoff_seconds: float = 0.2
    """First back-off delay; doubles each time, with jitter."""
    connect_timeout: float = 10.0
    progress_timeout: float = 60.0
    """A read that gets no byte for this long aborts the request."""


@dataclass(frozen=True)
class FetchedManifest:
    data: bytes
    content_type: str
    digest: Digest
    """Computed from ``data``; the registry's Docker-Content-Digest was checked against it."""


class RegistryClient:
    """Shared by all pulls: endpoints, tokens, learned challenges and URL schemes."""

    def __init__(self, endpoints: Endpoints, options: ClientOptions | None = None) -> None:
        self.endpoints = endpoints
        self.options = options or ClientOptions()
        self.tokens = TokenCache()
        self._lock = threading.Lock()
        self._challenges: dict[str, Challenge] = {}
        self._plain_http: set[str] = set()

    def repository(
        self, reference: ImageReference, credentials: Credentials | None = None
    ) -> RepositoryClient:
        return RepositoryClient(
            self, reference, self.endpoints.for_domain(reference.domain, credentials)
        )

    # Learned per host and shared across pulls so that later requests skip the 401 round trip.

    def challenge(self, host: str) -> Challenge | None:
        with self._lock:
            return self._challenges.get(host)

    def learn_challenge(self, host: str, challenge: Challenge) -> None:
        with self._lock:
            self._challenges[host] = challenge

    def uses_plain_http(self, endpoint: Endpoint) -> bool:
        if endpoint.force_plain_http:
            return True
        with self._lock:
            return endpoint.host in self._plain_http

    def learn_plain_http(self, host: str) -> None:
        with self._lock:
            self._plain_http.add(host)


class RepositoryClient:
    """One repository of one reference, across that registry's endpoints. Thread-safe:
    a pull's concurrent layer downloads share it."""

    def __init__(
        self, client: RegistryClient, reference: ImageReference, endpoints: list[Endpoint]
    ) -> None:
        self._client = client
        self._options = client.options
        self.reference = reference
        self._endpoints = endpoints
        self._lock = threading.Lock()
        # The endpoint that last answered: later requests of this pull start there.
        self._first = 0

    # --- public -------------------------------------------------------------------------

    def get_manifest(self, reference: str) -> FetchedManifest:
        """``reference`` is a tag or a digest. A digest is verified against the bytes; for a
        tag, the computed digest must match the registry's Docker-Content-Digest."""

        def fetch(endpoint: Endpoint) -> FetchedManifest:
            path = f"/v2/{endpoint.repository(self.reference.path)}/manifests/{reference}"
            headers = {"Accept": ", ".join(mediatypes.ACCEPT)}
            with self._request(endpoint, "GET", path, headers) as response:
                data = _read_limited(
                    response, MAX_MANIFEST_BYTES, f"manifest {reference}", endpoint.host
                )
                content_type = response.getheader("Content-Type", "") or ""
                announced = response.getheader("Docker-Content-Digest")
            expected = _digest_of(reference) or (
                _parse_announced(announced, endpoint) if announced else None
            )
            if expected is None:
                return FetchedManifest(data, content_type, Digest.of(data))
            actual = Digest.of(data, expected.algorithm)
            if actual != expected:
                raise DigestMismatch(str(expected), str(actual))
            return FetchedManifest(data, content_type, actual)

        return self._on_endpoints(fetch)

    @contextlib.contextmanager
    def open_blob(self, digest: Digest) -> Iterator[http.client.HTTPResponse]:
        """The blob's response stream; the caller reads and verifies it. A read that
        stalls for the progress timeout raises ``PullTimeout``."""
        endpoint_box: list[Endpoint] = []

        def start(endpoint: Endpoint) -> http.client.HTTPResponse:
            path = f"/v2/{endpoint.repository(self.reference.path)}/blobs/{digest}"
            endpoint_box.append(endpoint)
            return self._open(endpoint, "GET", path, {})

        response = self._on_endpoints(start)
        try:
            yield _TimedResponse.wrap(response, endpoint_box[-1].host, self._options)
        finally:
            response.close()

    # --- endpoints and fallback ---------------------------------------------------------

    def _on_endpoints(self, action: Callable[[Endpoint], _T]) -> _T:
        with self._lock:
            first = self._first
        order = self._endpoints[first:] + self._endpoints[:first]
        for endpoint in order[:-1]:
            try:
                result = action(endpoint)
            except (RegistryUnavailable, RegistryNotFound, AuthenticationFailed) as err:
                log.info("%s; trying the next endpoint of %s", err, self.reference.domain)
                continue
            with self._lock:
                self._first = self._endpoints.index(endpoint)
            return result
        result = action(order[-1])
        with self._lock:
            self._first = self._endpoints.index(order[-1])
        return result

    # --- one request: retries, auth -----------------------------------------------------

    @contextlib.contextmanager
    def _request(
        self, endpoint: Endpoint, method: str, path: str, headers: dict[str, str]
    ) -> Iterator[http.client.HTTPResponse]:
        response = self._open(endpoint, method, path, headers)
        try:
            yield response
        finally:
            response.close()

    def _open(
        self, endpoint: Endpoint, method: str, path: str, headers: dict[str, str]
    ) -> http.client.HTTPResponse:
        """Send with retries and authentication; returns a 2xx response or raises."""
        scope = f"repository:{endpoint.repository(self.reference.path)}:pull"
        refreshed = False
        attempt = 0
        while True:
            authorization = self._authorization(endpoint, scope, fresh=False)
            try:
                response = self._send_following(endpoint, method, path, headers, authorization)
            except _Refused:
                raise
            except RegistryUnavailable:
                if attempt >= self._options.retries:
                    raise
                attempt += 1
                self._back_off(attempt)
                continue
            status = response.status
            if 200 <= status < 300:
                return response
            body = _drain(response)
            if status >= 500:
                if attempt >= self._options.retries:
                    raise RegistryUnavailable(
                        endpoint.host, f"{method} {path}: HTTP {status} {_message(body)}"
                    )
                attempt += 1
                self._back_off(attempt)
                continue
            if status == 401 and not refreshed:
                challenges = parse_challenges(response.getheader("WWW-Authenticate", "") or "")
                usable = [c for c in challenges if c.scheme in ("basic", "bearer")]
                if usable:
                    self._client.learn_challenge(endpoint.host, usable[0])
                    self._authorization(endpoint, scope, fresh=True)
                    refreshed = True
                    continue
            if status in (401, 403):
                raise AuthenticationFailed(
                    endpoint.host,
                    f"pull access denied for {endpoint.repository(self.reference.path)}, "
                    f"repository does not exist or may require authorization: "
                    f"HTTP {status} {_message(body)}",
                )
            if status == 404:
                raise RegistryNotFound(endpoint.host, f"{path}: not found {_message(body)}")
            raise RegistryError(endpoint.host, f"{method} {path}: HTTP {status} {_message(body)}")

    def _back_off(self, attempt: int) -> None:
        delay = self._options.backoff_seconds * (2 ** (attempt - 1))
        time.sleep(delay * random.uniform(0.5, 1.5))

    def _authorization(self, endpoint: Endpoint, scope: str, *, fresh: bool) -> str | None:
        credentials = endpoint.credentials
        if credentials is not None and credentials.registry_token:
            return f"Bearer {credentials.registry_token}"
        challenge = self._client.challenge(endpoint.host)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            if credentials is None or not (credentials.username or credentials.password):
                if fresh:
                    raise AuthenticationFailed(
                        endpoint.host, "the registry asks for Basic credentials and none were given"
                    )
                return None
            return credentials.basic()
        wanted_scope = challenge.params.get("scope") if fresh else None
        key = _token_key(challenge, wanted_scope or scope, credentials)
        if fresh:
            self._client.tokens.drop(key)
        token = self._client.tokens.get(key)
        if token is None:
            token, lifetime = self._fetch_token(endpoint, challenge, wanted_scope or scope)
            self._client.tokens.put(key, token, lifetime)
        return f"Bearer {token}"

    def _fetch_token(
        self, endpoint: Endpoint, challenge: Challenge, scope: str
    ) -> tuple[str, float]:
        realm = challenge.params.get("realm", "")
        target = urllib.parse.urlsplit(realm)
        if target.scheme not in ("http", "https") or not target.netloc:
            raise AuthenticationFailed(endpoint.host, f"token realm {realm!r} is not a URL")
        if (
            target.scheme == "http"
            and not (
                endpoint.plain_http_allowed
                and (is_loopback(target.netloc) or target.netloc == endpoint.host)
            )
            and not self._client.endpoints.host_config(target.netloc).insecure
        ):
            raise AuthenticationFailed(
                endpoint.host, f"token realm {realm} is plain HTTP and not allowed to be"
            )
        service = challenge.params.get("service", "")
        credentials = endpoint.credentials
        headers = {"User-Agent": USER_AGENT}
        if credentials is not None and credentials.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credentials.identity_token,
                "service": service,
                "scope": scope,
                "client_id": "crisp",
            }
            method, body = "POST", urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            path = target.path or "/"
        else:
            query = urllib.parse.urlencode({"service": service, "scope": scope})
            base_query = f"{target.query}&" if target.query else ""
            method, body, path = "GET", None, f"{target.path or '/'}?{base_query}{query}"
            if credentials is not None and (credentials.username or credentials.password):
                headers["Authorization"] = credentials.basic()
        connection = _connect(
            target.scheme, target.netloc, endpoint.ssl_context, self._options.connect_timeout
        )
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = _read_limited(response, 1 << 20, "token response", target.netloc)
        except (OSError, http.client.HTTPException) as err:
            raise RegistryUnavailable(target.netloc, f"token request failed: {err}") from None
        finally:
            connection.close()
        if response.status in (401, 403):
            raise AuthenticationFailed(
                endpoint.host, f"token service {target.netloc} refused the credentials"
            )
        if response.status != 200:
            raise RegistryUnavailable(
                target.netloc, f"token request: HTTP {response.status} {_message(data)}"
            )
        try:
            answer = json.loads(data)
            token = answer.get("token") or answer.get("access_token")
            lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_SECONDS)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthenticationFailed(endpoint.host, "token service answered without a token")
        return token, lifetime

    # --- transport ------------------------------------------------------------------------

    def _send_following(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        headers: dict[str, str],
        authorization: str | None,
    ) -> http.client.HTTPResponse:
        """One request, following redirects; Authorization goes to ``endpoint`` only."""
        scheme = "http" if self._client.uses_plain_http(endpoint) else "https"
        netloc, target = endpoint.host, path
        for _ in range(_MAX_REDIRECTS + 1):
            send = {"User-Agent": USER_AGENT, **headers}
            if authorization and netloc == endpoint.host:
                send["Authorization"] = authorization
            response = self._send_once(endpoint, scheme, netloc, method, target, send)
            location = response.getheader("Location")
            if response.status not in _REDIRECTS or not location:
                return response
            _drain(response)
            response.close()
            base = f"{scheme}://{netloc}{target}"
            parts = urllib.parse.urlsplit(urllib.parse.urljoin(base, location))
            if parts.scheme == "http" and scheme == "https" and not endpoint.plain_http_allowed:
                raise RegistryError(endpoint.host, f"refusing redirect from HTTPS to {location}")
            if parts.scheme not in ("http", "https"):
                raise RegistryError(endpoint.host, f"redirect to unsupported URL {location!r}")
            scheme, netloc = parts.scheme, parts.netloc
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        raise RegistryError(endpoint.host, f"more than {_MAX_REDIRECTS} redirects for {path}")

    def _send_once(
        self,
        endpoint: Endpoint,
        scheme: str,
        netloc: str,
        method: str,
        target: str,
        headers: dict[str, str],
    ) -> http.client.HTTPResponse:
        connection = _connect(scheme, netloc, endpoint.ssl_context, self._options.connect_timeout)
        try:
            connection.connect()
            # From here on the limit is on silence between bytes, not on connecting.
            assert connection.sock is not None
            connection.sock.settimeout(self._options.progress_timeout)
            connection.request(method, target, headers=headers)
            response = connection.getresponse()
        except ssl.SSLError as err:
            connection.close()
            if scheme == "https" and netloc == endpoint.host and endpoint.plain_http_allowed:
                # An insecure or loopback registry that speaks plain HTTP.
                self._client.learn_plain_http(endpoint.host)
                return self._send_once(endpoint, "http", netloc, method, target, headers)
            raise RegistryUnavailable(netloc, f"TLS failed: {err}") from None
        except ConnectionRefusedError as err:
            connection.close()
            raise _Refused(netloc, f"connection refused: {err.strerror}") from None
        except (OSError, http.client.HTTPException) as err:
            connection.close()
            raise RegistryUnavailable(netloc, f"{method} {target}: {_describe(err)}") from None
        # The connection belongs to the response from here; the caller closes it.
        return response


class _Refused(RegistryUnavailable):
    """Not worth a retry: go straight to the next endpoint."""


def _connect(
    scheme: str, netloc: str, context: ssl.SSLContext, timeout: float
) -> http.client.HTTPConnection:
    if scheme == "https":
        return http.client.HTTPSConnection(netloc, timeout=timeout, context=context)
    return http.client.HTTPConnection(netloc, timeout=timeout)


class _TimedResponse:
    """Maps a stalled read to ``PullTimeout`` and a broken one to ``RegistryUnavailable``."""

    @staticmethod
    def wrap(
        response: http.client.HTTPResponse, host: str, options: ClientOptions
    ) -> http.client.HTTPResponse:
        original = response.read

        def read(amt: int | None = None) -> bytes:
            try:
                return original(amt)
            except TimeoutError:
                raise PullTimeout(
                    host, f"no data for {options.progress_timeout:g} s, download aborted"
                ) from None
            except (OSError, http.client.HTTPException) as err:
                raise RegistryUnavailable(host, f"download broken: {_describe(err)}") from None

        response.read = read  # type: ignore[method-assign]
        return response


def _read_limited(response: http.client.HTTPResponse, limit: int, what: str, host: str) -> bytes:
    length = response.getheader("Content-Length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RegistryError(host, f"{what} is {length} bytes, more than the {limit} allowed")
    try:
        data = response.read(limit + 1)
    except (OSError, http.client.HTTPException) as err:
        raise RegistryUnavailable(host, f"reading {what}: {_describe(err)}") from None
    if len(data) > limit:
        raise RegistryError(host, f"{what} is more than the {limit} bytes allowed")
    return data


def _drain(response: http.client.HTTPResponse) -> bytes:
    try:
        return response.read(64 << 10)
    except (OSError, http.client.HTTPException):
        return b""


def _message(body: bytes) -> str:
    """The registry's error messages (``{"errors": [{"code", "message"}]}``) if any."""
    try:
        errors = json.loads(body)["errors"]
        return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors)
    except (ValueError, KeyError, TypeError, AttributeError):
        return body[:200].decode(errors="replace").strip()


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.errno in (errno.ECONNRESET, errno.EPIPE):
        return "connection reset"
    if isinstance(err, socket.timeout | TimeoutError):
        return "timed out"
    return f"{type(err).__name__}: {err}"


def _digest_of(reference: str) -> Digest | None:
    return Digest.parse(reference) if ":" in reference else None


def _parse_announced(announced: str, endpoint: Endpoint) -> Digest:
    try:
        return Digest.parse(announced.strip())
    except ValueError:
        raise RegistryError(endpoint.host, f"invalid Docker-Content-Digest {announced!r}") from None


def _token_key(
    challenge: Challenge, scope: str, credentials: Credentials | None
) -> tuple[str, ...]:
    # A hash of the whole secret, so that a wrong password never rides on a token that a
    # right one obtained.
    identity = ""
    if credentials is not None:
        secret = "\0".join((credentials.username, credentials.password, credentials.identity_token))
        identity = hashlib.sha256(secret.encode()).hexdigest()
    return (
        challenge.params.get("realm", ""),
        challenge.params.get("service", ""),
        scope,
        identity,
    )
