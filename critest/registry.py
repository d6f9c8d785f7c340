"""A real registry process (Debian's ``docker-registry``, distribution 2.8) on loopback.

Started on a free port with a generated configuration and a private storage directory, and
stopped by its PID. Optional htpasswd Basic auth or token auth (the caller runs the token
server and gives its realm, service, issuer and the certificate that signs its tokens).
Every request the registry served is read back from its access log, so a test can count
downloads without instrumenting the client under test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

REGISTRY_BINARY = "/usr/bin/docker-registry"
_ACCESS_LINE = re.compile(r'^\S+ - \S+ \[[^]]+\] "(\S+) (\S+) HTTP/[\d.]+" (\d{3}) ')


@dataclass(frozen=True)
class TokenAuth:
    realm: str
    service: str
    issuer: str
    root_cert_file: Path


@dataclass(frozen=True)
class AccessEntry:
    method: str
    path: str
    status: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def htpasswd_line(username: str, password: str) -> str:
    """A bcrypt htpasswd entry, the only hash distribution's htpasswd backend accepts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # deprecated in 3.11 but the only stdlib bcrypt; tests only

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 4))
    if not hashed or not hashed.startswith("$2"):
        raise RuntimeError("this libc's crypt(3) has no bcrypt; cannot write htpasswd")
    return f"{username}:{hashed}\n"


class Registry:
    """``with Registry() as r: r.host`` → ``127.0.0.1:PORT``. Stopped and its directory
    removed on exit, even when the body fails."""

    def __init__(
        self,
        *,
        basic_auth: dict[str, str] | None = None,
        token_auth: TokenAuth | None = None,
        base_dir: Path | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        if basic_auth and token_auth:
            raise ValueError("a registry takes either basic_auth or token_auth, not both")
        self._basic_auth = basic_auth
        self._token_auth = token_auth
        self._base_dir = base_dir
        self._start_timeout = start_timeout
        self.dir: Path | None = None
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def storage(self) -> Path:
        assert self.dir is not None
        return self.dir / "storage"

    @property
    def log_file(self) -> Path:
        assert self.dir is not None
        return self.dir / "registry.log"

    def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="critest-registry-", dir=self._base_dir))
        self.port = free_port()
        config = self.dir / "config.yml"
        config.write_text(self._config())
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready()

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {self.host}",
        ]
        if self._basic_auth:
            assert self.dir is not None
            htpasswd = self.dir / "htpasswd"
            htpasswd.write_text("".join(htpasswd_line(u, p) for u, p in self._basic_auth.items()))
            lines += ["auth:", "  htpasswd:", "    realm: critest", f"    path: {htpasswd}"]
        if self._token_auth:
            t = self._token_auth
            lines += [
                "auth:",
                "  token:",
                f"    realm: {t.realm}",
                f"    service: {t.service}",
                f"    issuer: {t.issuer}",
                f"    rootcertbundle: {t.root_cert_file}",
            ]
        return "\n".join(lines) + "\n"

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._start_timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited with {self._process.returncode}:\n"
                    + self.log_file.read_text(errors="replace")
                )
            try:
                urllib.request.urlopen(f"{self.url}/v2/", timeout=1).close()
                return
            except urllib.error.HTTPError as err:
                if err.code == 401:  # up, and asking for credentials
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not answer within its start-up time")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                os.kill(self._process.pid, signal.SIGTERM)
                try:
                    self._process.wait(10)
                except subprocess.TimeoutExpired:
                    os.kill(self._process.pid, signal.SIGKILL)
                    self._process.wait()
            self._process = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def access_log(self) -> list[AccessEntry]:
        entries = []
        for line in self.log_file.read_text(errors="replace").splitlines():
            match = _ACCESS_LINE.match(line)
            if match:
                entries.append(AccessEntry(match[1], match[2], int(match[3])))
        return entries

    def blob_downloads(self, digest: str, repository: str = "") -> int:
        """Successful GETs of one blob, from one repository if named (redirects and HEADs
        not counted)."""
        suffix = f"/blobs/{digest}"
        prefix = f"/v2/{repository}/" if repository else "/v2/"
        return sum(
            1
            for e in self.access_log()
            if e.method == "GET"
            and e.status == 200
            and e.path.endswith(suffix)
            and e.path.startswith(prefix)
        )

    def blob_path(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes, so a test can corrupt them."""
        algorithm, _, hex_digest = digest.partition(":")
        return (
            self.storage
            / "docker/registry/v2/blobs"
            / algorithm
            / hex_digest[:2]
            / hex_digest
            / "data"
        )

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
