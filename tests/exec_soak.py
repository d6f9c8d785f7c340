"""Exec probes at kubelet's pace against many containers of a real crisp daemon, and what
the daemon and monitors hold before and after (issue #6): shared by the CI test
(tests/integration/test_exec_soak.py) and the full benchmark (bench/exec_soak.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from criapi import api_pb2 as pb
from tests.crisp_daemon import RunningDaemon, monitor_pid
from tests.leak_audit import Holdings, holdings, settled_holdings

RPC_TIMEOUT = 30
PROBE_COMMAND = ("cat", "/proc/self/status")
PROBE_TIMEOUT = 5  # seconds, as a probe's timeoutSeconds
# The daemon's gRPC polling threads and executor grow to what concurrent calls need and
# keep that size, so the "before" look comes after this much probing at full load.
WARM_UP_SECONDS = 2.0
SAMPLES = 12  # looks during the soak: whether what grows keeps growing or levels off


@dataclass
class Fleet:
    """Pods on the host network, each with one sleeping container."""

    pods: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)


def start_fleet(daemon: RunningDaemon, image: str, count: int, fleet: Fleet) -> None:
    """Adds pods and containers to `fleet` as they come, so that a failure half-way leaves
    everything made so far for remove_fleet."""
    rt = daemon.runtime
    for index in range(count):
        pod_config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(
                name=f"soak{index}", uid=f"soak{index}", namespace="soak"
            ),
            linux=pb.LinuxPodSandboxConfig(
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.NODE)
                )
            ),
        )
        pod_request = pb.RunPodSandboxRequest(config=pod_config)
        pod_id = rt.RunPodSandbox(pod_request, timeout=RPC_TIMEOUT).pod_sandbox_id
        fleet.pods.append(pod_id)
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="app"),
            image=pb.ImageSpec(image=image),
            command=["sleep", "100000"],
        )
        request = pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config
        )
        container_id = rt.CreateContainer(request, timeout=RPC_TIMEOUT).container_id
        fleet.containers.append(container_id)
        rt.StartContainer(pb.StartContainerRequest(container_id=container_id), timeout=RPC_TIMEOUT)


def remove_fleet(daemon: RunningDaemon, fleet: Fleet) -> None:
    rt = daemon.runtime
    for pod_id in fleet.pods:
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT)
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT)
    fleet.pods.clear()
    fleet.containers.clear()


@dataclass
class ProbeResults:
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def probes(self) -> int:
        return len(self.latencies_ms) + len(self.failures)

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def probe_once(daemon: RunningDaemon, container_id: str) -> str:
    """ "" when the probe succeeded, else what went wrong."""
    request = pb.ExecSyncRequest(
        container_id=container_id, cmd=list(PROBE_COMMAND), timeout=PROBE_TIMEOUT
    )
    try:
        answer = daemon.runtime.ExecSync(request, timeout=PROBE_TIMEOUT + RPC_TIMEOUT)
    except grpc.RpcError as e:
        return f"{container_id[:12]}: {e.code().name} {e.details()}"
    if answer.exit_code != 0 or b"Name:\tcat" not in answer.stdout:
        return f"{container_id[:12]}: exit {answer.exit_code}, stderr {answer.stderr[:200]!r}"
    return ""


def probe(
    daemon: RunningDaemon, containers: Sequence[str], interval: float, duration: float
) -> ProbeResults:
    """One thread a container, each probing every `interval` seconds for `duration`.

    As kubelet's prober, a thread keeps to its period from start to start and, when a
    probe took longer than the period, starts the next one at once rather than catching
    up on the missed ones."""
    results = ProbeResults()
    lock = threading.Lock()
    end = time.monotonic() + duration

    def prober(container_id: str) -> None:
        next_start = time.monotonic()
        while next_start < end:
            started = time.perf_counter()
            failure = probe_once(daemon, container_id)
            elapsed_ms = (time.perf_counter() - started) * 1000
            with lock:
                if failure:
                    results.failures.append(failure)
                else:
                    results.latencies_ms.append(elapsed_ms)
            next_start = max(next_start + interval, time.monotonic())
            time.sleep(max(0.0, next_start - time.monotonic()))

    threads = [
        threading.Thread(target=prober, args=(c,), name=f"probe-{c[:12]}") for c in containers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@dataclass(frozen=True)
class Soak:
    results: ProbeResults
    before: Holdings
    after: Holdings
    seconds: float
    during: tuple[tuple[float, Holdings], ...]  # (seconds into the soak, look), in-flight


def _sampling(
    daemon_pid: int, monitors: Sequence[int], every: float, stop: threading.Event
) -> tuple[list[tuple[float, Holdings]], threading.Thread]:
    """A thread that looks every `every` seconds until `stop` is set, and its looks."""
    samples: list[tuple[float, Holdings]] = []
    started = time.monotonic()

    def run() -> None:
        while not stop.wait(every):
            samples.append((time.monotonic() - started, holdings(daemon_pid, monitors)))

    sampler = threading.Thread(target=run, name="soak-sampler")
    sampler.start()
    return samples, sampler


def soak(
    daemon: RunningDaemon,
    containers: Sequence[str],
    interval: float,
    duration: float,
    monitor_fd_slack: int,
    daemon_fd_slack: int,
) -> Soak:
    """Warm up, look, probe for `duration`, look again once in-flight execs had time to
    finish (at most a few seconds: what stays is a leak)."""
    warm_up = probe(daemon, containers, interval, WARM_UP_SECONDS)
    assert not warm_up.failures, warm_up.failures[:5]
    daemon_pid = daemon.process.pid
    monitors = [monitor_pid(daemon, c) for c in containers]
    before = settled_holdings(daemon_pid, monitors, lambda h: not h.zombies)
    stop_sampling = threading.Event()
    during, sampler = _sampling(daemon_pid, monitors, duration / SAMPLES, stop_sampling)
    started = time.monotonic()
    try:
        results = probe(daemon, containers, interval, duration)
    finally:
        stop_sampling.set()
        sampler.join()
    seconds = time.monotonic() - started
    after = settled_holdings(
        daemon_pid,
        monitors,
        lambda h: (
            not h.zombies
            and h.daemon_fds <= before.daemon_fds + daemon_fd_slack
            and not h.grown_monitors(before, monitor_fd_slack)
        ),
    )
    return Soak(results, before, after, seconds, tuple(during))
