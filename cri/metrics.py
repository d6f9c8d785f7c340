"""Prometheus metrics of the daemon and the HTTP endpoint that serves them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cri.config import split_address

log = logging.getLogger("crisp.metrics")

# Container operations span from sub-millisecond list calls to multi-second image pulls.
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)


@dataclass
class Metrics:
    registry: CollectorRegistry
    operations: Counter
    operation_errors: Counter
    operation_latency: Histogram

    def observe(self, operation: str, seconds: float, code: str | None) -> None:
        """Record one finished operation; `code` is the gRPC code name when it failed."""
        self.recorder(operation).observe(seconds, code)

    def recorder(self, operation: str) -> OperationRecorder:
        """The series of one operation, looked up once: a label lookup costs more than the
        update itself, and the fast RPCs take well under a millisecond."""
        return OperationRecorder(
            operation,
            self.operations.labels(operation=operation),
            self.operation_latency.labels(operation=operation),
            self.operation_errors,
        )


class OperationRecorder:
    def __init__(self, operation: str, count: Counter, latency: Histogram, errors: Counter) -> None:
        self._operation = operation
        self._count = count
        self._latency = latency
        self._errors = errors

    def observe(self, seconds: float, code: str | None) -> None:
        """Record one finished call; `code` is the gRPC code name when it failed."""
        self._count.inc()
        self._latency.observe(seconds)
        if code is not None:
            self._errors.labels(operation=self._operation, code=code).inc()


def create_metrics() -> Metrics:
    # A registry of our own rather than the library's global one, so that nothing imported
    # by accident shows up and tests can create several.
    registry = CollectorRegistry()
    prometheus_client.ProcessCollector(registry=registry)
    prometheus_client.PlatformCollector(registry=registry)
    prometheus_client.GCCollector(registry=registry)
    return Metrics(
        registry=registry,
        operations=Counter(
            "crisp_operations_total",
            "CRI operations handled, by operation.",
            ["operation"],
            registry=registry,
        ),
        operation_errors=Counter(
            "crisp_operations_errors_total",
            "CRI operations that failed, by operation and gRPC status code.",
            ["operation", "code"],
            registry=registry,
        ),
        operation_latency=Histogram(
            "crisp_operations_latency_seconds",
            "Latency of CRI operations, by operation.",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        ),
    )


class PullCounters(Protocol):
    """What the image service counts since start (imagesvc.pull.PullStats)."""

    @property
    def bytes_fetched(self) -> int: ...

    @property
    def pulls(self) -> int: ...

    @property
    def layers_reused(self) -> int: ...

    @property
    def failures(self) -> Mapping[str, int]: ...


class ImagePullCollector(Collector):
    """Reads the image service's own counters at scrape time, so pulls pay nothing extra."""

    def __init__(self, counters: PullCounters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        counters = self._counters
        pulled = CounterMetricFamily(
            "crisp_image_pull_bytes", "Bytes downloaded from registries by image pulls."
        )
        pulled.add_metric([], counters.bytes_fetched)
        yield pulled
        pulls = CounterMetricFamily("crisp_image_pulls", "Image pulls that succeeded.")
        pulls.add_metric([], counters.pulls)
        yield pulls
        reused = CounterMetricFamily(
            "crisp_image_layers_reused", "Layers a pull found already unpacked."
        )
        reused.add_metric([], counters.layers_reused)
        yield reused
        failures = CounterMetricFamily(
            "crisp_image_pull_failures", "Image pulls that failed, by reason.", labels=["reason"]
        )
        for reason, count in sorted(dict(counters.failures).items()):
            failures.add_metric([reason], count)
        yield failures


# The states a container is reported in (CRI's, lower case); each is exported, zeros too,
# so that a dashboard's series never vanish.
CONTAINER_STATES = ("created", "running", "exited")


@dataclass(frozen=True)
class ContainerCensus:
    state: str  # one of CONTAINER_STATES
    oom_killed: bool


class ContainerCollector(Collector):
    """Containers by state, and those the kernel OOM-killed, counted at scrape time."""

    def __init__(self, census: Callable[[], Iterable[ContainerCensus]]) -> None:
        self._census = census

    def describe(self) -> Iterator[Metric]:
        # Names only: registering must not ask every monitor for its container's state.
        yield GaugeMetricFamily("crisp_containers", "", labels=["state"])
        yield GaugeMetricFamily("crisp_containers_oom_killed", "")

    def collect(self) -> Iterator[Metric]:
        try:
            containers = list(self._census())
        except Exception:  # a failing census must not cost the scrape its other metrics
            log.exception("cannot count containers for /metrics")
            return
        by_state = GaugeMetricFamily(
            "crisp_containers", "Containers crisp holds, by state.", labels=["state"]
        )
        for state in CONTAINER_STATES:
            by_state.add_metric([state], sum(1 for c in containers if c.state == state))
        yield by_state
        yield GaugeMetricFamily(
            "crisp_containers_oom_killed",
            "Containers crisp holds whose process the kernel killed for lack of memory.",
            value=sum(1 for c in containers if c.oom_killed),
        )


class MetricsServer:
    """Serves /metrics over HTTP on its own thread."""

    def __init__(self, metrics: Metrics, address: str) -> None:
        host, port = split_address(address, "metrics.address")
        self._server, self._thread = prometheus_client.start_http_server(
            port, addr=host, registry=metrics.registry
        )
        bound_host, bound_port = self._server.server_address[:2]
        self.address = f"{bound_host!s}:{bound_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
