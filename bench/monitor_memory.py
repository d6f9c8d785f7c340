"""Benchmark of what supervision costs per container on a real crisp daemon (prints numbers,
asserts nothing):

    python -m bench.monitor_memory [--counts 1,10,50] [--breakdown] [--ksm] [--oci-runtime PATH]
    (as root, from the repository root)

Starts a throw-away daemon on temporary paths and a registry on loopback, then grows to 1,
10 and 50 pods (host network, so no CNI), each with one container running `sleep`, and at
each size prints the PSS/RSS of the containers' monitors (mean, max), of the pods' pause
processes, of the daemon and of its fork server. DESIGN.md's budget: a monitor at most 2 MiB
PSS, a pause process under 1 MiB. `--breakdown` lists the mappings holding most of one
monitor's private memory (from /proc/PID/smaps), to see where it goes. `--oci-runtime
/usr/sbin/runc` runs the containers under that external runtime instead, whose monitors are
runtime/oci_monitor.py's.

Monitors opt in to KSM (runtime/monitor.py), which merges the pages they dirtied alike when
the host runs ksmd; the figures say whether it ran. `--ksm` runs it for the benchmark (the
host's settings are restored afterwards) and waits for three full scans before each figure.

The daemon runs from bytecode compiled beforehand into a temporary cache, as an installed
crisp does (pip compiles it). A daemon compiling its sources as it imports them (a changed
checkout under PYTHONDONTWRITEBYTECODE) leaves the compiler's garbage in the fork server's
heap, which every monitor shares: about 1 MiB more RSS, and PSS to match.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.throwaway import RPC_TIMEOUT, throwaway_crisp
from criapi import api_pb2 as pb
from critest import images as ci
from critest.bench_memory import verbose_pid
from critest.procmem import Memory, memory_of, parent_of
from tests.crisp_daemon import (
    RunningDaemon,
)

KSM = Path("/sys/kernel/mm/ksm")
_KSM_SCAN_TIMEOUT = 300


@contextlib.contextmanager
def ksm_running(pages_to_scan: int = 2000) -> Iterator[None]:
    """ksmd on, scanning faster than its default, for the length of the block."""
    saved = {name: (KSM / name).read_text().strip() for name in ("run", "pages_to_scan")}
    try:
        (KSM / "pages_to_scan").write_text(str(pages_to_scan))
        (KSM / "run").write_text("1")
        yield
    finally:
        for name, value in saved.items():
            (KSM / name).write_text(value)


def ksm_state() -> str:
    try:
        running = (KSM / "run").read_text().strip() == "1"
    except OSError:
        return "KSM: not in this kernel"
    return "KSM: running" if running else "KSM: off (monitors' alike pages are not merged)"


def wait_for_ksm_scans(scans: int = 3) -> None:
    """Until ksmd has gone over all opted-in memory `scans` times since now."""
    target = int((KSM / "full_scans").read_text()) + scans
    deadline = time.monotonic() + _KSM_SCAN_TIMEOUT
    while int((KSM / "full_scans").read_text()) < target and time.monotonic() < deadline:
        time.sleep(0.5)


def compiled_beforehand(cache: Path) -> None:
    """Have the daemons started from now on read bytecode that `cache` already holds."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(cache)
    subprocess.run(
        [sys.executable, "-c", "import runtime.entry_points, cri.cli, cri.daemon"], check=True
    )


OCI_HANDLER = "oci"


def _oci_handler_config(path: str) -> str:
    """crisp's configuration with the external runtime at `path` as handler OCI_HANDLER."""
    return f'[runtime.handlers.{OCI_HANDLER}]\nkind = "oci"\npath = "{path}"\n'


def _run_pod(daemon: RunningDaemon, index: int, handler: str) -> tuple[str, pb.PodSandboxConfig]:
    options = pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD)
    pod_config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=f"m{index}", uid=f"m{index}", namespace="bench"),
        linux=pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(namespace_options=options)
        ),
    )
    request = pb.RunPodSandboxRequest(config=pod_config, runtime_handler=handler)
    pod_id = daemon.runtime.RunPodSandbox(request, timeout=RPC_TIMEOUT).pod_sandbox_id
    return pod_id, pod_config


def _run_container(
    daemon: RunningDaemon, pod_id: str, pod_config: pb.PodSandboxConfig, image: str
) -> str:
    rt = daemon.runtime
    options = pb.NamespaceOption(pid=pb.CONTAINER)
    config = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="sleeper"),
        image=pb.ImageSpec(image=image),
        command=["sleep", "100000"],
        linux=pb.LinuxContainerConfig(
            security_context=pb.LinuxContainerSecurityContext(namespace_options=options)
        ),
    )
    request = pb.CreateContainerRequest(
        pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config
    )
    container_id = rt.CreateContainer(request, timeout=RPC_TIMEOUT).container_id
    rt.StartContainer(pb.StartContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT)
    return container_id


