"""Real test images built from ``/bin/busybox`` (busybox-static), and pushed to a registry
through its HTTP API (monolithic blob upload, manifest PUT by tag and by digest).

Only the standard library: the suite must run against any CRI endpoint from any checkout.
Layers are real tars (PAX) compressed with gzip, zstd (raw zstd blocks, which every
decoder reads and the standard library can write) or not at all. Images come as OCI
manifests or Docker schema 2 manifests, and indexes (OCI index / Docker manifest list)
gather several platforms.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import struct
import subprocess
import tarfile
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

BUSYBOX = "/bin/busybox"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

Compression = Literal["gzip", "zstd", "none"]
_OCI_LAYER = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
_DOCKER_LAYER = {
    "gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "zstd": "application/vnd.docker.image.rootfs.diff.tar.zstd",
    "none": "application/vnd.docker.image.rootfs.diff.tar",
}
# A fixed time makes every build of the same content byte-identical (same digests).
_EPOCH = 1_700_000_000

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "www-data:x:33:33:www-data:/var/www:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n"


# --- layer content -----------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One tar entry. ``kind`` whiteout/opaque become the OCI ``.wh.`` markers."""

    path: str
    kind: Literal["file", "dir", "symlink", "hardlink", "whiteout", "opaque"] = "file"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""


def file(path: str, data: bytes | str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    raw = data.encode() if isinstance(data, str) else data
    return Entry(path, "file", raw, mode, uid, gid)


def directory(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, "dir", mode=mode, uid=uid, gid=gid)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, "symlink", mode=0o777, target=target)


def hardlink(path: str, target: str) -> Entry:
    return Entry(path, "hardlink", target=target)


def whiteout(path: str) -> Entry:
    """Deletes ``path`` of a lower layer."""
    return Entry(path, "whiteout")


def opaque(path: str) -> Entry:
    """Hides everything lower layers put in the directory ``path``."""
    return Entry(path, "opaque")


def busybox_applets() -> list[str]:
    out = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True)
    return sorted(name for name in out.stdout.split() if name and name != "busybox")


def busybox_base() -> list[Entry]:
    """A minimal root: busybox and a symlink per applet in /bin, users and groups, and the
    directories a container runtime mounts over."""
    with open(BUSYBOX, "rb") as f:
        binary = f.read()
    entries = [
        directory("bin"),
        file("bin/busybox", binary, 0o755),
        *(symlink(f"bin/{name}", "busybox") for name in busybox_applets()),
        directory("etc"),
        file("etc/passwd", PASSWD),
        file("etc/group", GROUP),
        directory("root", 0o700),
        directory("tmp", 0o1777),
        directory("var"),
        directory("var/www", uid=33, gid=33),
    ]
    entries += [directory(name) for name in ("dev", "proc", "sys", "home")]
    return entries


