"""Resource limits: the OOM kill reason (upstream container_linux.go "Container OOM") and
UpdateContainerResources (upstream lacks a case)."""

from __future__ import annotations

from criapi import api_pb2 as pb
from critest.case import case, expect_eq
from critest.fixture import RPC_TIMEOUT, Fixture

AREA = "resources"
MIB = 1024 * 1024
# v2 files first; cgroup v1 hosts mount each controller's directory of the container.
READ_MEMORY_LIMIT = (
    "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
)
READ_CPU = (
    "cat /sys/fs/cgroup/cpu.max 2>/dev/null || "
    "echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"
)


@case(
    "OOM-killed container exits 137 with reason OOMKilled",
    area=AREA,
    spec="should terminate with exitCode 137 and reason OOMKilled",
)
def oom(f: Fixture) -> None:
    config = f.container_config(
        command=["sh", "-c", "dd if=/dev/zero of=/dev/null bs=20M"],
        linux=pb.LinuxContainerConfig(
            resources=pb.LinuxContainerResources(
                memory_limit_in_bytes=15 * MIB, memory_swap_limit_in_bytes=15 * MIB
            )
        ),
    )
    pod_config = f.pod_config()
    pod_id = f.run_pod(pod_config)
    container_id = f.create_container(pod_id, pod_config, config)
    f.start(container_id)
    status = f.wait_state(container_id, pb.CONTAINER_EXITED)
    expect_eq((status.exit_code, status.reason), (137, "OOMKilled"), "exit code and reason")


@case("update memory and CPU limits of a running container", area=AREA, spec="")
def update_resources(f: Fixture) -> None:
    config = f.container_config(
        linux=pb.LinuxContainerConfig(
            resources=pb.LinuxContainerResources(memory_limit_in_bytes=256 * MIB)
        )
    )
    _, container_id = f.pod_with_container(config)
    expect_eq(int(f.shell(container_id, READ_MEMORY_LIMIT)), 256 * MIB, "memory limit at create")
    update = pb.LinuxContainerResources(
        memory_limit_in_bytes=128 * MIB, cpu_period=100000, cpu_quota=50000, cpu_shares=512
    )
    f.rt.UpdateContainerResources(
        pb.UpdateContainerResourcesRequest(container_id=container_id, linux=update),
        timeout=RPC_TIMEOUT,
    )
    expect_eq(int(f.shell(container_id, READ_MEMORY_LIMIT)), 128 * MIB, "memory limit after update")
    expect_eq(
        f.shell(container_id, READ_CPU).split(),
        ["50000", "100000"],
        "CPU quota and period after update",
    )
    status = f.status(container_id)
    if status.HasField("resources"):  # reported since CRI v1.27; older runtimes leave it out
        expect_eq(
            status.resources.linux.memory_limit_in_bytes,
            128 * MIB,
            "ContainerStatus.resources memory",
        )