def _monitor_pid(daemon: RunningDaemon, container_id: str) -> int:
    """The monitor is the parent of the container's first process."""
    request = pb.ContainerStatusRequest(container_id=container_id, verbose=True)
    pid = verbose_pid(daemon.runtime.ContainerStatus(request, timeout=RPC_TIMEOUT).info)
    parent = parent_of(pid)
    assert parent is not None, f"container {container_id} has no process"
    return parent


def _pause_pid(daemon: RunningDaemon, pod_id: str) -> int:
    request = pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
    return verbose_pid(daemon.runtime.PodSandboxStatus(request, timeout=RPC_TIMEOUT).info)


def _zygote_pid(daemon_pid: int) -> int:
    for entry in Path(f"/proc/{daemon_pid}/task/{daemon_pid}/children").read_text().split():
        if Path(f"/proc/{entry}/comm").read_text().strip() == "crisp-zygote":
            return int(entry)
    raise RuntimeError("the daemon has no fork server")


def _summary(label: str, samples: Sequence[Memory]) -> str:
    pss = [m.pss_kib for m in samples]
    rss = [m.rss_kib for m in samples]
    private = [m.private_kib for m in samples]
    return (
        f"  {label:<9} PSS mean {statistics.mean(pss):6.0f} max {max(pss):6d} KiB   "
        f"RSS mean {statistics.mean(rss):6.0f} max {max(rss):6d} KiB   "
        f"private mean {statistics.mean(private):6.0f} KiB   (n={len(samples)})"
    )


def _measured(pids: Sequence[int]) -> list[Memory]:
    samples = [memory_of(pid) for pid in pids]
    return [m for m in samples if m is not None]


def _breakdown(pid: int, top: int = 12) -> None:
    """The mappings with the most private memory, summed by what they map."""
    private: dict[str, int] = {}
    current = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if not head[0].endswith(":"):  # a mapping's header: address perms offset dev inode [path]
            current = head[5] if len(head) > 5 else "[anonymous]"
        elif head[0] in ("Private_Dirty:", "Private_Clean:"):
            private[current] = private.get(current, 0) + int(head[1])
    print(f"  private memory of monitor {pid} by mapping (KiB):")
    for name, kib in sorted(private.items(), key=lambda item: -item[1])[:top]:
        print(f"    {kib:7d}  {name}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.monitor_memory")
    parser.add_argument("--counts", default="1,10,50", help="pod counts to measure at")
    parser.add_argument("--breakdown", action="store_true", help="where one monitor's memory is")
    parser.add_argument("--ksm", action="store_true", help="run the host's KSM for the benchmark")
    parser.add_argument("--oci-runtime", metavar="PATH", help="an external runtime (runc, crun)")
    args = parser.parse_args(argv)
    counts = sorted(int(c) for c in args.counts.split(","))
    with ksm_running() if args.ksm else contextlib.nullcontext():
        measure(counts, args.breakdown, args.ksm, args.oci_runtime)
    return 0


def measure(
    counts: Sequence[int], breakdown: bool, wait_for_ksm: bool, oci_runtime: str | None = None
) -> None:
    image = ci.busybox_image(ci.RunConfig(cmd=("sleep", "100000")))
    config = _oci_handler_config(oci_runtime) if oci_runtime is not None else ""
    pods: list[str] = []
    with throwaway_crisp(
        "mm",
        image,
        "bench/sleep",
        config,
        before_start=lambda base: compiled_beforehand(base / "pycache"),
    ) as crisp:
        daemon, ref = crisp.daemon, crisp.image
        try:
            daemon_pid = daemon.process.pid
            zygote_pid = _zygote_pid(daemon_pid)
            containers: list[str] = []
            for count in counts:
                while len(pods) < count:
                    handler = OCI_HANDLER if oci_runtime is not None else ""
                    pod_id, pod_config = _run_pod(daemon, len(pods), handler)
                    pods.append(pod_id)
                    containers.append(_run_container(daemon, pod_id, pod_config, ref))
                time.sleep(1)  # let start-up pages settle (log files opened, first output)
                if wait_for_ksm:
                    wait_for_ksm_scans()
                monitors = [_monitor_pid(daemon, c) for c in containers]
                pauses = [p for p in (_pause_pid(daemon, pod) for pod in pods) if p]
                print(f"{count} pod(s), one container each ({ksm_state()}):")
                print(_summary("monitor", _measured(monitors)))
                if pauses:
                    print(_summary("pause", _measured(pauses)))
                print(_summary("daemon", _measured([daemon_pid])))
                print(_summary("zygote", _measured([zygote_pid])))
                if breakdown:
                    _breakdown(monitors[0])
        finally:
            _remove_everything(daemon, pods)


def _remove_everything(daemon: RunningDaemon, pods: Sequence[str]) -> None:
    rt = daemon.runtime
    for pod_id in pods:
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT)
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT)


if __name__ == "__main__":
    sys.exit(main())
