"""Runtime info: Version, Status, RuntimeConfig, ImageFsInfo (upstream runtime_info.go)."""

from __future__ import annotations

from criapi import api_pb2 as pb
from critest.case import case, expect, expect_eq
from critest.fixture import RPC_TIMEOUT, Fixture

AREA = "runtime-info"


@case("version reports all four fields", area=AREA, spec="runtime should return version info")
def version(f: Fixture) -> None:
    answer = f.rt.Version(pb.VersionRequest(version="v1"), timeout=RPC_TIMEOUT)
    expect(answer.version, "Version.version is empty")
    expect(answer.runtime_name, "Version.runtime_name is empty")
    expect(answer.runtime_version, "Version.runtime_version is empty")
    expect_eq(answer.runtime_api_version, "v1", "Version.runtime_api_version")


@case(
    "status reports RuntimeReady and NetworkReady true",
    area=AREA,
    spec="runtime should return runtime conditions",
)
def status(f: Fixture) -> None:
    conditions = {c.type: c for c in f.runtime_status().status.conditions}
    for wanted in ("RuntimeReady", "NetworkReady"):
        expect(wanted in conditions, f"Status lacks the {wanted} condition")
        expect(
            conditions[wanted].status,
            f"{wanted} is false: {conditions[wanted].reason} {conditions[wanted].message}",
        )


@case("verbose status carries info", area=AREA, spec="runtime should return runtime conditions")
def status_verbose(f: Fixture) -> None:
    answer = f.rt.Status(pb.StatusRequest(verbose=True), timeout=RPC_TIMEOUT)
    expect(answer.info, "Status(verbose=true) returned no info map")


@case("image filesystem info", area=AREA, spec="runtime should support ImageFsInfo")
def image_fs_info(f: Fixture) -> None:
    answer = f.img.ImageFsInfo(pb.ImageFsInfoRequest(), timeout=RPC_TIMEOUT)
    expect(answer.image_filesystems, "ImageFsInfo returned no image filesystem")
    for usage in answer.image_filesystems:
        expect(usage.fs_id.mountpoint, "image filesystem without a mountpoint")
        expect(usage.timestamp > 0, "image filesystem usage without a timestamp")
        expect(usage.HasField("used_bytes"), "image filesystem without used_bytes")
