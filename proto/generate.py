#!/usr/bin/env python3
"""Regenerate (or verify) the Python stubs of the CRI v1 schema.

The schema lives in ``proto/api.proto``; the generated package is ``criapi``
(``proto/criapi/``), importable as ``criapi.api_pb2`` and ``criapi.api_pb2_grpc``.

protoc is told that the virtual directory ``criapi/`` is the disk directory
``proto/`` (``--proto_path=criapi=proto``), so the schema compiles as
``criapi/api.proto`` and the generated modules import each other as
``criapi.api_pb2``.

Usage::

    python proto/generate.py          # rewrite proto/criapi/api_pb2*.py[i]
    python proto/generate.py --check  # exit 1 if the committed stubs are stale

Output depends only on the schema and on the pinned generator versions
(grpcio-tools, mypy-protobuf in pyproject.toml), so it is the same on every run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PACKAGE = "criapi"
SCHEMA = "api.proto"
PACKAGE_DIR = PROTO_DIR / PACKAGE
GENERATED_FILES = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py", "api_pb2_grpc.pyi")
GENERATORS = ("grpcio-tools", "mypy-protobuf", "protobuf")


class GenerationError(RuntimeError):
    """protoc or one of its plugins failed."""


def find_plugin(name: str) -> Path:
    """Locate a protoc plugin: next to this interpreter first, then on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return beside
    found = shutil.which(name)
    if found is None:
        raise GenerationError(f"{name} not found; install the dev extras (pip install -e '.[dev]')")
    return Path(found)


def protoc_command(out_dir: Path) -> list[str]:
    """The protoc invocation that writes the four stub files under out_dir/criapi/."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    out = str(out_dir)
    return [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PACKAGE}={PROTO_DIR}",
        f"--proto_path={well_known}",
        f"--plugin=protoc-gen-mypy={find_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={find_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        f"{PACKAGE}/{SCHEMA}",
    ]


def generate_into(out_dir: Path) -> Path:
    """Run protoc into out_dir; return the directory holding the generated files."""
    result = subprocess.run(protoc_command(out_dir), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise GenerationError(f"protoc failed ({result.returncode}):\n{result.stderr}")
    generated = out_dir / PACKAGE
    missing = [name for name in GENERATED_FILES if not (generated / name).is_file()]
    if missing:
        raise GenerationError(f"protoc did not produce: {', '.join(missing)}")
    return generated


def generator_versions() -> str:
    parts: list[str] = []
    for dist in GENERATORS:
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist} (not installed)")
    return ", ".join(parts)


def stale_files(fresh_dir: Path) -> list[str]:
    """Names of committed stub files that differ from (or lack) a fresh generation."""
    stale: list[str] = []
    for name in GENERATED_FILES:
        committed = PACKAGE_DIR / name
        if not committed.is_file() or committed.read_bytes() != (fresh_dir / name).read_bytes():
            stale.append(name)
    return stale


def check() -> int:
    with tempfile.TemporaryDirectory(prefix="criapi-check-") as tmp:
        stale = stale_files(generate_into(Path(tmp)))
    if not stale:
        print(f"{PACKAGE} stubs are up to date with {SCHEMA}")
        return 0
    print(f"{PACKAGE} stubs are stale; run `make proto` (or python proto/generate.py):")
    for name in stale:
        print(f"  proto/{PACKAGE}/{name}")
    print(f"generators here: {generator_versions()}")
    return 1


def write() -> int:
    PACKAGE_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="criapi-gen-") as tmp:
        fresh = generate_into(Path(tmp))
        for name in GENERATED_FILES:
            shutil.copyfile(fresh / name, PACKAGE_DIR / name)
    print(f"wrote {', '.join(f'proto/{PACKAGE}/{n}' for n in GENERATED_FILES)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="generate into a temporary directory and exit 1 if the committed stubs differ",
    )
    args = parser.parse_args(argv)
    try:
        return check() if args.check else write()
    except GenerationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
