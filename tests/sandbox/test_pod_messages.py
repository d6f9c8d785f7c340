"""The gRPC layer's translation of pod messages (cri/pod_messages.py) to and from the domain."""

from __future__ import annotations

import dataclasses
import json

from cri import pod_messages
from criapi import api_pb2 as pb
from runtime.spec import IdMapping
from sandbox.pod import (
    NOTREADY,
    READY,
    NamespaceMode,
    PodConfig,
    PodSandbox,
    PortMapping,
    Resources,
)
from sandbox.pod_list import ListedPod, PodFilter
from sandbox.pod_status import PodStatus


def full_config() -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="web", uid="u1", namespace="prod", attempt=2),
        hostname="web-0",
        log_directory="/var/log/pods/prod_web_u1",
        dns_config=pb.DNSConfig(servers=["10.96.0.10"], searches=["prod.svc"], options=["ndots:5"]),
        port_mappings=[
            pb.PortMapping(protocol=pb.UDP, container_port=53, host_port=5353, host_ip="127.0.0.1")
        ],
        labels={"app": "web"},
        annotations={"a": "b"},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent="/kubepods/podu1",
            sysctls={"net.core.somaxconn": "1024"},
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD),
                privileged=True,
            ),
            resources=pb.LinuxContainerResources(cpu_shares=512, memory_limit_in_bytes=1 << 30),
        ),
    )


def test_pod_config_from_protobuf() -> None:
    config = pod_messages.pod_config(full_config())
    assert (config.metadata.name, config.metadata.namespace, config.metadata.attempt) == (
        "web",
        "prod",
        2,
    )
    assert config.hostname == "web-0" and config.log_directory.endswith("prod_web_u1")
    assert config.dns.servers == ("10.96.0.10",) and config.dns.options == ("ndots:5",)
    assert config.port_mappings == (PortMapping(53, 5353, "udp", "127.0.0.1"),)
    assert config.cgroup_parent == "/kubepods/podu1"
    assert (config.network, config.pid, config.ipc) == (
        NamespaceMode.NODE,
        NamespaceMode.CONTAINER,
        NamespaceMode.POD,
    )
    assert config.user_namespace is NamespaceMode.NODE
    assert config.resources == Resources(cpu_shares=512, memory_limit_in_bytes=1 << 30)
    assert config.overhead is None
    assert config.privileged is True


def test_empty_config_defaults() -> None:
    config = pod_messages.pod_config(pb.PodSandboxConfig())
    assert config.metadata.name == "" and config.pid is NamespaceMode.POD
    assert config.dns.empty() and config.resources is None


def test_user_namespace_mode_is_carried() -> None:
    message = full_config()
    options = message.linux.security_context.namespace_options
    options.userns_options.mode = pb.POD
    options.userns_options.uids.append(pb.IDMapping(container_id=0, host_id=7, length=9))
    config = pod_messages.pod_config(message)
    assert config.user_namespace is NamespaceMode.POD
    assert config.uid_mappings == (IdMapping(0, 7, 9),) and config.gid_mappings == ()
    assert PodConfig.from_doc(json.loads(json.dumps(config.to_doc()))) == config


def test_filter() -> None:
    assert pod_messages.pod_filter(pb.PodSandboxFilter()) == PodFilter()
    wanted = pb.PodSandboxFilter(
        id="abc",
        state=pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY),
        label_selector={"app": "web"},
    )
    assert pod_messages.pod_filter(wanted) == PodFilter("abc", NOTREADY, {"app": "web"})


def _pod() -> PodSandbox:
    pod = PodSandbox(
        id="f" * 64,
        config=pod_messages.pod_config(full_config()),
        runtime_handler="crisp",
        state=READY,
        created_ns=123,
        dir="/run/crisp/pods/" + "f" * 64,
        hostname="web-0",
    )
    pod.ips, pod.network_attached = ["10.1.0.5", "fd00::5"], True
    return pod


def test_status_to_protobuf() -> None:
    status = pod_messages.pod_status(PodStatus(_pod(), ready=True, info=None))
    assert status.id == "f" * 64 and status.state == pb.SANDBOX_READY
    assert status.created_at == 123
    assert status.network.ip == "10.1.0.5"
    assert [ip.ip for ip in status.network.additional_ips] == ["fd00::5"]
    assert status.linux.namespaces.options.network == pb.NODE
    assert status.metadata.attempt == 2 and status.labels == {"app": "web"}
    assert pod_messages.status_info(PodStatus(_pod(), ready=True, info=None)) == {}
    info = pod_messages.status_info(PodStatus(_pod(), ready=False, info={"pid": 7}))
    assert json.loads(info["info"]) == {"pid": 7}


def test_detached_pods_report_no_ip() -> None:
    pod = _pod()
    pod.network_attached = False
    assert pod_messages.pod_status(PodStatus(pod, ready=False, info=None)).network.ip == ""


def test_listed_pods() -> None:
    (item,) = pod_messages.PodMessages().pod_sandboxes([ListedPod(_pod(), NOTREADY)])
    assert item.state == pb.SANDBOX_NOTREADY and item.runtime_handler == "crisp"
    assert item.metadata.name == "web" and item.annotations == {"a": "b"}


def test_listed_pods_kept_between_calls_follow_changes() -> None:
    messages = pod_messages.PodMessages()
    pod = _pod()
    (first,) = messages.pod_sandboxes([ListedPod(pod, READY)])
    (again,) = messages.pod_sandboxes([ListedPod(pod, READY)])
    assert again == first and first.state == pb.SANDBOX_READY
    (stopped,) = messages.pod_sandboxes([ListedPod(pod, NOTREADY)])
    assert stopped.state == pb.SANDBOX_NOTREADY
    pod.config = dataclasses.replace(pod.config, labels={"tier": "db"})  # as an update does
    (changed,) = messages.pod_sandboxes([ListedPod(pod, NOTREADY)])
    assert changed.labels == {"tier": "db"}
