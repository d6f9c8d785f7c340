"""Container lifecycle, execSync, volumes and stats (upstream container.go)."""

from __future__ import annotations

import os
import time

import grpc

from criapi import api_pb2 as pb
from critest.case import case, expect, expect_eq
from critest.fixture import RPC_TIMEOUT, Fixture, describe, expect_rpc_error, is_not_found

AREA = "container"
BASIC = "runtime should support basic operations on container"


def _listed(f: Fixture, container_filter: pb.ContainerFilter) -> list[pb.Container]:
    answer = f.rt.ListContainers(
        pb.ListContainersRequest(filter=container_filter), timeout=RPC_TIMEOUT
    )
    return list(answer.containers)


@case(
    "create a container", area=AREA, spec="runtime should support creating container [Conformance]"
)
def create(f: Fixture) -> None:
    pod_config = f.pod_config()
    pod_id = f.run_pod(pod_config)
    config = f.container_config(labels={"l": "v"}, annotations={"a": "b"})
    container_id = f.create_container(pod_id, pod_config, config)
    listed = _listed(f, pb.ContainerFilter(id=container_id))
    expect_eq([c.id for c in listed], [container_id], "ListContainers(id filter)")
    expect_eq(listed[0].state, pb.CONTAINER_CREATED, "state after CreateContainer")
    expect_eq(listed[0].pod_sandbox_id, pod_id, "Container.pod_sandbox_id")
    status = f.status(container_id)
    expect_eq(status.metadata, config.metadata, "ContainerStatus.metadata")
    expect_eq(dict(status.labels), {"l": "v"}, "ContainerStatus.labels")
    expect_eq(dict(status.annotations), {"a": "b"}, "ContainerStatus.annotations")
    expect(status.created_at > 0, "ContainerStatus.created_at unset")
    expect_eq(status.started_at, 0, "started_at of a created container")


@case(
    "start a container", area=AREA, spec="runtime should support starting container [Conformance]"
)
def start(f: Fixture) -> None:
    _, container_id = f.pod_with_container()
    status = f.status(container_id)
    expect(status.started_at >= status.created_at > 0, "started_at must follow created_at")


@case("stop a container", area=AREA, spec="runtime should support stopping container [Conformance]")
def stop(f: Fixture) -> None:
    _, container_id = f.pod_with_container()
    began = time.monotonic()
    f.stop(container_id, grace=60)
    expect(
        time.monotonic() - began < 30, "a container exiting on SIGTERM took the whole grace period"
    )
    status = f.wait_state(container_id, pb.CONTAINER_EXITED)
    expect(status.finished_at >= status.started_at, "finished_at must follow started_at")


@case("stop with grace 0 kills at once", area=AREA, spec=BASIC)
def stop_kill(f: Fixture) -> None:
    config = f.container_config(command=["sh", "-c", "trap '' TERM; while :; do sleep 1; done"])
    _, container_id = f.pod_with_container(config)
    began = time.monotonic()
    f.stop(container_id, grace=0)
    expect(time.monotonic() - began < 20, "StopContainer(timeout=0) must SIGKILL promptly")
    status = f.wait_state(container_id, pb.CONTAINER_EXITED)
    expect_eq(status.exit_code, 137, "exit code of a SIGKILLed container")


@case(
    "remove a container", area=AREA, spec="runtime should support removing container [Conformance]"
)
def remove(f: Fixture) -> None:
    pod_config = f.pod_config()
    pod_id = f.run_pod(pod_config)
    container_id = f.create_container(pod_id, pod_config)
    f.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT)
    expect_eq(_listed(f, pb.ContainerFilter(id=container_id)), [], "ListContainers after remove")
    error = expect_rpc_error(
        lambda: f.status(container_id), "ContainerStatus of a removed container"
    )
    expect(is_not_found(error), f"want NOT_FOUND, got {describe(error)}")


@case("exit code and reason of a finished container", area=AREA, spec=BASIC)
def exit_status(f: Fixture) -> None:
    config = f.container_config(command=["sh", "-c", "exit 3"])
    pod_config = f.pod_config()
    pod_id = f.run_pod(pod_config)
    container_id = f.create_container(pod_id, pod_config, config)
    f.start(container_id)
    status = f.wait_state(container_id, pb.CONTAINER_EXITED)
    expect_eq(status.exit_code, 3, "exit code")
    expect_eq(status.reason, "Error", "reason of a non-zero exit")
    ok = f.create_container(pod_id, pod_config, f.container_config(command=["true"]))
    f.start(ok)
    expect_eq(f.wait_state(ok, pb.CONTAINER_EXITED).reason, "Completed", "reason of exit 0")


