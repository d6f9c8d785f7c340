"""Where a repository is fetched from: a registry's mirrors, in order, then the registry
itself, each with its transport (TLS with an optional CA, or plain HTTP) and credentials.

A mirror location may carry a path prefix, as registries.conf allows:
``registry.k8s.io`` mirrored at ``127.0.0.1:5000/registry.k8s.io`` fetches repository
``registry.k8s.io/pause`` as ``registry.k8s.io/pause`` from ``127.0.0.1:5000``.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

from imagesvc.auth import Credentials
from imagesvc.errors import ImageError
from imagesvc.reference import DEFAULT_DOMAIN

# Docker Hub's API lives on another host than its name.
_API_HOSTS = {DEFAULT_DOMAIN: "registry-1.docker.io"}


class InvalidRegistryConfig(ImageError, ValueError):
    pass


@dataclass(frozen=True)
class RegistryHost:
    """Configuration of one registry host (``[registries."host"]``)."""

    mirrors: tuple[str, ...] = ()
    insecure: bool = False
    """Plain HTTP allowed, and TLS certificates not verified."""
    ca_file: str = ""
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class Endpoint:
    host: str
    """host[:port] to connect to."""
    prefix: str
    """Path put before the repository path, without slashes at either end."""
    mirror: bool
    plain_http_allowed: bool
    """Plain HTTP may be used (insecure or loopback); HTTPS is still tried first."""
    force_plain_http: bool
    """The location said ``http://``."""
    ssl_context: ssl.SSLContext = field(compare=False)
    credentials: Credentials | None = field(default=None, repr=False, compare=False)

    def repository(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path


def is_loopback(host: str) -> bool:
    name = split_host(host)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def split_host(host: str) -> tuple[str, int | None]:
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":")
        return name, int(port) if port else None
    name, colon, port = host.partition(":")
    return name, int(port) if colon and port.isdigit() else None


def parse_location(location: str) -> tuple[str, str, str]:
    """``[http[s]://]host[:port][/prefix]`` → (scheme or "", host, prefix)."""
    scheme = ""
    for candidate in ("https://", "http://"):
        if location.startswith(candidate):
            scheme, location = candidate[:-3], location[len(candidate) :]
    host, _, prefix = location.partition("/")
    if not host:
        raise InvalidRegistryConfig(f"mirror location {location!r} has no host")
    return scheme, host, prefix.strip("/")


class Endpoints:
    """Turns a reference's registry domain into the ordered endpoints to try."""

    def __init__(self, hosts: Mapping[str, RegistryHost] | None = None) -> None:
        self._hosts = dict(hosts or {})
        self._contexts: dict[tuple[bool, str], ssl.SSLContext] = {}
        for name, host in self._hosts.items():
            for mirror in host.mirrors:
                parse_location(mirror)
            if host.ca_file:
                try:
                    self._context(host)
                except (OSError, ssl.SSLError) as err:
                    raise InvalidRegistryConfig(
                        f"registry {name}: ca_file {host.ca_file}: {err}"
                    ) from None

    def host_config(self, host: str) -> RegistryHost:
        return self._hosts.get(host, RegistryHost())

    def for_domain(self, domain: str, request_credentials: Credentials | None) -> list[Endpoint]:
        config = self.host_config(domain)
        endpoints = []
        for location in config.mirrors:
            scheme, host, prefix = parse_location(location)
            own = self.host_config(host)
            endpoints.append(
                self._endpoint(host, prefix, own, scheme, mirror=True, credentials=_configured(own))
            )
        upstream = _API_HOSTS.get(domain, domain)
        credentials = request_credentials or _configured(config)
        endpoints.append(self._endpoint(upstream, "", config, "", False, credentials))
        return endpoints

    def _endpoint(
        self,
        host: str,
        prefix: str,
        config: RegistryHost,
        scheme: str,
        mirror: bool,
        credentials: Credentials | None,
    ) -> Endpoint:
        plain = config.insecure or is_loopback(host) or scheme == "http"
        return Endpoint(
            host=host,
            prefix=prefix,
            mirror=mirror,
            plain_http_allowed=plain,
            force_plain_http=scheme == "http",
            ssl_context=self._context(config),
            credentials=credentials,
        )

    def _context(self, config: RegistryHost) -> ssl.SSLContext:
        key = (config.insecure, config.ca_file)
        context = self._contexts.get(key)
        if context is None:
            context = ssl.create_default_context(cafile=config.ca_file or None)
            if config.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._contexts[key] = context
        return context


def _configured(config: RegistryHost) -> Credentials | None:
    if not config.username and not config.password:
        return None
    return Credentials(config.username, config.password)
