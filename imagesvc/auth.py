"""Registry authentication: credentials as CRI's AuthConfig carries them, the
``WWW-Authenticate`` challenge, and Bearer tokens cached until they expire."""

from __future__ import annotations

import base64
import binascii
import threading
import time
from dataclasses import dataclass, field

from imagesvc.errors import ImageError


class InvalidCredentials(ImageError, ValueError):
    pass


@dataclass(frozen=True)
class Credentials:
    """One of: username/password (Basic, or Basic to a token realm), an identity token
    (an OAuth2 refresh token exchanged at the realm), or a registry token (a Bearer
    token sent as is)."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    @classmethod
    def from_auth_config(
        cls,
        username: str = "",
        password: str = "",
        auth: str = "",
        identity_token: str = "",
        registry_token: str = "",
    ) -> Credentials | None:
        """CRI AuthConfig semantics: ``auth`` is base64 ``user:password`` and fills in
        what username/password leave empty. Nothing set means anonymous (None)."""
        if auth:
            try:
                decoded = base64.b64decode(auth, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidCredentials("auth is not base64 of 'username:password'") from None
            user, colon, secret = decoded.partition(":")
            if not colon:
                raise InvalidCredentials("auth does not decode to 'username:password'")
            username, password = username or user, password or secret
        if not (username or password or identity_token or registry_token):
            return None
        return cls(username, password, identity_token, registry_token)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str
    """Lowercase: ``basic`` or ``bearer``."""
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` (RFC 7235): one or more ``scheme k=v, k="v"`` groups
    separated by commas. Quoted values may contain commas and escaped quotes."""
    challenges: list[Challenge] = []
    pos, n = 0, len(header)
    current: Challenge | None = None
    while pos < n:
        while pos < n and header[pos] in " \t,":
            pos += 1
        start = pos
        while pos < n and header[pos] not in " \t,=":
            pos += 1
        token = header[start:pos]
        if not token:
            break
        rest = pos
        while rest < n and header[rest] in " \t":
            rest += 1
        if rest < n and header[rest] == "=" and current is not None:
            pos = rest + 1
            while pos < n and header[pos] in " \t":
                pos += 1
            value, pos = _param_value(header, pos)
            current.params[token.lower()] = value
            continue
        current = Challenge(token.lower(), {})
        challenges.append(current)
    return challenges


def _param_value(header: str, pos: int) -> tuple[str, int]:
    if pos < len(header) and header[pos] == '"':
        chars: list[str] = []
        pos += 1
        while pos < len(header) and header[pos] != '"':
            if header[pos] == "\\" and pos + 1 < len(header):
                pos += 1
            chars.append(header[pos])
            pos += 1
        return "".join(chars), pos + 1
    start = pos
    while pos < len(header) and header[pos] not in ",":
        pos += 1
    return header[start:pos].strip(), pos


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float
    """time.monotonic() after which the token is not used again."""


# Tokens the spec says are valid for at least 60 s when a server names no lifetime.
DEFAULT_TOKEN_SECONDS = 60
# Renew a little early, so a token does not expire between being picked and being used.
_EXPIRY_MARGIN = 5.0


class TokenCache:
    """Bearer tokens by (realm, service, scope, identity): shared by all pulls of the
    daemon, so a second pull from the same repository does not ask the realm again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, ...], Token] = {}

    def get(self, key: tuple[str, ...]) -> str | None:
        with self._lock:
            token = self._tokens.get(key)
            if token is None:
                return None
            if time.monotonic() >= token.expires_at:
                del self._tokens[key]
                return None
            return token.value

    def put(self, key: tuple[str, ...], value: str, lifetime: float) -> None:
        expires = time.monotonic() + max(lifetime - _EXPIRY_MARGIN, 1.0)
        with self._lock:
            self._tokens[key] = Token(value, expires)

    def drop(self, key: tuple[str, ...]) -> None:
        with self._lock:
            self._tokens.pop(key, None)