@case("image entrypoint, args, env and working dir", area=AREA, spec=BASIC)
def command_and_env(f: Fixture) -> None:
    config = f.container_config(
        command=["sh", "-c"],
        args=['echo "$FOO:$(pwd)" > /tmp/out; while :; do sleep 1; done'],
        envs=[pb.KeyValue(key="FOO", value="bar baz")],
        working_dir="/etc",
    )
    _, container_id = f.pod_with_container(config)
    expect_eq(f.exec_ok(container_id, ["cat", "/tmp/out"]), "bar baz:/etc\n", "env and cwd")


@case("list containers by state, pod and label", area=AREA, spec=BASIC)
def list_filters(f: Fixture) -> None:
    pod_config = f.pod_config()
    pod_id = f.run_pod(pod_config)
    mark = f.unique("m-")
    created = f.create_container(
        pod_id, pod_config, f.container_config(labels={"mark": mark, "s": "c"})
    )
    running = f.run_container(
        pod_id, pod_config, f.container_config(labels={"mark": mark, "s": "r"})
    )

    def ids(container_filter: pb.ContainerFilter) -> set[str]:
        return {c.id for c in _listed(f, container_filter)}

    expect_eq(ids(pb.ContainerFilter(pod_sandbox_id=pod_id)), {created, running}, "pod filter")
    expect_eq(
        ids(
            pb.ContainerFilter(
                label_selector={"mark": mark},
                state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING),
            )
        ),
        {running},
        "label + RUNNING filter",
    )
    expect_eq(
        ids(
            pb.ContainerFilter(
                label_selector={"mark": mark},
                state=pb.ContainerStateValue(state=pb.CONTAINER_CREATED),
            )
        ),
        {created},
        "label + CREATED filter",
    )
    expect_eq(
        ids(pb.ContainerFilter(label_selector={"mark": mark, "s": "r"})), {running}, "two labels"
    )


@case("execSync", area=AREA, spec="runtime should support execSync [Conformance]")
def exec_sync(f: Fixture) -> None:
    _, container_id = f.pod_with_container()
    answer = f.exec_sync(container_id, ["echo", "hello"])
    expect_eq((answer.stdout, answer.stderr, answer.exit_code), (b"hello\n", b"", 0), "echo hello")
    answer = f.exec_sync(container_id, ["sh", "-c", "echo out; echo err >&2; exit 7"])
    expect_eq(
        (answer.stdout, answer.stderr, answer.exit_code),
        (b"out\n", b"err\n", 7),
        "split streams and exit code",
    )


@case(
    "execSync with timeout",
    area=AREA,
    spec="runtime should support execSync with timeout [Conformance]",
)
def exec_sync_timeout(f: Fixture) -> None:
    _, container_id = f.pod_with_container()
    began = time.monotonic()
    try:
        answer = f.exec_sync(container_id, ["sleep", "600"], timeout=1)
        # Runtimes report the timeout as an RPC error (upstream's expectation) or, as the
        # CRI also allows, a non-zero exit; a zero exit means the timeout was ignored.
        expect(answer.exit_code != 0, "sleep 600 with a 1s timeout ended with exit 0")
    except grpc.RpcError:
        pass
    expect(time.monotonic() - began < 30, "execSync did not honour its 1s timeout")
    leftover = f.exec_ok(container_id, ["sh", "-c", "pgrep -f 'sleep 600' || true"])
    expect_eq(leftover.strip(), "", "the timed-out exec process must be gone")


@case("execSync in a stopped container fails", area=AREA, spec=BASIC)
def exec_stopped(f: Fixture) -> None:
    _, container_id = f.pod_with_container()
    f.stop(container_id)
    f.wait_state(container_id, pb.CONTAINER_EXITED)
    expect_rpc_error(lambda: f.exec_sync(container_id, ["true"]), "ExecSync in an exited container")