def tar_bytes(entries: Sequence[Entry]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in entries:
            archive.addfile(*_tar_member(entry))
    return buffer.getvalue()


def _tar_member(entry: Entry) -> tuple[tarfile.TarInfo, io.BytesIO | None]:
    path = entry.path.strip("/")
    if entry.kind in ("whiteout", "opaque"):
        parent, _, name = path.rpartition("/")
        marker = ".wh..wh..opq" if entry.kind == "opaque" else f".wh.{name}"
        base = path if entry.kind == "opaque" else parent
        path = f"{base}/{marker}" if base else marker
    info = tarfile.TarInfo(path)
    info.mtime = _EPOCH
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    data = None
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, entry.target
    elif entry.kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, entry.target.strip("/")
    else:
        info.size = len(entry.data)
        data = io.BytesIO(entry.data)
    return info, data


def compress(data: bytes, compression: Compression) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if compression == "zstd":
        return zstd_raw_frame(data)
    return data


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_BLOCK = 128 * 1024


def zstd_raw_frame(data: bytes) -> bytes:
    """A valid zstd frame made of raw (stored) blocks: window 128 KiB, no checksum."""
    # Frame header descriptor 0 (no content size, not single-segment), then a window
    # descriptor of exponent 7: 2**(10+7) = 128 KiB, the largest block size.
    out = [_ZSTD_MAGIC, b"\x00", bytes([7 << 3])]
    chunks = [data[i : i + _ZSTD_BLOCK] for i in range(0, len(data), _ZSTD_BLOCK)] or [b""]
    for position, chunk in enumerate(chunks):
        last = 1 if position == len(chunks) - 1 else 0
        header = last | (0 << 1) | (len(chunk) << 3)  # block type 0: raw
        out.append(struct.pack("<I", header)[:3])
        out.append(chunk)
    return b"".join(out)


# --- blobs, images, indexes --------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: object) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class RunConfig:
    env: Sequence[str] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = ("sh",)
    user: str = ""
    working_dir: str = ""
    stop_signal: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    def as_json(self) -> dict[str, str]:
        raw = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            raw["variant"] = self.variant
        return raw


@dataclass(frozen=True)
class Image:
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    diff_ids: tuple[str, ...]
    platform: Platform

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def id(self) -> str:
        """What a CRI runtime reports as Image.id: the config digest."""
        return self.config.digest


@dataclass(frozen=True)
class Index:
    index: Blob
    images: tuple[Image, ...]

    @property
    def digest(self) -> str:
        return self.index.digest

    def for_platform(self, platform: Platform) -> Image:
        return next(i for i in self.images if i.platform == platform)


def build_image(
    layers: Sequence[Sequence[Entry]],
    config: RunConfig | None = None,
    *,
    compression: Compression = "gzip",
    docker: bool = False,
    platform: Platform | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Image:
    config = config or RunConfig()
    platform = platform or Platform()
    plain = [tar_bytes(entries) for entries in layers]
    diff_ids = tuple("sha256:" + hashlib.sha256(p).hexdigest() for p in plain)
    layer_type = (_DOCKER_LAYER if docker else _OCI_LAYER)[compression]
    blobs = tuple(Blob(layer_type, compress(p, compression)) for p in plain)
    run: dict[str, object] = {"Env": list(config.env)}
    if config.entrypoint is not None:
        run["Entrypoint"] = list(config.entrypoint)
    if config.cmd is not None:
        run["Cmd"] = list(config.cmd)
    for key, value in (
        ("User", config.user),
        ("WorkingDir", config.working_dir),
        ("StopSignal", config.stop_signal),
    ):
        if value:
            run[key] = value
    if config.labels:
        run["Labels"] = dict(config.labels)
    image_config = {
        "created": "2023-11-14T22:13:20Z",
        **platform.as_json(),
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "critest"}] * len(plain),
    }
    config_blob = Blob(DOCKER_CONFIG if docker else OCI_CONFIG, _json(image_config))
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [b.descriptor() for b in blobs],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    manifest_blob = Blob(str(manifest["mediaType"]), _json(manifest))
    return Image(manifest_blob, config_blob, blobs, diff_ids, platform)


def build_index(images: Sequence[Image], *, docker: bool = False) -> Index:
    media_type = DOCKER_LIST if docker else OCI_INDEX
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [i.manifest.descriptor(platform=i.platform.as_json()) for i in images],
    }
    return Index(Blob(media_type, _json(document)), tuple(images))


def busybox_image(
    config: RunConfig | None = None,
    extra_layers: Sequence[Sequence[Entry]] = (),
    **kwargs: object,
) -> Image:
    """busybox as the base layer, then ``extra_layers``; keyword arguments as build_image."""
    return build_image([busybox_base(), *extra_layers], config, **kwargs)  # type: ignore[arg-type]


def _json(document: object) -> bytes:
    return json.dumps(document, indent=2, sort_keys=True).encode()


# --- pushing -----------------------------------------------------------------------------


class PushError(RuntimeError):
    pass


