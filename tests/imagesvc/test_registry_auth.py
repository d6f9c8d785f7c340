"""Registry client pieces that need no network: challenges, credentials, tokens, mirrors."""

from __future__ import annotations

import base64
import time

import pytest

from imagesvc.auth import Credentials, InvalidCredentials, TokenCache, parse_challenges
from imagesvc.endpoints import Endpoints, InvalidRegistryConfig, RegistryHost, is_loopback


def test_bearer_challenge_with_quoted_commas() -> None:
    header = (
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:team/app:pull,push"'
    )
    (challenge,) = parse_challenges(header)
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:team/app:pull,push",
    }


def test_several_challenges_and_unquoted_values() -> None:
    header = 'Basic realm="Registry Realm", Bearer realm=https://a/t, service=x'
    challenges = parse_challenges(header)
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[0].params == {"realm": "Registry Realm"}
    assert challenges[1].params == {"realm": "https://a/t", "service": "x"}


def test_escaped_quote_and_empty_header() -> None:
    (challenge,) = parse_challenges(r'Bearer realm="a\"b"')
    assert challenge.params["realm"] == 'a"b'
    assert parse_challenges("") == []


def test_auth_field_fills_username_and_password() -> None:
    auth = base64.b64encode(b"alice:pa:ss").decode()
    credentials = Credentials.from_auth_config(auth=auth)
    assert credentials == Credentials("alice", "pa:ss")
    # Explicit fields win over the ones packed in auth.
    assert Credentials.from_auth_config(username="bob", auth=auth) == Credentials("bob", "pa:ss")


def test_no_credentials_is_anonymous_and_bad_auth_is_named() -> None:
    assert Credentials.from_auth_config() is None
    with pytest.raises(InvalidCredentials, match="base64"):
        Credentials.from_auth_config(auth="%%%")
    with pytest.raises(InvalidCredentials, match="username:password"):
        Credentials.from_auth_config(auth=base64.b64encode(b"nocolon").decode())


def test_credentials_never_show_secrets() -> None:
    text = repr(Credentials("alice", "secret", "idtoken", "regtoken"))
    assert "secret" not in text and "idtoken" not in text and "regtoken" not in text


def test_token_cache_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = TokenCache()
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    cache.put(("realm", "svc", "scope", ""), "tok", lifetime=60)
    assert cache.get(("realm", "svc", "scope", "")) == "tok"
    now[0] += 56  # renewed a little before the server's expiry
    assert cache.get(("realm", "svc", "scope", "")) is None


def test_mirrors_come_first_in_order_with_path_prefix() -> None:
    endpoints = Endpoints(
        {
            "registry.k8s.io": RegistryHost(
                mirrors=("127.0.0.1:5000/registry.k8s.io", "https://mirror.example.com/k8s/")
            )
        }
    ).for_domain("registry.k8s.io", None)
    assert [(e.host, e.prefix, e.mirror) for e in endpoints] == [
        ("127.0.0.1:5000", "registry.k8s.io", True),
        ("mirror.example.com", "k8s", True),
        ("registry.k8s.io", "", False),
    ]
    assert endpoints[0].repository("pause") == "registry.k8s.io/pause"
    assert endpoints[2].repository("pause") == "pause"


def test_plain_http_only_for_insecure_loopback_or_http_locations() -> None:
    endpoints = Endpoints(
        {
            "secure.example.com": RegistryHost(mirrors=("http://plain.example.com",)),
            "insecure.example.com": RegistryHost(insecure=True),
        }
    )
    secure = endpoints.for_domain("secure.example.com", None)
    assert [e.plain_http_allowed for e in secure] == [True, False]
    assert secure[0].force_plain_http
    assert endpoints.for_domain("insecure.example.com", None)[0].plain_http_allowed
    assert endpoints.for_domain("localhost:5000", None)[0].plain_http_allowed
    assert is_loopback("127.0.0.1:5000") and is_loopback("[::1]:5000")
    assert not is_loopback("10.0.0.1:5000")


def test_docker_hub_api_host_and_credentials_only_for_their_host() -> None:
    request = Credentials("alice", "pw")
    endpoints = Endpoints(
        {
            "docker.io": RegistryHost(mirrors=("mirror.local:5000",)),
            "mirror.local:5000": RegistryHost(username="m", password="mp"),
        }
    ).for_domain("docker.io", request)
    assert [e.host for e in endpoints] == ["mirror.local:5000", "registry-1.docker.io"]
    # The request's credentials are for docker.io; the mirror gets its own.
    assert endpoints[0].credentials == Credentials("m", "mp")
    assert endpoints[1].credentials == request


def test_bad_registry_config_is_named() -> None:
    with pytest.raises(InvalidRegistryConfig, match="no host"):
        Endpoints({"x.io": RegistryHost(mirrors=("/prefix-only",))})
    with pytest.raises(InvalidRegistryConfig, match="ca_file"):
        Endpoints({"x.io": RegistryHost(ca_file="/nonexistent/ca.pem")})
