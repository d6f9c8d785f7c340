"""Benchmark: crisp's embedded runtime against an external OCI runtime (runc from Debian) as
runtime handlers of one crisp daemon, on the same run (prints numbers, asserts nothing):

    python -m bench.runtime_compare [--containers 50] [--per-pod 5] [--binary /usr/sbin/runc]

Starts a throw-away daemon on temporary paths with two handlers, `crisp` (embedded) and
`runc` (kind "oci"), and a registry on loopback. For each handler it makes CONTAINERS
containers (busybox `sleep`, own pid namespace, a CRI log), PER_POD to a pod (host network,
so no CNI), and times CreateContainer, StartContainer, one ExecSync each, StopContainer
(timeout 0) and RemoveContainer, interleaving the handlers container by container so both
see the same machine. With all containers running it reads the PSS of every container's
monitor (/proc/PID/smaps_rollup). A runc container's monitor is crisp's too (runc itself
exits after create), so the memory column compares what supervising costs either way.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from bench.throwaway import RPC_TIMEOUT, throwaway_crisp
from criapi import api_pb2 as pb
from critest import images as ci
from critest.procmem import Memory, memory_of
from tests.crisp_daemon import (
    RunningDaemon,
)

HANDLERS = ("crisp", "runc")
STEPS = ("create", "start", "exec", "stop", "remove")


def _config(binary: str) -> str:
    return (
        '[runtime.handlers.crisp]\nkind = "embedded"\n\n'
        f'[runtime.handlers.runc]\nkind = "oci"\npath = "{binary}"\n'
    )


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _at(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Bench:
    def __init__(self, daemon: RunningDaemon, image: str, per_pod: int) -> None:
        self.daemon = daemon
        self.image = image
        self.per_pod = per_pod
        self.pods: dict[str, list[tuple[str, pb.PodSandboxConfig]]] = {h: [] for h in HANDLERS}
        self.containers: dict[str, list[str]] = {h: [] for h in HANDLERS}
        self.samples: dict[tuple[str, str], list[float]] = {
            (h, s): [] for h in HANDLERS for s in STEPS
        }

    def _pod(self, handler: str) -> tuple[str, pb.PodSandboxConfig]:
        """The pod the next container goes into: a new one every `per_pod` containers."""
        pods = self.pods[handler]
        if len(self.containers[handler]) % self.per_pod == 0:
            name = f"{handler}-{len(pods)}"
            options = pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD)
            config = pb.PodSandboxConfig(
                metadata=pb.PodSandboxMetadata(name=name, uid=name, namespace="bench"),
                log_directory=str(self.daemon.paths.base / "pod-logs" / name),
                linux=pb.LinuxPodSandboxConfig(
                    security_context=pb.LinuxSandboxSecurityContext(namespace_options=options)
                ),
            )
            request = pb.RunPodSandboxRequest(config=config, runtime_handler=handler)
            reply = self.daemon.runtime.RunPodSandbox(request, timeout=RPC_TIMEOUT)
            pods.append((reply.pod_sandbox_id, config))
        return pods[-1]

    def create_and_start(self, handler: str) -> None:
        rt = self.daemon.runtime
        pod_id, pod_config = self._pod(handler)
        index = len(self.containers[handler])
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=f"c{index}"),
            image=pb.ImageSpec(image=self.image),
            command=["sleep", "100000"],
            log_path=f"c{index}.log",
            linux=pb.LinuxContainerConfig(
                security_context=pb.LinuxContainerSecurityContext(
                    namespace_options=pb.NamespaceOption(pid=pb.CONTAINER)
                )
            ),
        )
        request = pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config
        )
        container_id = ""

        def create() -> None:
            nonlocal container_id
            container_id = rt.CreateContainer(request, timeout=RPC_TIMEOUT).container_id

        self.samples[handler, "create"].append(_timed(create))
        self.containers[handler].append(container_id)
        start = pb.StartContainerRequest(container_id=container_id)
        self.samples[handler, "start"].append(
            _timed(lambda: rt.StartContainer(start, timeout=RPC_TIMEOUT))
        )

    def exec(self, handler: str, container_id: str) -> None:
        request = pb.ExecSyncRequest(container_id=container_id, cmd=["true"], timeout=10)
        self.samples[handler, "exec"].append(
            _timed(lambda: self.daemon.runtime.ExecSync(request, timeout=RPC_TIMEOUT))
        )

    def stop_and_remove(self, handler: str, container_id: str) -> None:
        rt = self.daemon.runtime
        stop = pb.StopContainerRequest(container_id=container_id, timeout=0)
        self.samples[handler, "stop"].append(
            _timed(lambda: rt.StopContainer(stop, timeout=RPC_TIMEOUT))
        )
        remove = pb.RemoveContainerRequest(container_id=container_id)
        self.samples[handler, "remove"].append(
            _timed(lambda: rt.RemoveContainer(remove, timeout=RPC_TIMEOUT))
        )

    def monitors(self, handler: str) -> list[Memory]:
        found = []
        for container_id in self.containers[handler]:
            record = self.daemon.paths.run / "c" / container_id / "container.json"
            memory = memory_of(int(json.loads(record.read_text())["monitor_pid"]))
            if memory is not None:
                found.append(memory)
        return found

    def remove_pods(self) -> None:
        rt = self.daemon.runtime
        for pod_id, _ in (p for pods in self.pods.values() for p in pods):
            rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT)
            rt.RemovePodSandbox(
                pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT
            )


def _report(bench: Bench, memory: dict[str, list[Memory]]) -> None:
    print(f"{'':12}" + "".join(f"{h + ' p50':>12}{h + ' p90':>12}" for h in HANDLERS) + "   (ms)")
    for step in STEPS:
        row = f"{step:12}"
        for handler in HANDLERS:
            ordered = sorted(bench.samples[handler, step])
            row += f"{statistics.median(ordered):12.1f}{_at(ordered, 0.9):12.1f}"
        print(row)
    row = f"{'create+start':12}"  # what a new container waits for
    for handler in HANDLERS:
        pairs = zip(bench.samples[handler, "create"], bench.samples[handler, "start"], strict=True)
        ordered = sorted(a + b for a, b in pairs)
        row += f"{statistics.median(ordered):12.1f}{_at(ordered, 0.9):12.1f}"
    print(row)
    print()
    print(f"{'monitor':12}{'PSS mean':>12}{'PSS max':>12}{'RSS mean':>12}{'private':>12}   (KiB)")
    for handler in HANDLERS:
        samples = memory[handler]
        print(
            f"{handler:12}{statistics.mean(m.pss_kib for m in samples):12.0f}"
            f"{max(m.pss_kib for m in samples):12d}"
            f"{statistics.mean(m.rss_kib for m in samples):12.0f}"
            f"{statistics.mean(m.private_kib for m in samples):12.0f}   (n={len(samples)})"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runtime_compare")
    parser.add_argument("--containers", type=int, default=50, help="per handler")
    parser.add_argument("--per-pod", type=int, default=5, help="containers in one pod")
    parser.add_argument("--binary", default="/usr/sbin/runc", help="the external runtime")
    args = parser.parse_args(argv)
    image = ci.busybox_image(ci.RunConfig(cmd=("sleep", "100000")))
    with throwaway_crisp(
        "rc", image, "bench/sleep", _config(args.binary), ["--log-level", "info"]
    ) as crisp:
        bench = Bench(crisp.daemon, crisp.image, args.per_pod)
        try:
            for _ in range(args.containers):
                for handler in HANDLERS:
                    bench.create_and_start(handler)
            for index in range(args.containers):
                for handler in HANDLERS:
                    bench.exec(handler, bench.containers[handler][index])
            time.sleep(1)  # let start-up pages settle (log files opened, first output written)
            memory = {handler: bench.monitors(handler) for handler in HANDLERS}
            for index in range(args.containers):
                for handler in HANDLERS:
                    bench.stop_and_remove(handler, bench.containers[handler][index])
        finally:
            bench.remove_pods()
    print(
        f"{args.containers} containers per handler, {args.per_pod} to a pod; runc = {args.binary}"
    )
    _report(bench, memory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
