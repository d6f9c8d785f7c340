"""Benchmark: a container's lifecycle over CRI, as kubelet drives it (prints numbers only):

    python -m bench.container_rpc [--containers 50] [--stop-timeout 10]

Starts a throw-away crisp daemon on temporary paths (log level info) and a registry on
loopback, pulls an image whose command exits on SIGTERM (as critest's benchmark image), runs
one host-network pod, and for each container times CreateContainer, StartContainer,
ContainerStatus, StopContainer and RemoveContainer one after the other, as kubelet calls
them. Prints p50/p90 per RPC and of CreateContainer + StartContainer, the sum a new container
waits for (DESIGN budget: under half of containerd + runc's). Everything made is removed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from bench.throwaway import RPC_TIMEOUT, throwaway_crisp
from criapi import api_pb2 as pb
from critest import images as ci
from critest.testimages import PAUSE_COMMAND
from tests.crisp_daemon import RunningDaemon

T = TypeVar("T")
STEPS = ("create", "start", "create+start", "status", "stop", "remove")


def _at(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _timed(samples: list[float], method: Callable[..., T], request: object) -> T:
    """`method(request)`, its latency appended to `samples` (ms)."""
    started = time.perf_counter()
    result = method(request, timeout=RPC_TIMEOUT)
    samples.append((time.perf_counter() - started) * 1000)
    return result


def _pod_config(base: Path) -> pb.PodSandboxConfig:
    options = pb.NamespaceOption(network=pb.NODE)
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="bench", uid="bench", namespace="bench"),
        log_directory=str(base / "pod-logs"),
        linux=pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(namespace_options=options)
        ),
    )


def lifecycle(
    daemon: RunningDaemon, image: str, pod: tuple[str, pb.PodSandboxConfig], count: int, stop: int
) -> dict[str, list[float]]:
    rt = daemon.runtime
    pod_id, pod_config = pod
    samples: dict[str, list[float]] = {step: [] for step in STEPS}
    for index in range(count):
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=f"c{index}"),
            image=pb.ImageSpec(image=image),
            log_path=f"c{index}.log",
        )
        create = pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config
        )
        container_id = _timed(samples["create"], rt.CreateContainer, create).container_id
        start = pb.StartContainerRequest(container_id=container_id)
        _timed(samples["start"], rt.StartContainer, start)
        samples["create+start"].append(samples["create"][-1] + samples["start"][-1])
        status = pb.ContainerStatusRequest(container_id=container_id)
        _timed(samples["status"], rt.ContainerStatus, status)
        halt = pb.StopContainerRequest(container_id=container_id, timeout=stop)
        _timed(samples["stop"], rt.StopContainer, halt)
        remove = pb.RemoveContainerRequest(container_id=container_id)
        _timed(samples["remove"], rt.RemoveContainer, remove)
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.container_rpc")
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--stop-timeout", type=int, default=10, help="StopContainer's timeout")
    args = parser.parse_args(argv)
    image = ci.busybox_image(ci.RunConfig(cmd=PAUSE_COMMAND))
    with throwaway_crisp("cr", image, "bench/pause", daemon_args=["--log-level", "info"]) as crisp:
        daemon, ref = crisp.daemon, crisp.image
        config = _pod_config(crisp.base)
        run = pb.RunPodSandboxRequest(config=config)
        pod_id = daemon.runtime.RunPodSandbox(run, timeout=RPC_TIMEOUT).pod_sandbox_id
        try:
            samples = lifecycle(daemon, ref, (pod_id, config), args.containers, args.stop_timeout)
        finally:
            daemon.runtime.StopPodSandbox(
                pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT
            )
            daemon.runtime.RemovePodSandbox(
                pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT
            )
    print(f"{args.containers} containers, one after the other   (ms)")
    print(f"{'':14}{'p50':>9}{'p90':>9}")
    for step in STEPS:
        ordered = sorted(samples[step])
        print(f"{step:14}{_at(ordered, 0.5):9.2f}{_at(ordered, 0.9):9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
