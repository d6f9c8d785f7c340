"""The pod record: persisted documents, the store's identity rules, list filters, cgroup
limits and bandwidth annotations."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from runtime.cgroups.resources import Cpu, LinuxResources, Memory
from sandbox.errors import AlreadyExists, InvalidArgument
from sandbox.pod import (
    CREATING,
    NOTREADY,
    READY,
    DNSSettings,
    NamespaceMode,
    PodConfig,
    PodMetadata,
    PodSandbox,
    PortMapping,
    Resources,
)
from sandbox.pod_cgroups import pod_limits
from sandbox.pod_list import PodFilter, matches
from sandbox.pod_network import bandwidth, parse_quantity
from sandbox.pod_store import PodStore
from sandbox.records import Kind


@dataclass(frozen=True)
class FakeRecord:
    id: str
    state: str
    created_ns: int
    document: dict[str, Any]


class FakeRecords:
    """What PodStore needs of cri.state.StateDB, with a JSON round trip like the real one."""

    def __init__(self) -> None:
        self.rows: dict[str, FakeRecord] = {}
        self.clock = 0

    def put(self, kind: Kind, id: str, state: str, document: dict[str, Any]) -> FakeRecord:
        self.clock += 1
        created = self.rows[id].created_ns if id in self.rows else self.clock
        record = FakeRecord(id, state, created, json.loads(json.dumps(document)))
        self.rows[id] = record
        return record

    def list_kind(self, kind: Kind) -> Sequence[FakeRecord]:
        return list(self.rows.values())

    def delete(self, kind: Kind, id: str) -> bool:
        return self.rows.pop(id, None) is not None


def make_pod(pod_id: str, name: str = "web", attempt: int = 0, **config: Any) -> PodSandbox:
    meta = PodMetadata(name=name, uid=f"uid-{name}", namespace="default", attempt=attempt)
    return PodSandbox(
        id=pod_id,
        config=PodConfig(meta, **config),
        runtime_handler="crisp",
        state=CREATING,
        created_ns=1,
        dir=f"/run/crisp/pods/{pod_id}",
        hostname=name,
    )


def test_document_round_trip() -> None:
    pod = make_pod(
        "a" * 64,
        dns=DNSSettings(servers=("10.0.0.10",), searches=("x",), options=("ndots:5",)),
        port_mappings=(PortMapping(80, 8080, "udp", "127.0.0.1"),),
        labels={"app": "web"},
        sysctls={"net.core.somaxconn": "1024"},
        pid=NamespaceMode.CONTAINER,
        network=NamespaceMode.NODE,
        resources=Resources(cpu_shares=512, memory_limit_in_bytes=1 << 30),
    )
    pod.pins = {"net": "/x/ns/net"}
    pod.pause_pid, pod.pause_start_time, pod.ips = 42, 7, ["10.1.0.2", "fd00::2"]
    doc = json.loads(json.dumps(pod.to_doc()))
    assert PodSandbox.from_doc(pod.id, pod.state, pod.created_ns, doc) == pod


def test_store_keeps_names_unique_per_attempt_and_survives_reopening() -> None:
    records = FakeRecords()
    store = PodStore(records)
    first = make_pod("a1" + "0" * 62)
    store.reserve(first)
    with pytest.raises(AlreadyExists, match=first.id):
        store.reserve(make_pod("b2" + "0" * 62))
    second = make_pod("b2" + "0" * 62, attempt=1)
    store.reserve(second)
    second.state = READY
    store.save(second)
    reopened = PodStore(records)
    assert [(p.id, p.state) for p in reopened.all()] == [(first.id, CREATING), (second.id, READY)]
    reopened.delete(first.id)
    assert records.list_kind("pod") == [records.rows[second.id]]
    reopened.reserve(make_pod("c3" + "0" * 62))  # the name is free again


def test_store_reports_the_creation_time_a_restart_reads_back() -> None:
    records = FakeRecords()
    records.clock = 100  # the database's clock differs from the one the pod was made with
    store = PodStore(records)
    pod = make_pod("a" * 64)
    store.reserve(pod)
    found = store.find(pod.id)
    assert found is not None and found.created_ns == 101
    store.save(pod)
    reopened = PodStore(records).find(pod.id)
    assert reopened is not None and reopened.created_ns == 101


def test_store_finds_by_unique_prefix() -> None:
    store = PodStore(FakeRecords())
    store.reserve(make_pod("abc1" + "0" * 60, name="a"))
    store.reserve(make_pod("abc2" + "0" * 60, name="b"))
    found = store.find("abc1")
    assert found is not None and found.id.startswith("abc1")
    assert store.find("ffff") is None
    with pytest.raises(InvalidArgument, match="ambiguous"):
        store.find("abc")
    with pytest.raises(InvalidArgument, match="required"):
        store.find("")


def test_list_filter() -> None:
    pod = make_pod("abcdef" + "0" * 58, labels={"app": "web", "tier": "front"})
    assert matches(pod, READY, PodFilter())
    assert matches(pod, READY, PodFilter(id="abc"))
    assert not matches(pod, READY, PodFilter(id="abd"))
    assert matches(pod, READY, PodFilter(state=READY))
    assert not matches(pod, NOTREADY, PodFilter(state=READY))
    assert matches(pod, READY, PodFilter(labels={"app": "web"}))
    assert matches(pod, READY, PodFilter(labels={"app": "web", "tier": "front"}))
    assert not matches(pod, READY, PodFilter(labels={"app": "web", "tier": "back"}))
    assert not matches(pod, READY, PodFilter(labels={"missing": ""}))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1000", 1000),
        ("10k", 10_000),
        ("10M", 10_000_000),
        ("1.5G", 1_500_000_000),
        ("2Mi", 2 << 20),
    ],
)
def test_quantities(text: str, value: int) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "M", "10 MB", "ten", "1e3", "-5M"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_bandwidth_annotations() -> None:
    assert bandwidth({}) is None
    limits = bandwidth({"kubernetes.io/ingress-bandwidth": "10M"})
    assert limits is not None
    assert limits.to_cni() == {"ingressRate": 10_000_000, "ingressBurst": 2**32 - 1}
    with pytest.raises(InvalidArgument, match="egress-bandwidth"):
        bandwidth({"kubernetes.io/egress-bandwidth": "0"})


def test_pod_limits_add_the_overhead() -> None:
    base = make_pod("a" * 64).config
    assert pod_limits(base) is None
    with_limits = dataclasses.replace(
        base,
        resources=Resources(
            cpu_period=100_000, cpu_quota=50_000, cpu_shares=512, memory_limit_in_bytes=1 << 30
        ),
        overhead=Resources(cpu_quota=10_000, cpu_shares=100, memory_limit_in_bytes=1 << 20),
    )
    limits = pod_limits(with_limits)
    assert limits is not None
    assert limits.cpu == Cpu(shares=612, quota=60_000, period=100_000)
    assert limits.memory == Memory(limit=(1 << 30) + (1 << 20))
    unlimited = dataclasses.replace(
        base, resources=Resources(cpu_shares=2), overhead=Resources(memory_limit_in_bytes=1 << 20)
    )
    limits = pod_limits(unlimited)
    assert limits is not None and limits.memory is None  # no limit stays no limit


def test_pod_limits_lift_what_an_update_drops() -> None:
    base = make_pod("a" * 64).config
    limited = dataclasses.replace(
        base, resources=Resources(cpu_quota=50_000, memory_limit_in_bytes=1 << 30)
    )
    assert pod_limits(base, previous=limited) == LinuxResources(
        cpu=Cpu(quota=-1), memory=Memory(limit=-1)
    )
    shares_only = dataclasses.replace(base, resources=Resources(cpu_shares=256))
    limits = pod_limits(shares_only, previous=limited)
    assert limits is not None and limits.cpu == Cpu(shares=256, quota=-1)
    assert pod_limits(limited, previous=base) == pod_limits(limited)
    assert pod_limits(base, previous=base) is None
