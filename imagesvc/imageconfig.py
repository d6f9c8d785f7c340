"""The image configuration blob (OCI ``config.v1`` / Docker ``container.image.v1``):
what the runtime needs to run an image, and the diff IDs that name its layers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagesvc.digest import Digest
from imagesvc.errors import InvalidDigest, InvalidManifest
from imagesvc.manifest import Manifest

_WHAT = "image config"


@dataclass(frozen=True)
class ImageConfig:
    os: str
    architecture: str
    diff_ids: tuple[Digest, ...]
    variant: str | None = None
    user: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    working_dir: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    created: str | None = None

    def check_manifest(self, manifest: Manifest) -> None:
        """A manifest and its config must agree on the number of layers, or the chain
        IDs computed from the config would name the wrong directories."""
        if len(manifest.layers) != len(self.diff_ids):
            raise InvalidManifest(
                _WHAT,
                f"{len(self.diff_ids)} diff IDs for {len(manifest.layers)} manifest layers",
            )


def parse_image_config(data: bytes) -> ImageConfig:
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidManifest(_WHAT, f"not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise InvalidManifest(_WHAT, "top level must be a JSON object")
    rootfs = raw.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise InvalidManifest(_WHAT, "rootfs must be an object of type 'layers'")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise InvalidManifest(_WHAT, "rootfs.diff_ids must be a list of digests")
    try:
        parsed_ids = tuple(Digest.parse(d) for d in diff_ids)
    except InvalidDigest as err:
        raise InvalidManifest(_WHAT, str(err)) from None
    run = raw.get("config")
    if run is None:
        run = {}
    if not isinstance(run, dict):
        raise InvalidManifest(_WHAT, "config must be an object")
    labels = run.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise InvalidManifest(_WHAT, "config.Labels must map strings to strings")
    return ImageConfig(
        os=_string(raw, "os", required=True),
        architecture=_string(raw, "architecture", required=True),
        variant=_string(raw, "variant") or None,
        diff_ids=parsed_ids,
        user=_string(run, "User"),
        env=_strings(run, "Env") or (),
        entrypoint=_strings(run, "Entrypoint"),
        cmd=_strings(run, "Cmd"),
        working_dir=_string(run, "WorkingDir"),
        exposed_ports=_keys(run, "ExposedPorts"),
        volumes=_keys(run, "Volumes"),
        labels=dict(labels),
        stop_signal=_string(run, "StopSignal"),
        created=_string(raw, "created") or None,
    )


def _string(raw: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = raw.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        kind = "a non-empty string" if required else "a string"
        raise InvalidManifest(_WHAT, f"{key} must be {kind}")
    return value


def _strings(raw: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    # null and absent mean "not set", which differs from [] for Entrypoint/Cmd overrides.
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidManifest(_WHAT, f"config.{key} must be a list of strings")
    return tuple(value)


def _keys(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise InvalidManifest(_WHAT, f"config.{key} must be an object")
    return tuple(sorted(value))