class Pusher:
    """Pushes blobs and manifests to ``host`` (``127.0.0.1:PORT``) over plain HTTP.
    Answers a 401 challenge with Basic auth or a token from the Bearer realm."""

    def __init__(self, host: str, username: str = "", password: str = "") -> None:
        self.host = host
        self._credentials = (username, password) if username else None
        self._authorization: dict[str, str] = {}

    def push_image(self, repository: str, image: Image, *tags: str) -> str:
        """Blobs, then the manifest by digest and by each tag; returns the digest."""
        for blob in (image.config, *image.layers):
            self.push_blob(repository, blob)
        self.push_manifest(repository, image.manifest, image.digest)
        for tag in tags:
            self.push_manifest(repository, image.manifest, tag)
        return image.digest

    def push_index(self, repository: str, index: Index, *tags: str) -> str:
        for image in index.images:
            self.push_image(repository, image)
        self.push_manifest(repository, index.index, index.digest)
        for tag in tags:
            self.push_manifest(repository, index.index, tag)
        return index.digest

    def push_blob(self, repository: str, blob: Blob) -> None:
        status, _, _ = self._request("HEAD", f"/v2/{repository}/blobs/{blob.digest}", repository)
        if status == 200:
            return
        status, headers, body = self._request(
            "POST", f"/v2/{repository}/blobs/uploads/", repository
        )
        if status != 202:
            raise PushError(f"starting upload of {blob.digest}: HTTP {status} {body!r}")
        location = urllib.parse.urlsplit(headers["location"])
        query = f"{location.query}&" if location.query else ""
        target = f"{location.path}?{query}digest={urllib.parse.quote(blob.digest)}"
        status, _, body = self._request(
            "PUT",
            target,
            repository,
            blob.data,
            {"Content-Type": "application/octet-stream"},
        )
        if status != 201:
            raise PushError(f"uploading {blob.digest}: HTTP {status} {body!r}")

    def push_manifest(self, repository: str, manifest: Blob, reference: str) -> None:
        status, _, body = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            repository,
            manifest.data,
            {"Content-Type": manifest.media_type},
        )
        if status != 201:
            raise PushError(f"putting manifest {reference}: HTTP {status} {body!r}")

    def _request(
        self,
        method: str,
        path: str,
        repository: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        for attempt in range(2):
            all_headers = dict(headers or {})
            if repository in self._authorization:
                all_headers["Authorization"] = self._authorization[repository]
            connection = http.client.HTTPConnection(self.host, timeout=30)
            try:
                connection.request(method, path, body=body, headers=all_headers)
                response = connection.getresponse()
                data = response.read()
                answer = {k.lower(): v for k, v in response.getheaders()}
            finally:
                connection.close()
            if response.status == 401 and attempt == 0 and self._credentials:
                self._authorization[repository] = self._authorize(
                    answer.get("www-authenticate", ""), repository
                )
                continue
            return response.status, answer, data
        raise AssertionError("unreachable")

    def _authorize(self, challenge: str, repository: str) -> str:
        assert self._credentials is not None
        basic = base64.b64encode(":".join(self._credentials).encode()).decode()
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            return f"Basic {basic}"
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = urllib.parse.urlencode(
            {"service": params.get("service", ""), "scope": f"repository:{repository}:pull,push"}
        )
        realm = urllib.parse.urlsplit(params["realm"])
        connection = http.client.HTTPConnection(realm.netloc, timeout=30)
        try:
            connection.request(
                "GET", f"{realm.path}?{query}", headers={"Authorization": f"Basic {basic}"}
            )
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise PushError(f"token request: HTTP {response.status} {data!r}")
        answer = json.loads(data)
        return f"Bearer {answer.get('token') or answer['access_token']}"


# --- archives (registry-less import) ---------------------------------------------------------


def write_oci_layout(directory: str, named: Mapping[str, Image | Index]) -> None:
    """An OCI image layout: ``oci-layout``, ``index.json`` naming each image by its full
    reference (``org.opencontainers.image.ref.name``), and every blob under ``blobs/``."""
    blobs: list[Blob] = []
    entries = []
    for name, item in named.items():
        top = item.index if isinstance(item, Index) else item.manifest
        images = item.images if isinstance(item, Index) else (item,)
        blobs.append(top)
        for image in images:
            blobs += [image.manifest, image.config, *image.layers]
        entries.append(top.descriptor(annotations={"org.opencontainers.image.ref.name": name}))
    os.makedirs(os.path.join(directory, "blobs", "sha256"), exist_ok=True)
    for blob in blobs:
        with open(os.path.join(directory, "blobs", "sha256", blob.digest[7:]), "wb") as f:
            f.write(blob.data)
    with open(os.path.join(directory, "oci-layout"), "wb") as f:
        f.write(_json({"imageLayoutVersion": "1.0.0"}))
    with open(os.path.join(directory, "index.json"), "wb") as f:
        f.write(_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))


def docker_archive(tagged: Sequence[tuple[Image, Sequence[str]]]) -> bytes:
    """A ``docker save`` tar: ``manifest.json`` naming each image's config, layer tars and
    RepoTags."""
    buffer = io.BytesIO()
    manifest = []
    with tarfile.open(fileobj=buffer, mode="w") as archive:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), _EPOCH
            archive.addfile(info, io.BytesIO(data))

        for image, tags in tagged:
            config_name = f"{image.config.digest[7:]}.json"
            add(config_name, image.config.data)
            layers = []
            for layer in image.layers:
                layers.append(f"{layer.digest[7:]}/layer.tar")
                add(layers[-1], layer.data)
            manifest.append({"Config": config_name, "RepoTags": list(tags), "Layers": layers})
        add("manifest.json", _json(manifest))
    return buffer.getvalue()
