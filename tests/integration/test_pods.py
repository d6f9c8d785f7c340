"""Pod sandboxes against a real crisp daemon: real namespaces, mounts, cgroups and the real CNI
plugins (bridge, host-local, portmap, loopback from /usr/lib/cni) on a bridge and a subnet of
the test's own. Traffic only flows between the host and the network namespaces the tests
made. Everything is removed again, also when a test fails half-way.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from pyroute2 import IPRoute, netns

from cri.state import StateDB
from criapi import api_pb2 as pb
from runtime import namespaces, pause
from runtime.cgroups import find_mounts
from sandbox.pod import CREATING, PodConfig, PodMetadata, PodSandbox
from tests.crisp_daemon import DaemonPaths, RunningDaemon, assert_nothing_left, start_daemon
from tests.hostnet import free_subnet, remove_portmap_chains
from tests.runtime.processes import remove_cgroup_dirs

PLUGIN_DIR = "/usr/lib/cni"
POD_PORT = 8080
NAMESPACE = "crisp-test"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0
    or not all(
        os.path.exists(f"{PLUGIN_DIR}/{p}") for p in ("bridge", "host-local", "loopback", "portmap")
    )
    or shutil.which("iptables-save") is None
    or shutil.which("nsenter") is None,
    reason="needs root, nsenter, iptables and the CNI plugins in /usr/lib/cni",
)

T = TypeVar("T")


# --- the host side: network, cgroups, and everything to check and clean ---


def _iptables_nat() -> str:
    out = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True)
    return out.stdout


@dataclass
class PodNetwork:
    bridge: str
    subnet: ipaddress.IPv4Network
    ipam_dir: Path

    def conflist(self, extra_plugins: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        plugins: list[dict[str, Any]] = [
            {
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(self.subnet)}]],
                    "dataDir": str(self.ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ]
        return {
            "cniVersion": "1.0.0",
            "name": "crisp-pods",
            "plugins": plugins + (extra_plugins or []),
        }

    def allocated_ips(self) -> list[str]:
        directory = self.ipam_dir / "crisp-pods"
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if p.name[0].isdigit())

    def bridge_ports(self) -> list[str]:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=self.bridge)
            if not found:
                return []
            return [
                link.get_attr("IFLA_IFNAME")
                for link in ipr.get_links()
                if link.get_attr("IFLA_MASTER") == found[0]
            ]


@pytest.fixture
def pod_network(tmp_path: Path) -> Iterator[PodNetwork]:
    """A private bridge and subnet; restores ip_forward and portmap's host-wide chains."""
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    saved_forward = forward.read_text()
    had_portmap = "CNI-HOSTPORT-DNAT" in _iptables_nat()
    network = PodNetwork(f"crp{secrets.token_hex(4)}", free_subnet(), tmp_path / "ipam")
    try:
        yield network
    finally:
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=network.bridge):
                ipr.link("del", index=index)
        forward.write_text(saved_forward)
        if not had_portmap:
            remove_portmap_chains()


@pytest.fixture
def cgroup_parent() -> Iterator[str]:
    name = f"crisp-test-{secrets.token_hex(4)}"
    try:
        yield f"/{name}"
    finally:
        mounts = find_mounts()
        for mountpoint in {*mounts.v1.values(), *([mounts.unified] if mounts.unified else [])}:
            remove_cgroup_dirs(Path(mountpoint) / name)


def _cgroup_dirs(parent: str) -> list[Path]:
    mounts = find_mounts()
    roots = {*mounts.v1.values(), *([mounts.unified] if mounts.unified else [])}
    return [Path(root) / parent.lstrip("/") for root in roots]