def _volume_case(f: Fixture, symlink: bool) -> None:
    host = f.host_dir("volume-")
    (host / "testVolume.file").write_text("flag\n")
    source = host
    if symlink:
        source = host.with_name(host.name + "-symlink")
        os.symlink(host, source)
        f.defer(f"remove {source}", source.unlink)
    config = f.container_config(
        mounts=[pb.Mount(host_path=str(source), container_path=str(source))]
    )
    _, container_id = f.pod_with_container(config)
    listing = f.exec_ok(container_id, ["ls", "-A", str(source)])
    expect_eq(listing.split(), ["testVolume.file"], f"listing of the volume {source}")
    f.exec_ok(container_id, ["sh", "-c", f"echo written > {source}/from-container"])
    expect_eq((host / "from-container").read_text(), "written\n", "write through the volume")


@case(
    "container with a host-path volume",
    area=AREA,
    spec="runtime should support starting container with volume [Conformance]",
)
def volume(f: Fixture) -> None:
    _volume_case(f, symlink=False)


@case(
    "container with a volume whose host path is a symlink",
    area=AREA,
    spec="runtime should support starting container with volume when host path is a symlink "
    "[Conformance]",
)
def volume_symlink(f: Fixture) -> None:
    _volume_case(f, symlink=True)


@case("status reports mounts", area=AREA, spec=BASIC)
def status_mounts(f: Fixture) -> None:
    host = f.host_dir("mounts-")
    config = f.container_config(
        mounts=[pb.Mount(host_path=str(host), container_path="/data", readonly=True)]
    )
    _, container_id = f.pod_with_container(config)
    mounts = [m for m in f.status(container_id).mounts if m.container_path == "/data"]
    expect_eq(len(mounts), 1, "mounts at /data in ContainerStatus")
    expect_eq(mounts[0].host_path, str(host), "host_path")
    expect(mounts[0].readonly, "readonly flag lost in ContainerStatus.mounts")


def _stats_ok(stats: pb.ContainerStats, container_id: str) -> None:
    expect_eq(stats.attributes.id, container_id, "ContainerStats.attributes.id")
    expect(stats.cpu.timestamp > 0, "cpu.timestamp unset")
    expect(stats.memory.timestamp > 0, "memory.timestamp unset")
    expect(stats.memory.HasField("working_set_bytes"), "memory.working_set_bytes unset")


@case("container stats", area=AREA, spec="runtime should support ContainerStats [Conformance]")
def container_stats(f: Fixture) -> None:
    _, container_id = f.pod_with_container()
    f.exec_ok(container_id, ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])

    def probe() -> pb.ContainerStats | None:
        stats = f.rt.ContainerStats(
            pb.ContainerStatsRequest(container_id=container_id), timeout=RPC_TIMEOUT
        ).stats
        return stats if stats.cpu.usage_core_nano_seconds.value > 0 else None

    stats = f.wait_for(probe, 30, "non-zero cpu usage in ContainerStats")
    _stats_ok(stats, container_id)
    expect(stats.memory.working_set_bytes.value > 0, "working set of a running shell is 0")


@case(
    "list container stats with filters",
    area=AREA,
    spec="runtime should support ListContainerStats [Conformance]",
)
def list_stats(f: Fixture) -> None:
    mark = f.unique("m-")
    pod_config = f.pod_config()
    pod_id = f.run_pod(pod_config)
    first = f.run_container(pod_id, pod_config, f.container_config(labels={"mark": mark, "n": "1"}))
    second = f.run_container(
        pod_id, pod_config, f.container_config(labels={"mark": mark, "n": "2"})
    )

    def ids(stats_filter: pb.ContainerStatsFilter) -> set[str]:
        answer = f.rt.ListContainerStats(
            pb.ListContainerStatsRequest(filter=stats_filter), timeout=RPC_TIMEOUT
        )
        for stats in answer.stats:
            if stats.attributes.id in (first, second):
                _stats_ok(stats, stats.attributes.id)
        return {s.attributes.id for s in answer.stats}

    expect(
        {first, second} <= ids(pb.ContainerStatsFilter()), "unfiltered list lacks the containers"
    )
    expect_eq(ids(pb.ContainerStatsFilter(id=first)), {first}, "id filter")
    expect_eq(ids(pb.ContainerStatsFilter(pod_sandbox_id=pod_id)), {first, second}, "pod filter")
    expect_eq(
        ids(pb.ContainerStatsFilter(label_selector={"mark": mark, "n": "2"})),
        {second},
        "label filter",
    )
