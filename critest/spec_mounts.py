"""Mount propagation and (recursive) read-only mounts (upstream container_linux.go)."""

from __future__ import annotations

from pathlib import Path

from criapi import api_pb2 as pb
from critest import hostmount
from critest.case import case, expect, expect_eq, skip
from critest.fixture import Fixture, expect_rpc_error

AREA = "mounts"
RRO = "runtime should support readonly mounts"


def _privileged_pod(f: Fixture) -> tuple[str, pb.PodSandboxConfig]:
    config = f.pod_config()
    config.linux.security_context.privileged = True
    return f.run_pod(config), config


def _propagation(f: Fixture, propagation: pb.MountPropagation.ValueType) -> None:
    base = f.host_dir("propagation-")
    source = base / "mnt"
    host_point = source / "propagationMnt"
    host_point.mkdir(parents=True)
    flag_dir = base / "propagationSrcDir"
    flag_dir.mkdir()
    (flag_dir / "flagFile").write_text("")
    # The source must be a mount point of the right kind for the runtime to honour it.
    hostmount.bind(str(source), str(source))
    f.defer(f"unmount {source}", lambda: hostmount.unmount(str(source)))
    if propagation == pb.PROPAGATION_PRIVATE:
        hostmount.make_private(str(source))
    else:
        hostmount.make_shared(str(source))

    pod_id, pod_config = _privileged_pod(f)
    config = f.container_config(
        mounts=[
            pb.Mount(host_path=str(source), container_path=str(source), propagation=propagation)
        ]
    )
    config.linux.security_context.privileged = True
    container_id = f.run_container(pod_id, pod_config, config)
    mounts = [m for m in f.status(container_id).mounts if m.container_path == str(source)]
    expect_eq(len(mounts), 1, "ContainerStatus.mounts entries for the volume")
    expect_eq(mounts[0].propagation, propagation, "ContainerStatus.mounts[].propagation")

    hostmount.bind(str(flag_dir), str(host_point))
    f.defer(f"unmount {host_point}", lambda: hostmount.unmount(str(host_point)))
    seen = f.exec_ok(container_id, ["ls", "-A", str(host_point)]).split()
    if propagation == pb.PROPAGATION_PRIVATE:
        expect_eq(seen, [], "a host mount seen through an rprivate volume")
    else:
        expect_eq(seen, ["flagFile"], "a host mount through an rslave/rshared volume")

    container_point = source / "containerMntPoint"
    f.shell(container_id, f"mkdir -p {container_point} && mount --bind /etc {container_point}")
    on_host = sorted(p.name for p in container_point.iterdir())
    if propagation == pb.PROPAGATION_BIDIRECTIONAL:
        f.defer(f"unmount {container_point}", lambda: hostmount.unmount(str(container_point)))
        expect("passwd" in on_host, "a container mount did not reach the host through rshared")
    else:
        expect_eq(on_host, [], "a container mount leaked to the host")


@case(
    "rprivate volume does not propagate",
    area=AREA,
    spec="mount with 'rprivate' should not support propagation",
    tags=["privileged"],
)
def rprivate(f: Fixture) -> None:
    _propagation(f, pb.PROPAGATION_PRIVATE)


@case(
    "rshared volume propagates both ways",
    area=AREA,
    spec="mount with 'rshared' should support propagation from host to container and vice versa",
    tags=["privileged"],
)
def rshared(f: Fixture) -> None:
    _propagation(f, pb.PROPAGATION_BIDIRECTIONAL)


@case(
    "rslave volume propagates host to container",
    area=AREA,
    spec="mount with 'rslave' should support propagation from host to container",
    tags=["privileged"],
)
def rslave(f: Fixture) -> None:
    _propagation(f, pb.PROPAGATION_HOST_TO_CONTAINER)


def _tmpfs_volume(f: Fixture) -> Path:
    """A host directory holding a tmpfs mount at ``tmpfs/``, as upstream's RRO fixture."""
    base = f.host_dir("rro-")
    point = base / "tmpfs"
    point.mkdir()
    hostmount.tmpfs(str(point))
    f.defer(f"unmount {point}", lambda: hostmount.unmount(str(point)))
    return base


def _supports_rro(f: Fixture) -> None:
    features = f.handler_features()
    if features is None or not features.recursive_read_only_mounts:
        skip("the runtime does not report recursive_read_only_mounts for its handler")


@case(
    "read-only mount leaves submounts writable",
    area=AREA,
    spec="should support non-recursive readonly mounts",
)
def readonly(f: Fixture) -> None:
    base = _tmpfs_volume(f)
    config = f.container_config(
        mounts=[pb.Mount(host_path=str(base), container_path="/mnt", readonly=True)]
    )
    _, container_id = f.pod_with_container(config)
    answer = f.exec_sync(container_id, ["touch", "/mnt/file"])
    expect(answer.exit_code != 0, "wrote into a read-only mount")
    f.exec_ok(container_id, ["touch", "/mnt/tmpfs/file"])


@case(
    "recursive read-only mount makes submounts read-only",
    area=AREA,
    spec="should support recursive readonly mounts",
)
def recursive_readonly(f: Fixture) -> None:
    _supports_rro(f)
    base = _tmpfs_volume(f)
    mount = pb.Mount(
        host_path=str(base), container_path="/mnt", readonly=True, recursive_read_only=True
    )
    _, container_id = f.pod_with_container(f.container_config(mounts=[mount]))
    answer = f.exec_sync(container_id, ["touch", "/mnt/tmpfs/foo"])
    expect(answer.exit_code != 0, "wrote into a submount of a recursive read-only mount")
    expect(b"Read-only file system" in answer.stderr, f"unexpected error: {answer.stderr!r}")


def _rro_rejected(f: Fixture, mount: pb.Mount) -> None:
    _supports_rro(f)
    mount.host_path = str(_tmpfs_volume(f))
    mount.container_path = "/mnt"
    pod_config = f.pod_config()
    pod_id = f.run_pod(pod_config)
    config = f.container_config(mounts=[mount])
    expect_rpc_error(
        lambda: f.create_container(pod_id, pod_config, config),
        "CreateContainer with an invalid recursive read-only mount",
    )


@case(
    "recursive read-only rejected with rslave",
    area=AREA,
    spec="should reject a recursive readonly mount with PROPAGATION_HOST_TO_CONTAINER",
)
def rro_rslave(f: Fixture) -> None:
    _rro_rejected(
        f,
        pb.Mount(
            readonly=True, recursive_read_only=True, propagation=pb.PROPAGATION_HOST_TO_CONTAINER
        ),
    )


@case(
    "recursive read-only rejected with rshared",
    area=AREA,
    spec="should reject a recursive readonly mount with PROPAGATION_BIDIRECTIONAL",
)
def rro_rshared(f: Fixture) -> None:
    _rro_rejected(
        f,
        pb.Mount(readonly=True, recursive_read_only=True, propagation=pb.PROPAGATION_BIDIRECTIONAL),
    )


@case(
    "recursive read-only rejected without read-only",
    area=AREA,
    spec="should reject a recursive readonly mount with ReadOnly: false",
)
def rro_not_readonly(f: Fixture) -> None:
    _rro_rejected(f, pb.Mount(readonly=False, recursive_read_only=True))