@dataclass
class PodHost:
    """A daemon serving pods, and what the test must find gone at the end."""

    paths: DaemonPaths
    network: PodNetwork
    cgroup_parent: str
    extra_args: list[str]
    daemon: RunningDaemon
    pause_processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, start time)
    pod_ids: set[str] = field(default_factory=set)

    @property
    def runtime(self) -> Any:
        return self.daemon.runtime

    def restart(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.daemon.stop(sig)
        self.daemon = _start(self.paths, self.cgroup_parent, self.extra_args)

    def run(self, config: pb.PodSandboxConfig, handler: str = "") -> str:
        request = pb.RunPodSandboxRequest(config=config, runtime_handler=handler)
        pod_id: str = self.runtime.RunPodSandbox(request, timeout=60).pod_sandbox_id
        self.pod_ids.add(pod_id)
        info = self.info(pod_id)
        if info["pid"]:
            started = pause.start_time(info["pid"])
            assert started is not None, "pause process not running"
            self.pause_processes.append((info["pid"], started))
        return pod_id

    def status(self, pod_id: str) -> pb.PodSandboxStatus:
        request = pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id)
        status: pb.PodSandboxStatus = self.runtime.PodSandboxStatus(request).status
        return status

    def info(self, pod_id: str) -> dict[str, Any]:
        request = pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
        info: dict[str, Any] = json.loads(self.runtime.PodSandboxStatus(request).info["info"])
        return info

    def stop(self, pod_id: str) -> None:
        self.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)

    def remove(self, pod_id: str) -> None:
        request = pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id)
        self.runtime.RemovePodSandbox(request, timeout=60)

    def listed(self, **filter_fields: Any) -> list[pb.PodSandbox]:
        request = pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(**filter_fields))
        return list(self.runtime.ListPodSandbox(request).items)

    def pod_dir(self, pod_id: str) -> Path:
        return self.paths.run / "pods" / pod_id

    def pods_left(self) -> list[str]:
        """Pod dirs, and the pods mount itself, which goes with the last pod."""
        pods_dir = self.paths.run / "pods"
        left = [p.name for p in pods_dir.iterdir()] if pods_dir.exists() else []
        return left + namespaces.mounts_under(self.paths.run)


def _start(paths: DaemonPaths, cgroup_parent: str, extra_args: list[str]) -> RunningDaemon:
    args = ["--cni-bin-dir", PLUGIN_DIR, "--cgroup-parent", cgroup_parent, *extra_args]
    return start_daemon(paths, args)


def _open_host(
    paths: DaemonPaths,
    network: PodNetwork,
    cgroup_parent: str,
    extra_args: list[str] | None = None,
    extra_plugins: list[dict[str, Any]] | None = None,
) -> PodHost:
    conf_dir = paths.base / "net.d"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "10-pods.conflist").write_text(json.dumps(network.conflist(extra_plugins)))
    args = list(extra_args or [])
    return PodHost(paths, network, cgroup_parent, args, _start(paths, cgroup_parent, args))


def _close_host(host: PodHost) -> None:
    """Remove every pod through the daemon, stop it, then check (and as a last resort undo)
    everything crisp could have left on the host."""
    problems: list[str] = []
    if host.daemon.process.poll() is None:
        try:
            for item in host.listed():
                host.stop(item.id)
                host.remove(item.id)
        except grpc.RpcError as e:
            problems.append(f"cleanup through the daemon failed: {e}")
        code = host.daemon.stop()
        if code != 0:
            problems.append(f"crisp exited with {code}")
    for pid, started in host.pause_processes:
        if pause.is_alive(pid, started):
            problems.append(f"pause process {pid} still running")
            pause.stop(pid, started)
    mounts = namespaces.mounts_under(host.paths.base)
    for mount_point in reversed(mounts):
        namespaces.unmount(mount_point)
    nat = _iptables_nat()
    leaked_rules = [pod_id for pod_id in host.pod_ids if pod_id in nat]
    checks = {
        "bridge ports": host.network.bridge_ports(),
        "allocated IPs": host.network.allocated_ips(),
        "iptables rules of pods": leaked_rules,
        "pod cgroups": [
            str(child)
            for directory in _cgroup_dirs(host.cgroup_parent)
            if directory.is_dir()
            for child in directory.iterdir()
            if child.is_dir()
        ],
    }
    problems += [f"{what} left: {found}" for what, found in checks.items() if found]
    try:
        assert_nothing_left(host.daemon)
    except AssertionError as e:
        problems.append(str(e))
    assert not problems, "\n".join(problems) + "\nlog:\n" + host.daemon.log()[-5000:]


@pytest.fixture
def pods(
    daemon_paths: DaemonPaths, pod_network: PodNetwork, cgroup_parent: str
) -> Iterator[PodHost]:
    host = _open_host(daemon_paths, pod_network, cgroup_parent)
    try:
        yield host
    finally:
        _close_host(host)


