from __future__ import annotations

import json
from typing import Any

import pytest

from imagesvc import mediatypes as mt
from imagesvc.digest import Digest
from imagesvc.errors import InvalidManifest
from imagesvc.imageconfig import parse_image_config
from imagesvc.manifest import Descriptor, Manifest

D0, D1 = Digest.of(b"layer0"), Digest.of(b"layer1")


def config(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "created": "2024-01-01T00:00:00Z",
        "architecture": "arm64",
        "variant": "v8",
        "os": "linux",
        "config": {
            "User": "1000:1000",
            "Env": ["PATH=/usr/bin", "A=b=c"],
            "Entrypoint": ["/entry"],
            "Cmd": None,
            "WorkingDir": "/app",
            "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
            "Volumes": {"/data": {}},
            "Labels": {"maintainer": "me"},
            "StopSignal": "SIGQUIT",
        },
        "rootfs": {"type": "layers", "diff_ids": [str(D0), str(D1)]},
        "history": [{"created_by": "x"}],
    }
    doc.update(overrides)
    return doc


def test_parses_runtime_fields() -> None:
    c = parse_image_config(json.dumps(config()).encode())
    assert (c.os, c.architecture, c.variant) == ("linux", "arm64", "v8")
    assert c.diff_ids == (D0, D1)
    assert c.user == "1000:1000"
    assert c.env == ("PATH=/usr/bin", "A=b=c")
    assert c.entrypoint == ("/entry",)
    assert c.cmd is None
    assert c.working_dir == "/app"
    assert c.exposed_ports == ("53/udp", "8080/tcp")
    assert c.volumes == ("/data",)
    assert c.labels == {"maintainer": "me"}
    assert c.stop_signal == "SIGQUIT"
    assert c.created == "2024-01-01T00:00:00Z"


def test_minimal_config() -> None:
    c = parse_image_config(
        b'{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}'
    )
    assert c.diff_ids == ()
    assert c.entrypoint is None and c.cmd is None and c.env == ()
    assert c.variant is None and c.labels == {}


def test_check_manifest_layer_count() -> None:
    c = parse_image_config(json.dumps(config()).encode())
    layer = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", D0, 1)
    cfg = Descriptor(mt.OCI_CONFIG, D0, 1)
    c.check_manifest(Manifest(mt.OCI_MANIFEST, cfg, (layer, layer)))
    with pytest.raises(InvalidManifest, match="2 diff IDs for 1 manifest layers"):
        c.check_manifest(Manifest(mt.OCI_MANIFEST, cfg, (layer,)))


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (config(rootfs=None), "rootfs must be an object"),
        (config(rootfs={"type": "tar", "diff_ids": []}), "of type 'layers'"),
        (config(rootfs={"type": "layers"}), "diff_ids must be a list"),
        (config(rootfs={"type": "layers", "diff_ids": ["sha256:12"]}), "64 hex"),
        (config(os=None), "os must be a non-empty string"),
        (config(architecture=""), "architecture must be a non-empty string"),
        (config(config=[]), "config must be an object"),
        (config(config={"Env": "A=b"}), "Env must be a list of strings"),
        (config(config={"Cmd": ["sh", 1]}), "Cmd must be a list of strings"),
        (config(config={"Labels": {"a": 1}}), "Labels must map"),
        (config(config={"ExposedPorts": ["80"]}), "ExposedPorts must be an object"),
        (config(config={"User": 0}), "User must be a string"),
    ],
)
def test_rejects(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidManifest, match=reason):
        parse_image_config(json.dumps(doc).encode())


@pytest.mark.parametrize("data", [b"nope", b"[1]"])
def test_rejects_non_objects(data: bytes) -> None:
    with pytest.raises(InvalidManifest, match="image config"):
        parse_image_config(data)
