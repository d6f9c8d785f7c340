"""The container record and store, log paths, the event hub and the message translation:
the parts of the container service that need no daemon."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cri import container_messages
from criapi import api_pb2 as pb
from sandbox.container_config import HugepageLimit, MountRequest, Propagation, Resources
from sandbox.container_create import _log_path
from sandbox.container_events import ContainerEvent, EventHub, EventType
from sandbox.container_list import ListedContainer
from sandbox.container_record import (
    CREATED,
    CREATING,
    EXITED,
    RUNNING,
    Container,
    Observed,
    mount_doc,
    resources_doc,
    resources_from_doc,
)
from sandbox.container_status import ContainerStatus
from sandbox.container_stop import _signal_number
from sandbox.container_store import ContainerStore
from sandbox.errors import AlreadyExists, InvalidArgument
from sandbox.records import Kind


@dataclass(frozen=True)
class _Record:
    id: str
    state: str
    created_ns: int
    document: dict[str, Any]


class _Records:
    """An in-memory stand-in for cri.state.StateDB, recording every transition."""

    def __init__(self) -> None:
        self.rows: dict[str, _Record] = {}
        self.transitions: list[tuple[str, str]] = []

    def put(self, kind: Kind, id: str, state: str, document: dict[str, Any]) -> _Record:
        previous = self.rows.get(id)
        if previous is None or previous.state != state:
            self.transitions.append((id, state))
        created = previous.created_ns if previous else len(self.rows)
        self.rows[id] = _Record(id, state, created, document)
        return self.rows[id]

    def list_kind(self, kind: Kind) -> Sequence[_Record]:
        return list(self.rows.values())

    def delete(self, kind: Kind, id: str) -> bool:
        return self.rows.pop(id, None) is not None


def _container(id: str = "a" * 64, name: str = "app", attempt: int = 0) -> Container:
    return Container(
        id=id,
        pod_id="p" * 64,
        name=name,
        attempt=attempt,
        state="",
        created_ns=1,
        image="busybox",
        image_id="sha256:" + "1" * 64,
        layers=["sha256:" + "2" * 64],
        bundle="/var/lib/crisp/containers/" + id,
        cgroup="/crisp/pod/crisp-" + id,
        labels={"tier": "web"},
        mounts=[mount_doc(MountRequest("/data", "/srv", readonly=True))],
        resources=resources_doc(Resources(memory_limit=1 << 20, unified={"a": "b"})),
        user={"uid": 33, "gid": 33, "additional_gids": [33, 1234], "username": "www-data"},
    )


def test_record_round_trips_through_its_document() -> None:
    original = _container()
    original.state = CREATED
    doc = original.to_doc()
    assert "id" not in doc and "state" not in doc
    again = Container.from_doc(original.id, CREATED, original.created_ns, doc)
    assert again == original
    assert again.mount_requests() == [MountRequest("/data", "/srv", readonly=True)]
    assert again.process_user().additional_gids == (33, 1234)


def test_resources_round_trip() -> None:
    resources = Resources(cpu_shares=512, hugepage_limits=(HugepageLimit("2MB", 4096),))
    assert resources_from_doc(resources_doc(resources)) == resources


def test_store_reserves_names_per_pod_and_attempt() -> None:
    records = _Records()
    store = ContainerStore(records)
    store.reserve(_container())
    with pytest.raises(AlreadyExists, match="already exists in pod sandbox"):
        store.reserve(_container(id="b" * 64))
    store.reserve(_container(id="c" * 64, attempt=1))
    other_pod = dataclasses.replace(_container(id="d" * 64), pod_id="q" * 64)
    store.reserve(other_pod)
    assert [c.state for c in store.all()] == [CREATING] * 3
    assert store.set_state("a" * 64, EXITED) is not None
    assert records.transitions[-1] == ("a" * 64, EXITED)
    assert store.set_state("z" * 64, EXITED) is None
    # Reservations are not written: a restart knows only the containers saved since.
    assert {c.id for c in ContainerStore(records).all()} == {"a" * 64}
    store.save(dataclasses.replace(other_pod, state=CREATED))
    again = ContainerStore(records)
    assert {c.id for c in again.all()} == {"a" * 64, "d" * 64}
    assert [c.id for c in again.in_pod("q" * 64)] == ["d" * 64]


def test_store_reports_the_creation_time_a_restart_reads_back() -> None:
    records = _Records()
    store = ContainerStore(records)
    first = _container()
    store.reserve(first)
    store.save(first)
    later = _container(id="b" * 64, name="later")
    store.reserve(later)
    later.created_ns = 0  # the stand-in database stamps it 1: its second record
    store.save(later)
    recorded = [("a" * 64, 0), ("b" * 64, 1)]
    assert [(c.id, c.created_ns) for c in store.all()] == recorded
    assert [(c.id, c.created_ns) for c in ContainerStore(records).all()] == recorded


def test_store_finds_by_unique_prefix() -> None:
    store = ContainerStore(_Records())
    store.reserve(_container(id="ab" + "0" * 62))
    store.reserve(_container(id="ac" + "0" * 62, name="other"))
    found = store.find("ab")
    assert found is not None and found.id.startswith("ab")
    with pytest.raises(InvalidArgument, match="ambiguous"):
        store.find("a")
    with pytest.raises(InvalidArgument, match="required"):
        store.find("")
    assert store.find("ff") is None
    store.delete("ab" + "0" * 62)
    assert store.find("ab") is None


def test_log_path_stays_in_the_pod_log_directory(tmp_path: Path) -> None:
    assert _log_path(tmp_path, "") is None
    assert _log_path(tmp_path, "app/0.log") == tmp_path / "app" / "0.log"
    for bad in ("../x.log", "app/../../x.log", "/etc/passwd", "."):
        with pytest.raises(InvalidArgument, match="outside the pod's log directory"):
            _log_path(tmp_path, bad)
    (tmp_path / "link").symlink_to("/tmp")
    with pytest.raises(InvalidArgument, match="symlink"):
        _log_path(tmp_path, "link/x.log")


def test_signal_names() -> None:
    assert _signal_number("SIGUSR1") == 10
    assert _signal_number("9") == 9
    assert _signal_number("SIGRTMIN+1") == 35
    assert _signal_number("SIGNOPE") == 15


def test_event_hub_drops_for_slow_consumers_only() -> None:
    hub = EventHub(queue_size=2)
    active = threading.Event()
    active.set()
    events = hub.subscribe(active)
    received: list[ContainerEvent] = []
    reader = threading.Thread(target=lambda: received.extend(events))
    reader.start()
    try:
        deadline = threading.Event()
        while not hub._subscribers and not deadline.wait(0.01):
            pass
        for i in range(5):
            hub.publish(ContainerEvent(f"c{i}", "p", EventType.CREATED, i))
    finally:
        deadline.wait(0.2)
        active.clear()
        reader.join()
    assert len(received) + hub.dropped == 5
    assert not hub._subscribers  # the subscription ended with its consumer


def test_container_request_from_protobuf() -> None:
    config = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="app", attempt=2),
        image=pb.ImageSpec(image="busybox"),
        envs=[pb.KeyValue(key="A", value="1")],
        mounts=[
            pb.Mount(
                container_path="/d",
                host_path="/srv",
                propagation=pb.PROPAGATION_BIDIRECTIONAL,
            )
        ],
        stop_signal=pb.SIGRTMINPLUS3,
        linux=pb.LinuxContainerConfig(
            resources=pb.LinuxContainerResources(memory_limit_in_bytes=1 << 20),
            security_context=pb.LinuxContainerSecurityContext(
                run_as_user=pb.Int64Value(value=0),
                supplemental_groups_policy=pb.Strict,
                seccomp_profile_path="runtime/default",
                namespace_options=pb.NamespaceOption(pid=pb.CONTAINER),
            ),
        ),
    )
    request = container_messages.container_request(config)
    assert (request.name, request.attempt, request.envs) == ("app", 2, (("A", "1"),))
    assert request.mounts[0].propagation is Propagation.BIDIRECTIONAL
    assert request.stop_signal == "SIGRTMIN+3"
    assert request.resources.memory_limit == 1 << 20
    security = request.security
    assert security.run_as_user == 0 and security.run_as_group is None
    assert security.supplemental_groups_policy == "strict"
    assert security.seccomp is not None and security.seccomp.kind == "runtime-default"
    assert security.namespaces.pid.value == "container"


def test_cached_messages_equal_fresh_ones_and_follow_a_replaced_record() -> None:
    messages = container_messages.ContainerMessages()
    container = _container()
    running = Observed(RUNNING, started_ns=5)
    exited = Observed(EXITED, started_ns=5, finished_ns=9, exit_code=1, reason="Error")
    for observed in (running, exited, running):
        answer = messages.status_response(ContainerStatus(container, observed, None))
        assert answer.status == container_messages.container_status(container, observed)
        assert messages.container_status(container, observed) == answer.status
    listed = messages.containers([ListedContainer(container, running)])
    assert listed[0].state == pb.CONTAINER_RUNNING and listed[0].labels == container.labels
    listed = messages.containers([ListedContainer(container, exited)])
    assert listed[0].state == pb.CONTAINER_EXITED
    # The store replaces a record that changes: the new record's values are reported.
    changed = dataclasses.replace(container, resources={"memory_limit": 2 << 20})
    answer = messages.status_response(ContainerStatus(changed, running, {"pid": 7}))
    assert answer.status.resources.linux.memory_limit_in_bytes == 2 << 20
    assert answer.info == {"info": '{"pid": 7}'}
    relabelled = dataclasses.replace(container, labels={"tier": "db"})
    assert messages.containers([ListedContainer(relabelled, exited)])[0].labels == {"tier": "db"}


def test_container_status_to_protobuf() -> None:
    container = _container()
    observed = Observed(EXITED, started_ns=5, finished_ns=9, exit_code=0, reason="Completed")
    status = container_messages.container_status(container, observed)
    assert status.state == pb.CONTAINER_EXITED and status.reason == "Completed"
    assert (status.started_at, status.finished_at) == (5, 9)
    assert status.image_ref == status.image_id == container.image_id
    assert status.mounts[0].readonly and status.mounts[0].host_path == "/srv"
    assert status.resources.linux.memory_limit_in_bytes == 1 << 20
    assert list(status.user.linux.supplemental_groups) == [33, 1234]
    assert status.stop_signal == pb.SIGTERM