def pod_config(name: str, attempt: int = 0, **fields: Any) -> pb.PodSandboxConfig:
    meta = pb.PodSandboxMetadata(name=name, namespace=NAMESPACE, uid=f"uid-{name}", attempt=attempt)
    return pb.PodSandboxConfig(metadata=meta, **fields)


def linux(
    network: int = pb.POD, pid: int = pb.CONTAINER, ipc: int = pb.POD, **fields: Any
) -> pb.LinuxPodSandboxConfig:
    options = pb.NamespaceOption(network=network, pid=pid, ipc=ipc)  # type: ignore[arg-type]
    security = pb.LinuxSandboxSecurityContext(namespace_options=options)
    return pb.LinuxPodSandboxConfig(security_context=security, **fields)


# --- inside the pod ---


def nsenter(pod_info: dict[str, Any], kinds: str, *command: str) -> str:
    """Run `command` in the pod's pinned namespaces of `kinds` (e.g. "net,uts")."""
    pins = {ns["type"]: ns["path"] for ns in pod_info["runtimeSpec"]["namespaces"]}
    flags = [f"--{kind}={pins[kind]}" for kind in kinds.split(",")]
    out = subprocess.run(["nsenter", *flags, *command], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def in_netns(netns_path: str, action: Callable[[], T]) -> T:
    """Run `action` on a short-lived thread that entered the netns: sockets belong to the
    network namespace of the thread that creates them."""
    results: list[T] = []
    failed: list[BaseException] = []

    def enter() -> None:
        try:
            netns.setns(netns_path, flags=0)
            results.append(action())
        except BaseException as e:
            failed.append(e)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return results[0]


def serve_once(listener: socket.socket, reply: bytes) -> threading.Thread:
    def answer() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.sendall(reply)

    listener.settimeout(10)
    thread = threading.Thread(target=answer)
    thread.start()
    return thread


def fetch(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=10) as client:
        return client.recv(100)


def grpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


# --- tests ---


def test_pod_lifecycle_with_network_files_and_sysctls(pods: PodHost) -> None:
    config = pod_config(
        "web",
        hostname="web-host",
        labels={"app": "web"},
        annotations={"note": "kept"},
        dns_config=pb.DNSConfig(
            servers=["10.96.0.10"], searches=["ns.svc.cluster.local"], options=["ndots:5"]
        ),
        linux=linux(
            sysctls={"net.ipv4.ip_unprivileged_port_start": "100", "kernel.shmmni": "2048"}
        ),
    )
    pod_id = pods.run(config)
    status = pods.status(pod_id)
    assert status.state == pb.SANDBOX_READY
    assert status.metadata.name == "web" and status.metadata.attempt == 0
    assert status.labels == {"app": "web"} and status.annotations == {"note": "kept"}
    assert status.runtime_handler == "crisp"
    assert status.created_at > 0
    pod_ip = ipaddress.ip_address(status.network.ip)
    assert pod_ip in pods.network.subnet
    assert status.linux.namespaces.options.pid == pb.CONTAINER

    info = pods.info(pod_id)
    assert info["runtimeHandler"] == "crisp"
    net_pin = info["netNamespacePath"]
    assert net_pin == str(pods.pod_dir(pod_id) / "ns" / "net")
    assert namespaces.is_pinned(net_pin)
    assert os.stat(net_pin).st_ino != os.stat("/proc/self/ns/net").st_ino
    assert pause.start_time(info["pid"]) is not None
    assert Path(f"/proc/{info['pid']}/comm").read_text().strip() == "crisp-pause"

    assert nsenter(info, "uts", "hostname") == "web-host"
    port_start = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
    assert nsenter(info, "net", "cat", port_start) == "100"
    assert nsenter(info, "ipc", "cat", "/proc/sys/kernel/shmmni") == "2048"
    pod_dir = pods.pod_dir(pod_id)
    assert (pod_dir / "hostname").read_text() == "web-host\n"
    assert f"{pod_ip}\tweb-host\n" in (pod_dir / "hosts").read_text()
    assert (pod_dir / "resolv.conf").read_text() == (
        "search ns.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    )
    assert str(pod_dir / "shm") in namespaces.mount_points()
    assert os.statvfs(pod_dir / "shm").f_blocks * os.statvfs(pod_dir / "shm").f_frsize == 64 << 20

    listener = in_netns(net_pin, lambda: socket.create_server(("0.0.0.0", POD_PORT)))
    with listener:
        server = serve_once(listener, b"hello from the pod")
        assert fetch(str(pod_ip), POD_PORT) == b"hello from the pod"
        server.join()
    assert len(pods.network.bridge_ports()) == 1  # the host end of the pod's veth
    assert pods.network.allocated_ips() == [str(pod_ip)]

    pods.stop(pod_id)
    assert pods.status(pod_id).state == pb.SANDBOX_NOTREADY
    assert pods.network.bridge_ports() == []  # the host end of the veth is gone
    assert pods.network.allocated_ips() == []
    assert not pause.is_alive(*pods.pause_processes[0])
    assert str(pod_dir / "shm") not in namespaces.mount_points()
    assert namespaces.is_pinned(net_pin)  # the namespaces stay until removal
    pods.stop(pod_id)  # idempotent

    pods.remove(pod_id)
    assert not pod_dir.exists()
    assert pods.pods_left() == []
    assert pods.listed() == []
    error = grpc_error(lambda: pods.status(pod_id))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    pods.remove(pod_id)  # idempotent


def test_stop_and_remove_of_unknown_ids_succeed(pods: PodHost) -> None:
    pods.stop("0" * 64)
    pods.remove("0" * 64)
    pods.stop("not-a-pod")
    pods.remove("not-a-pod")


def test_same_name_and_attempt_is_refused(pods: PodHost) -> None:
    first = pods.run(pod_config("twin"))
    error = grpc_error(lambda: pods.run(pod_config("twin")))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert first in (error.details() or "")
    second = pods.run(pod_config("twin", attempt=1))
    assert {p.id for p in pods.listed()} == {first, second}


@pytest.mark.parametrize(
    ("config", "code", "words"),
    [
        (pb.PodSandboxConfig(), grpc.StatusCode.INVALID_ARGUMENT, "metadata.name"),
        (
            pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="a", namespace="b")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "metadata.uid",
        ),
        (pod_config("bad", hostname="Not_A_Host"), grpc.StatusCode.INVALID_ARGUMENT, "hostname"),
        (
            pod_config("bad", linux=linux(sysctls={"kernel.panic": "1"})),
            grpc.StatusCode.INVALID_ARGUMENT,
            "kernel.panic is not namespaced",
        ),
        (
            pod_config("bad", linux=linux(sysctls={"net.ipv4.no_such_thing": "1"})),
            grpc.StatusCode.INVALID_ARGUMENT,
            "net.ipv4.no_such_thing",
        ),
        (
            pod_config("bad", linux=linux(network=pb.NODE, sysctls={"net.ipv4.ip_forward": "1"})),
            grpc.StatusCode.INVALID_ARGUMENT,
            "own network namespace",
        ),
        (
            pod_config("bad", dns_config=pb.DNSConfig(servers=["not-an-ip"])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "dns_config.servers",
        ),
        (
            pod_config("bad", annotations={"kubernetes.io/ingress-bandwidth": "lots"}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ingress-bandwidth",
        ),
        (
            pod_config(
                "bad",
                linux=pb.LinuxPodSandboxConfig(
                    security_context=pb.LinuxSandboxSecurityContext(
                        namespace_options=pb.NamespaceOption(
                            userns_options=pb.UserNamespace(
                                mode=pb.POD, uids=[pb.IDMapping(host_id=100000, length=65536)]
                            )
                        )
                    )
                ),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "userns_options.gids: mode POD needs exactly one mapping",
        ),
    ],
)
def test_bad_config_is_refused_and_leaves_nothing(
    pods: PodHost, config: pb.PodSandboxConfig, code: grpc.StatusCode, words: str
) -> None:
    error = grpc_error(lambda: pods.run(config))
    assert error.code() == code, error.details()
    assert words in (error.details() or "")
    assert pods.listed() == []
    assert pods.pods_left() == []
    assert pods.network.allocated_ips() == []


def test_unknown_runtime_handler_is_refused(pods: PodHost) -> None:
    error = grpc_error(lambda: pods.run(pod_config("h"), handler="nope"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'nope'" in (error.details() or "")


def test_failed_network_setup_rolls_everything_back(
    daemon_paths: DaemonPaths, pod_network: PodNetwork, cgroup_parent: str
) -> None:
    # bridge and host-local succeed, then tuning fails: the ADD is undone, and so is the pod.
    failing = {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_knob": "1"}}
    host = _open_host(daemon_paths, pod_network, cgroup_parent, extra_plugins=[failing])
    try:
        for attempt in range(3):
            config = pod_config("netfail", attempt=attempt)
            error = grpc_error(lambda: host.run(config))  # noqa: B023
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "network setup failed" in (error.details() or "")
        assert host.listed() == []
        assert host.pods_left() == []
    finally:
        _close_host(host)


def test_host_network_pod(pods: PodHost) -> None:
    config = pod_config("hostnet", linux=linux(network=pb.NODE, ipc=pb.NODE))
    pod_id = pods.run(config)
    status = pods.status(pod_id)
    assert status.state == pb.SANDBOX_READY
    assert status.network.ip == ""
    assert status.linux.namespaces.options.network == pb.NODE
    info = pods.info(pod_id)
    assert info["netNamespacePath"] == ""
    assert info["runtimeSpec"]["namespaces"] == []
    pod_dir = pods.pod_dir(pod_id)
    assert (pod_dir / "hostname").read_text() == socket.gethostname() + "\n"
    assert (pod_dir / "resolv.conf").read_text() == Path("/etc/resolv.conf").read_text()
    assert not (pod_dir / "shm").exists()
    assert pods.network.bridge_ports() == []
    pod_pid = info["pid"]
    assert os.stat(f"/proc/{pod_pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino


def test_a_shared_cgroup_parent_crisp_made_keeps_what_others_put_below_it(
    pods: PodHost,
) -> None:
    # critest names one cgroup parent for all its pods, and none exists beforehand: the pod
    # that made it must not take the other pods' (or a fresh, still empty) cgroups with it.
    shared = f"{pods.cgroup_parent}/shared"
    host_network = linux(network=pb.NODE, ipc=pb.NODE)
    first = pods.run(pod_config("first", linux=host_network_with(host_network, shared)))
    second = pods.run(pod_config("second", linux=host_network_with(host_network, shared)))
    fresh = [d / "fresh" for d in _cgroup_dirs(shared) if d.is_dir()]
    for directory in fresh:
        directory.mkdir()
    pods.stop(first)
    pods.remove(first)
    assert all(d.is_dir() for d in fresh)
    second_infra = [d / f"crisp-{second}" for d in _cgroup_dirs(shared) if d.is_dir()]
    assert second_infra and all(d.is_dir() for d in second_infra)
    assert pods.status(second).state == pb.SANDBOX_READY
    for directory in fresh:
        directory.rmdir()
    pods.stop(second)
    pods.remove(second)
    assert not any(d.exists() for d in _cgroup_dirs(shared))  # unused now: removed


def host_network_with(
    config: pb.LinuxPodSandboxConfig, cgroup_parent: str
) -> pb.LinuxPodSandboxConfig:
    with_parent = pb.LinuxPodSandboxConfig()
    with_parent.CopyFrom(config)
    with_parent.cgroup_parent = cgroup_parent
    return with_parent


def test_shared_pid_namespace_has_pause_as_pid_1(pods: PodHost) -> None:
    pod_id = pods.run(pod_config("sharedpid", linux=linux(pid=pb.POD)))
    info = pods.info(pod_id)
    nspid = next(
        line.split()[1:]
        for line in Path(f"/proc/{info['pid']}/status").read_text().splitlines()
        if line.startswith("NSpid:")
    )
    assert nspid == [str(info["pid"]), "1"]
    assert pods.status(pod_id).linux.namespaces.options.pid == pb.POD
    # An orphan inside the pod is reaped by pause, so it never lingers as a zombie.
    pid_ns = f"/proc/{info['pid']}/ns/pid"
    subprocess.run(
        ["nsenter", f"--pid={pid_ns}", "--", "sh", "-c", "sleep 0.2 & exit 0"], check=True
    )
    deadline = time.monotonic() + 10
    while _children(info["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _children(info["pid"]) == []


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def test_drop_infra_keeps_namespaces_without_a_process(
    daemon_paths: DaemonPaths, pod_network: PodNetwork, cgroup_parent: str
) -> None:
    host = _open_host(
        daemon_paths, pod_network, cgroup_parent, extra_args=["--set", "runtime.drop_infra=true"]
    )
    try:
        lone = host.run(pod_config("noinfra", hostname="lone", linux=linux(pid=pb.CONTAINER)))
        info = host.info(lone)
        assert info["pid"] == 0
        assert namespaces.is_pinned(info["netNamespacePath"])
        assert nsenter(info, "uts", "hostname") == "lone"
        assert host.status(lone).state == pb.SANDBOX_READY
        shared = host.run(pod_config("withinfra", linux=linux(pid=pb.POD)))
        assert host.info(shared)["pid"] > 0  # PID sharing needs its init whatever the switch
    finally:
        _close_host(host)


def test_restart_keeps_pods_and_notices_dead_ones(pods: PodHost) -> None:
    keep = pods.run(pod_config("keep"))
    lose = pods.run(pod_config("lose"))
    keep_ip = pods.status(keep).network.ip
    pods.restart(signal.SIGKILL)
    assert pods.status(keep).state == pb.SANDBOX_READY
    assert pods.status(keep).network.ip == keep_ip
    pid, started = pods.pause_processes[1]
    pause.stop(pid, started)  # the pause process of "lose" dies while crisp is down
    pods.restart(signal.SIGKILL)
    assert pods.status(keep).state == pb.SANDBOX_READY
    assert pods.status(lose).state == pb.SANDBOX_NOTREADY
    assert [p.id for p in pods.listed(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY))] == [
        keep
    ]
    for pod_id in (keep, lose):
        pods.stop(pod_id)
        pods.remove(pod_id)
    assert pods.network.allocated_ips() == []


def test_list_filters_and_stream(pods: PodHost) -> None:
    a = pods.run(pod_config("list-a", labels={"tier": "front", "app": "x"}))
    b = pods.run(pod_config("list-b", labels={"tier": "back", "app": "x"}))
    pods.stop(b)
    assert [p.id for p in pods.listed()] == [a, b]
    assert [p.id for p in pods.listed(id=b[:10])] == [b]
    assert [p.id for p in pods.listed(label_selector={"app": "x", "tier": "front"})] == [a]
    assert pods.listed(label_selector={"app": "y"}) == []
    notready = pods.listed(state=pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY))
    assert [p.id for p in notready] == [b]
    assert notready[0].metadata.name == "list-b" and notready[0].runtime_handler == "crisp"
    streamed = pods.runtime.StreamPodSandboxes(pb.StreamPodSandboxesRequest())
    assert [p.id for batch in streamed for p in batch.pod_sandboxes] == [a, b]
    assert pods.status(b[:12]).id == b  # unique prefixes work as ids, as in crictl


def test_host_port_and_pod_to_pod_traffic(pods: PodHost) -> None:
    host_port = random.randint(20000, 29999)
    mapping = pb.PortMapping(protocol=pb.TCP, container_port=POD_PORT, host_port=host_port)
    server_id = pods.run(pod_config("server", port_mappings=[mapping]))
    client_id = pods.run(pod_config("client"))
    server_ip = pods.status(server_id).network.ip
    gateway = str(pods.network.subnet.network_address + 1)
    server_net = pods.info(server_id)["netNamespacePath"]
    client_net = pods.info(client_id)["netNamespacePath"]
    listener = in_netns(server_net, lambda: socket.create_server(("0.0.0.0", POD_PORT)))
    with listener:
        for target in ((server_ip, POD_PORT), (gateway, host_port), ("127.0.0.1", host_port)):
            server = serve_once(listener, b"pod")
            assert fetch(*target) == b"pod", target
            server.join()
        server = serve_once(listener, b"neighbour")
        assert in_netns(client_net, lambda: fetch(server_ip, POD_PORT)) == b"neighbour"
        server.join()
    assert server_id in _iptables_nat()
    pods.stop(server_id)
    assert server_id not in _iptables_nat()


def test_many_pods_in_parallel(pods: PodHost) -> None:
    with ThreadPoolExecutor(10) as pool:
        ids = list(pool.map(lambda i: pods.run(pod_config(f"many-{i}")), range(20)))
    ips = {pods.status(pod_id).network.ip for pod_id in ids}
    assert len(ips) == 20
    assert all(pods.status(pod_id).state == pb.SANDBOX_READY for pod_id in ids)
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(pods.stop, ids))
        list(pool.map(pods.remove, ids))
    assert pods.listed() == []
    assert pods.network.allocated_ips() == []


def _host_snapshot(host: PodHost) -> dict[str, object]:
    return {
        "mounts": namespaces.mounts_under(host.paths.base),
        "pod dirs": host.pods_left(),
        "bridge ports": host.network.bridge_ports(),  # the host ends of pod veths
        "allocated IPs": host.network.allocated_ips(),
        "cgroups": sorted(
            str(p) for d in _cgroup_dirs(host.cgroup_parent) if d.is_dir() for p in d.rglob("*/")
        ),
        "pause processes": [p for p in host.pause_processes if pause.is_alive(*p)],
        "nat rules": sum(pod_id in _iptables_nat() for pod_id in host.pod_ids),
    }


def test_run_stop_remove_cycles_leak_nothing(pods: PodHost) -> None:
    """200 cycles, every tenth with a network whose ADD fails half-way (after bridge and
    host-local succeeded): the host looks the same afterwards."""
    conflist = pods.paths.base / "net.d" / "10-pods.conflist"
    good = conflist.read_text()
    failing = {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_knob": "1"}}
    bad = json.dumps(pods.network.conflist([failing]))
    mapping = pb.PortMapping(protocol=pb.TCP, container_port=POD_PORT, host_port=29999)
    warm_up = pods.run(pod_config("warm-up"))  # the bridge and portmap's chains stay
    pods.stop(warm_up)
    pods.remove(warm_up)
    before = _host_snapshot(pods)
    for cycle in range(200):
        fail = cycle % 10 == 9
        conflist.write_text(bad if fail else good)
        os.utime(conflist, ns=(cycle * 10**9, cycle * 10**9))  # the watcher sees every change
        config = pod_config(f"cycle-{cycle}", port_mappings=[mapping], linux=linux())
        if fail:
            error = grpc_error(lambda: pods.run(config))  # noqa: B023
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
            continue
        pod_id = pods.run(config)
        pods.stop(pod_id)
        pods.remove(pod_id)
    conflist.write_text(good)
    # The kernel tears a network namespace (and a veth inside) down asynchronously.
    deadline = time.monotonic() + 10
    while _host_snapshot(pods) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _host_snapshot(pods) == before


def test_start_up_undoes_a_run_interrupted_by_a_crash(
    daemon_paths: DaemonPaths, pod_network: PodNetwork, cgroup_parent: str
) -> None:
    """A RunPodSandbox cut short leaves a CREATING record and whatever it had made; a lost
    database leaves pod dirs no record names. The next start removes both."""
    pod_id = secrets.token_hex(32)
    pod_dir = daemon_paths.run / "pods" / pod_id
    pod = PodSandbox(
        id=pod_id,
        config=PodConfig(PodMetadata(name="crashed", uid="uid-crashed", namespace=NAMESPACE)),
        runtime_handler="crisp",
        state=CREATING,
        created_ns=time.time_ns(),
        dir=str(pod_dir),
        hostname="crashed",
        shm_path=str(pod_dir / "shm"),
    )
    daemon_paths.root.mkdir(parents=True)
    db = StateDB(daemon_paths.root / "crisp.db")
    try:
        db.put("pod", pod_id, CREATING, pod.to_doc())
    finally:
        db.close()
    namespaces.mount_shm(pod_dir / "shm", 1 << 20)
    (pod_dir / "hostname").write_text("crashed\n")
    stray = daemon_paths.run / "pods" / secrets.token_hex(32)  # a dir no record names
    namespaces.mount_shm(stray / "shm", 1 << 20)
    host = _open_host(daemon_paths, pod_network, cgroup_parent)
    try:
        assert host.listed() == []
        assert host.pods_left() == []
        # the name is free again
        host.run(pod_config("crashed", linux=linux()))
    finally:
        _close_host(host)


def test_without_a_network_config_only_host_network_pods_run(
    daemon_paths: DaemonPaths, pod_network: PodNetwork, cgroup_parent: str
) -> None:
    daemon = _start(daemon_paths, cgroup_parent, [])
    host = PodHost(daemon_paths, pod_network, cgroup_parent, [], daemon)
    try:
        error = grpc_error(lambda: host.run(pod_config("nonet", linux=linux())))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "no valid CNI network config" in (error.details() or "")
        assert host.pods_left() == []
        pod_id = host.run(pod_config("hostnet", linux=linux(network=pb.NODE)))
        assert host.status(pod_id).state == pb.SANDBOX_READY
    finally:
        _close_host(host)
