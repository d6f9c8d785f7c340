"""A tiny Docker registry token server (the Bearer realm) for tests: checks Basic
credentials and answers RS256 JWTs that distribution's token auth accepts, signed by a
throw-away self-signed certificate (its x5c header carries the certificate)."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self

from critest.registry import TokenAuth

SERVICE = "crisp-test-registry"
ISSUER = "crisp-test-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    def __init__(
        self,
        directory: Path,
        users: dict[str, str],
        lifetime: int = 300,
        refresh_tokens: dict[str, str] | None = None,
    ) -> None:
        self._dir = directory
        self._users = users
        self._refresh_tokens = refresh_tokens or {}
        self.lifetime = lifetime
        self.requests: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.key = directory / "token.key"
        self.cert = directory / "token.crt"

    @property
    def auth(self) -> TokenAuth:
        assert self._server is not None
        port = self._server.server_address[1]
        return TokenAuth(f"http://127.0.0.1:{port}/token", SERVICE, ISSUER, self.cert)

    def start(self) -> None:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-subj", "/CN=crisp-test-token", "-keyout", str(self.key), "-out", str(self.cert),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        self._x5c = base64.b64encode(der).decode()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._answer(self)

            def do_POST(self) -> None:
                server._answer_oauth(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.path).query))
        user = self._user(request.headers.get("Authorization", ""))
        with self._lock:
            self.requests.append({**query, "user": user or ""})
        if user is None:
            request.send_response(401)
            request.end_headers()
            return
        access: list[dict[str, object]] = []
        scope = query.get("scope", "")
        if scope.startswith("repository:") and user:
            _, name, actions = scope.split(":", 2)
            access.append({"type": "repository", "name": name, "actions": actions.split(",")})
        token = self._sign(user, access)
        body = json.dumps({"token": token, "expires_in": self.lifetime}).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _answer_oauth(self, request: BaseHTTPRequestHandler) -> None:
        """OAuth2 refresh-token grant, as clients with an identity token use it."""
        length = int(request.headers.get("Content-Length", "0"))
        form = dict(urllib.parse.parse_qsl(request.rfile.read(length).decode()))
        user = self._refresh_tokens.get(form.get("refresh_token", ""))
        with self._lock:
            self.requests.append({**form, "user": user or ""})
        if form.get("grant_type") != "refresh_token" or user is None:
            request.send_response(401)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        _, name, actions = form.get("scope", "::").split(":", 2)
        token = self._sign(
            user, [{"type": "repository", "name": name, "actions": actions.split(",")}]
        )
        body = json.dumps({"access_token": token, "expires_in": self.lifetime}).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _user(self, header: str) -> str | None:
        """The authenticated user, "" for anonymous, None for wrong credentials."""
        if not header:
            return ""
        scheme, _, value = header.partition(" ")
        if scheme != "Basic":
            return None
        user, _, password = base64.b64decode(value).decode().partition(":")
        return user if self._users.get(user) == password else None

    def _sign(self, user: str, access: list[dict[str, object]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": ISSUER,
            "sub": user,
            "aud": SERVICE,
            "exp": now + self.lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
