"""Fake CNI plugins: tiny shell scripts that record their environment and stdin and
answer with canned output, so chaining, caching and error handling are tested without
touching the host's network."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FAKE_PLUGIN = """#!/bin/sh
state="$(dirname "$0")/state"
name="$(basename "$0")"
cmd="$CNI_COMMAND"
cat > "$state/$name.$cmd.stdin"
env | grep '^CNI_' | sort > "$state/$name.$cmd.env"
echo "$name $cmd" >> "$state/calls.log"
[ -f "$state/$name.$cmd.sleep" ] && sleep "$(cat "$state/$name.$cmd.sleep")"
[ -f "$state/$name.$cmd.out" ] && cat "$state/$name.$cmd.out"
[ -f "$state/$name.$cmd.rc" ] && exit "$(cat "$state/$name.$cmd.rc")"
exit 0
"""

ALL_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def make_result_doc(
    version: str = "1.0.0", ip: str = "10.88.0.5/24", ifname: str = "eth0"
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "cniVersion": version,
        "interfaces": [
            {"name": "cni0", "mac": "aa:bb:cc:dd:ee:00"},
            {"name": ifname, "mac": "aa:bb:cc:dd:ee:01", "sandbox": "/var/run/netns/x"},
        ],
        "ips": [{"address": ip, "gateway": "10.88.0.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.88.0.1"}],
        "dns": {"nameservers": ["10.96.0.10"]},
    }
    if not version.startswith("1."):
        doc["ips"][0]["version"] = "4"
    return doc


@pytest.fixture
def result_doc() -> Callable[..., dict[str, Any]]:
    """result_doc(version="1.0.0", ip="10.88.0.5/24", ifname="eth0"): a plugin result."""
    return make_result_doc


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A bin dir for fake plugins; their records land in `<bin>/state`."""
    bin_dir = tmp_path / "bin"
    (bin_dir / "state").mkdir(parents=True)
    return bin_dir


@pytest.fixture
def fake_state(fake_bin: Path) -> Path:
    return fake_bin / "state"


@pytest.fixture
def make_plugin(fake_bin: Path) -> Callable[..., Path]:
    """make_plugin(name, versions=..., add=result dict, **{"DEL.rc": "1", ...})."""

    def make(
        name: str,
        versions: list[str] | None = None,
        add: dict[str, Any] | None = None,
        **responses: str,
    ) -> Path:
        path = fake_bin / name
        path.write_text(FAKE_PLUGIN)
        path.chmod(0o755)
        state = fake_bin / "state"
        supported = versions if versions is not None else ALL_VERSIONS
        version_doc = {"cniVersion": supported[-1], "supportedVersions": supported}
        (state / f"{name}.VERSION.out").write_text(json.dumps(version_doc))
        (state / f"{name}.ADD.out").write_text(
            json.dumps(add if add is not None else make_result_doc())
        )
        for key, value in responses.items():
            (state / f"{name}.{key}").write_text(value)
        return path

    return make


@pytest.fixture
def write_conf(tmp_path: Path) -> Callable[..., Path]:
    """write_conf(filename, doc or raw text) into a fresh conf dir, returning the file."""
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()

    def write(filename: str, doc: dict[str, Any] | str) -> Path:
        path = conf_dir / filename
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        return path

    return write


@pytest.fixture
def calls(fake_state: Path) -> Callable[[], list[str]]:
    """The fake plugin invocations so far, as "name COMMAND" lines."""

    def read() -> list[str]:
        log = fake_state / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    return read


@pytest.fixture
def env_of(fake_state: Path) -> Callable[[str, str], dict[str, str]]:
    """The CNI_* environment of a plugin's last invocation of a command."""

    def read(name: str, command: str) -> dict[str, str]:
        lines = (fake_state / f"{name}.{command}.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines)

    return read


@pytest.fixture
def stdin_of(fake_state: Path) -> Callable[[str, str], dict[str, Any]]:
    """The stdin config of a plugin's last invocation of a command."""

    def read(name: str, command: str) -> dict[str, Any]:
        doc = json.loads((fake_state / f"{name}.{command}.stdin").read_text())
        assert isinstance(doc, dict)
        return doc

    return read
