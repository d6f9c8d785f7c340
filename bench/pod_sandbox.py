"""Benchmark: RunPodSandbox / StopPodSandbox / RemovePodSandbox latency (p50/p90/p99), one by
one and N in parallel, plus the PSS of the pause processes. Prints numbers; never judges them.

    python -m bench.pod_sandbox [--pods 100] [--parallel 10] [--endpoint unix:///run/x.sock]

Without --endpoint it starts a throw-away crisp daemon on temporary paths, with a bridge of
its own on a free 10.199.x.0/24, and removes all of it afterwards. With --endpoint it measures
any CRI runtime (speaking CRI only), e.g. containerd for comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from pyroute2 import IPRoute

from criapi import api_pb2 as pb
from criapi import api_pb2_grpc as pb_grpc
from tests.hostnet import free_subnet, remove_portmap_chains


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return (
        f"p50 {statistics.median(ordered) * 1000:7.1f} ms  p90 {at(0.9):7.1f} ms  "
        f"p99 {at(0.99):7.1f} ms  (n={len(ordered)})"
    )


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _config(run: str, index: int) -> pb.PodSandboxConfig:
    meta = pb.PodSandboxMetadata(name=f"bench-{index}", namespace=run, uid=f"{run}-{index}")
    options = pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD)
    linux = pb.LinuxPodSandboxConfig(
        security_context=pb.LinuxSandboxSecurityContext(namespace_options=options)
    )
    return pb.PodSandboxConfig(metadata=meta, hostname=f"bench-{index}", linux=linux)


def _pss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except OSError:
        return None


def measure(runtime: pb_grpc.RuntimeServiceStub, pods: int, parallel: int) -> None:
    run = f"bench-{secrets.token_hex(3)}"
    for workers in (1, parallel):
        label = "sequential" if workers == 1 else f"{workers} in parallel"
        timings = _round(runtime, f"{run}-{workers}", pods, workers)
        print(f"{pods} pods, {label}:")
        for verb, samples in timings.items():
            print(f"  {verb:18} {_percentiles(samples)}")


def _round(
    runtime: pb_grpc.RuntimeServiceStub, run: str, pods: int, workers: int
) -> dict[str, list[float]]:
    ids: list[str] = []

    def start(index: int) -> float:
        request = pb.RunPodSandboxRequest(config=_config(run, index))
        started = time.perf_counter()
        ids.append(runtime.RunPodSandbox(request, timeout=120).pod_sandbox_id)
        return time.perf_counter() - started

    def stop(pod_id: str) -> float:
        request = pb.StopPodSandboxRequest(pod_sandbox_id=pod_id)
        return _timed(lambda: runtime.StopPodSandbox(request, timeout=120))

    def remove(pod_id: str) -> float:
        request = pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id)
        return _timed(lambda: runtime.RemovePodSandbox(request, timeout=120))

    timings: dict[str, list[float]] = {}
    try:
        with ThreadPoolExecutor(workers) as pool:
            timings["RunPodSandbox"] = list(pool.map(start, range(pods)))
            if workers == 1:
                _report_pause(runtime, ids[:10])
            timings["StopPodSandbox"] = list(pool.map(stop, list(ids)))
            timings["RemovePodSandbox"] = list(pool.map(remove, list(ids)))
    finally:
        for pod_id in ids:  # whatever happened, leave no pod behind
            with contextlib.suppress(grpc.RpcError):
                runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
                runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    return timings


def _report_pause(runtime: pb_grpc.RuntimeServiceStub, ids: list[str]) -> None:
    sizes = []
    for pod_id in ids:
        request = pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
        info = runtime.PodSandboxStatus(request).info.get("info")
        pid = json.loads(info).get("pid", 0) if info else 0
        size = _pss_kib(pid) if pid else None
        if size is not None:
            sizes.append(size)
    if sizes:
        print(f"pause process PSS: median {statistics.median(sizes):.0f} KiB over {len(sizes)}")
    else:
        print("pause process PSS: not visible through this endpoint")


@contextlib.contextmanager
def _crisp_daemon() -> Iterator[pb_grpc.RuntimeServiceStub]:
    from runtime.cgroups import find_mounts
    from tests.crisp_daemon import DaemonPaths, start_daemon
    from tests.runtime.processes import remove_cgroup_dirs

    forward = Path("/proc/sys/net/ipv4/ip_forward")
    saved_forward = forward.read_text()
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    bridge = f"crb{secrets.token_hex(4)}"
    parent = f"crisp-bench-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="crisp-bench-") as tmp:
        paths = DaemonPaths(Path(tmp) / "crisp")
        (paths.base / "net.d").mkdir(parents=True)
        conflist = {
            "cniVersion": "1.0.0",
            "name": "crisp-bench",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": str(free_subnet())}]],
                        "dataDir": str(Path(tmp) / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (paths.base / "net.d" / "10-bench.conflist").write_text(json.dumps(conflist))
        daemon = start_daemon(
            paths, ["--cni-bin-dir", "/usr/lib/cni", "--cgroup-parent", f"/{parent}"]
        )
        try:
            yield daemon.runtime
        finally:
            daemon.stop()
            with IPRoute() as ipr:
                for index in ipr.link_lookup(ifname=bridge):
                    ipr.link("del", index=index)
            forward.write_text(saved_forward)
            if "CNI-HOSTPORT-DNAT" not in nat:
                remove_portmap_chains()
            mounts = find_mounts()
            for root in {*mounts.v1.values(), *([mounts.unified] if mounts.unified else [])}:
                remove_cgroup_dirs(Path(root) / parent)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=10)
    parser.add_argument("--endpoint", help="a running CRI endpoint (default: a temporary crisp)")
    args = parser.parse_args(argv)
    if args.endpoint:
        with grpc.insecure_channel(args.endpoint) as channel:
            measure(pb_grpc.RuntimeServiceStub(channel), args.pods, args.parallel)
    else:
        with _crisp_daemon() as runtime:
            measure(runtime, args.pods, args.parallel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
