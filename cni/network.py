"""Pod networking as the sandbox layer sees it: join a pod's netns to the configured
network (plus loopback), leave it, check it, and report whether networking is ready."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cni.attachment import Attachment, k8s_args
from cni.cache import ResultCache
from cni.client import CNIClient
from cni.config import (
    ConfigWatcher,
    LoadResult,
    NetworkConfigList,
    load_conf_dir,
    parse_conflist,
)
from cni.errors import CNIError, ConfigError
from cni.invoke import DEFAULT_TIMEOUT, Runner
from cni.result import IPAddress, IPConfig, Result

log = logging.getLogger(__name__)

LOOPBACK_NETWORK = "cni-loopback"
NOT_READY = "NetworkPluginNotReady"


@dataclass(frozen=True)
class PortMapping:
    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    def to_cni(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol.lower(),
        }
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out


@dataclass(frozen=True)
class Bandwidth:
    """Rates in bits per second, bursts in bits, as the bandwidth plugin expects."""

    ingress_rate: int = 0
    ingress_burst: int = 0
    egress_rate: int = 0
    egress_burst: int = 0

    def to_cni(self) -> dict[str, int]:
        names = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")
        values = (self.ingress_rate, self.ingress_burst, self.egress_rate, self.egress_burst)
        return {k: v for k, v in zip(names, values, strict=True) if v}


@dataclass(frozen=True)
class PodDNS:
    servers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def to_cni(self) -> dict[str, list[str]]:
        return {"servers": self.servers, "searches": self.searches, "options": self.options}


@dataclass(frozen=True)
class PodNetworkResult:
    network: str
    ifname: str
    ips: list[IPConfig]  # of the pod interface `ifname`
    result: Result

    @property
    def pod_ip(self) -> IPAddress | None:
        """The primary pod IP: the first IPv4 one (as kubelet prefers), else the first."""
        addrs = [ip.address.ip for ip in self.ips]
        v4 = [a for a in addrs if a.version == 4]
        return (v4 or addrs or [None])[0]

    @property
    def pod_ips(self) -> list[str]:
        primary = self.pod_ip
        rest = [str(ip.address.ip) for ip in self.ips if ip.address.ip != primary]
        return ([str(primary)] if primary is not None else []) + rest


@dataclass(frozen=True)
class NetworkStatus:
    ready: bool
    reason: str = ""
    message: str = ""


class NetworkManager:
    """Thread-safe; operations on one pod are serialised, different pods run in parallel."""

    def __init__(
        self,
        conf_dir: Path | str,
        bin_dirs: Sequence[str],
        cache_dir: Path | str,
        *,
        default_network: str | None = None,
        ifname: str = "eth0",
        loopback: bool = True,
        plugin_timeout: float = DEFAULT_TIMEOUT,
        runner: Runner | None = None,
    ) -> None:
        self.conf_dir = Path(conf_dir)
        self.default_network = default_network
        self.ifname = ifname
        self.loopback = loopback
        self.client = CNIClient(bin_dirs, ResultCache(cache_dir), runner or Runner(plugin_timeout))
        self._watcher = ConfigWatcher(self.conf_dir)
        self._lock = threading.Lock()
        self._loaded = LoadResult([], [])
        self._pod_locks: dict[str, threading.Lock] = {}
        self._pod_users: dict[str, int] = {}
        self.reload()

    # -- configuration ---------------------------------------------------------------

    def reload(self, force: bool = False) -> bool:
        """Re-read the conf dir if it changed (or when forced); True if it was re-read."""
        with self._lock:
            if not self._watcher.changed() and not force:
                return False
            self._loaded = load_conf_dir(self.conf_dir)
        for err in self._loaded.errors:
            log.warning("%s", err)
        net = self.network
        log.info("CNI network now %s", f"{net.name} from {net.source}" if net else "absent")
        return True

    @property
    def network(self) -> NetworkConfigList | None:
        """The network pods join: the named default, else the first valid config whose
        plugins are all installed (as CRI-O picks), else the first valid config."""
        with self._lock:
            nets = list(self._loaded.networks)
        if self.default_network is not None:
            return next((n for n in nets if n.name == self.default_network), None)
        for net in nets:
            if not self._missing_plugins(net):
                return net
        return nets[0] if nets else None

    def _missing_plugins(self, net: NetworkConfigList) -> list[str]:
        missing = []
        for plugin in net.plugins:
            try:
                self.client.find(plugin)
            except CNIError:
                missing.append(plugin.type)
        return missing

    def _require_network(self) -> NetworkConfigList:
        self.reload()
        net = self.network
        if net is None:
            raise CNIError(self._no_network_message())
        return net

    def _no_network_message(self) -> str:
        wanted = f"network {self.default_network!r}" if self.default_network else "network"
        msg = f"no valid CNI {wanted} config in {self.conf_dir}"
        with self._lock:
            errors = list(self._loaded.errors)
        if errors:
            msg += " (" + "; ".join(str(e) for e in errors) + ")"
        return msg

    # -- pod operations --------------------------------------------------------------

    def setup(
        self,
        pod_id: str,
        netns_path: str,
        namespace: str,
        name: str,
        uid: str,
        port_mappings: Iterable[PortMapping] = (),
        bandwidth: Bandwidth | None = None,
        dns: PodDNS | None = None,
        cgroup_path: str = "",
        annotations: Mapping[str, str] | None = None,
    ) -> PodNetworkResult:
        """ADD the pod to loopback and the network. On failure whatever was set up is
        deleted again before the error is raised."""
        net = self._require_network()
        caps = _capability_args(port_mappings, bandwidth, dns, cgroup_path, annotations)
        args = k8s_args(namespace, name, pod_id, uid)
        att = Attachment(pod_id, netns_path, self.ifname, args, caps)
        with self._pod_lock(pod_id):
            done: list[tuple[NetworkConfigList, Attachment]] = []
            try:
                if self.loopback:
                    lo_net = _loopback_network(net.cni_version)
                    lo = Attachment(pod_id, netns_path, "lo", args)
                    done.append((lo_net, lo))
                    self.client.add(lo_net, lo)
                done.append((net, att))  # a failed ADD may have half-configured the pod
                result = self.client.add(net, att)
            except BaseException:
                for cleanup_net, cleanup_att in reversed(done):
                    try:
                        self.client.delete(cleanup_net, cleanup_att)
                    except CNIError as exc:
                        log.warning("cleanup after failed ADD of pod %s: %s", pod_id, exc)
                raise
        return PodNetworkResult(net.name, self.ifname, result.ips_of(self.ifname), result)

    def teardown(
        self,
        pod_id: str,
        netns_path: str = "",
        namespace: str = "",
        name: str = "",
        uid: str = "",
        port_mappings: Iterable[PortMapping] = (),
    ) -> None:
        """DEL the pod from every network it was added to. Idempotent. Uses the config
        and arguments cached at ADD, so it works after a restart or a config change;
        without a cache entry it falls back to the current config. A missing netns is
        passed as none at all, so plugins still release IPs and host-side state."""
        netns = netns_path if netns_path and os.path.exists(netns_path) else ""
        with self._pod_lock(pod_id):
            entries = self.client.cache.entries(pod_id)
            jobs: list[tuple[NetworkConfigList, Attachment]] = []
            for entry in entries:
                try:
                    jobs.append((entry.network(), entry.attachment(netns)))
                except ConfigError as exc:
                    log.warning("pod %s: unusable cached config, using current: %s", pod_id, exc)
            if not any(a.ifname == self.ifname and n.name != LOOPBACK_NETWORK for n, a in jobs):
                self.reload()
                net = self.network
                if net is None:
                    log.warning(
                        "pod %s: no cached result and %s", pod_id, self._no_network_message()
                    )
                else:
                    caps = _capability_args(port_mappings, None, None, "", None)
                    args = k8s_args(namespace, name, pod_id, uid) if namespace or name else ()
                    jobs.append((net, Attachment(pod_id, netns, self.ifname, args, caps)))
            # Pod networks before loopback: the reverse of setup.
            jobs.sort(key=lambda job: job[0].name == LOOPBACK_NETWORK)
            errors: list[CNIError] = []
            for net, att in jobs:
                try:
                    self.client.delete(net, att)
                except CNIError as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]

    def check(self, pod_id: str, netns_path: str) -> None:
        """CHECK the pod's attachment to the network it was added to (from the cache)."""
        with self._pod_lock(pod_id):
            entry = self.client.cache.load(self._network_name_of(pod_id), pod_id, self.ifname)
            if entry is None:
                raise CNIError(f"pod {pod_id} has no cached CNI result")
            self.client.check(entry.network(), entry.attachment(netns_path))

    def cached_result(self, pod_id: str) -> PodNetworkResult | None:
        """The ADD result recorded for the pod, e.g. to report its IP after a restart."""
        for entry in self.client.cache.entries(pod_id):
            if (
                entry.ifname == self.ifname
                and entry.network_name != LOOPBACK_NETWORK
                and entry.result
            ):
                res = entry.result
                return PodNetworkResult(
                    entry.network_name, self.ifname, res.ips_of(self.ifname), res
                )
        return None

    def _network_name_of(self, pod_id: str) -> str:
        cached = self.cached_result(pod_id)
        if cached is not None:
            return cached.network
        return self._require_network().name

    def gc(self, valid_pod_ids: Iterable[str]) -> None:
        """Delete cached attachments of pods not in `valid_pod_ids` and let 1.1.0 plugins
        collect leaked resources."""
        valid = set(valid_pod_ids)
        net = self._require_network()
        attachments = [(pod, self.ifname) for pod in sorted(valid)]
        self.client.gc(net, attachments)
        if self.loopback:
            self.client.gc(_loopback_network(net.cni_version), [(p, "lo") for p in sorted(valid)])

    def status(self) -> NetworkStatus:
        self.reload()
        net = self.network
        if net is None:
            return NetworkStatus(False, NOT_READY, self._no_network_message())
        missing = self._missing_plugins(net)
        if self.loopback:
            missing += self._missing_plugins(_loopback_network(net.cni_version))
        if missing:
            return NetworkStatus(
                False,
                NOT_READY,
                f"network {net.name} ({net.source}): CNI plugins {', '.join(missing)} "
                f"not found in {':'.join(self.client.bin_dirs)}",
            )
        try:
            self.client.status(net)
        except CNIError as exc:
            return NetworkStatus(False, NOT_READY, f"network {net.name}: {exc}")
        return NetworkStatus(True)

    @contextlib.contextmanager
    def _pod_lock(self, pod_id: str) -> Iterator[None]:
        with self._lock:
            lock = self._pod_locks.setdefault(pod_id, threading.Lock())
            self._pod_users[pod_id] = self._pod_users.get(pod_id, 0) + 1
        try:
            with lock:
                yield
        finally:
            with self._lock:
                self._pod_users[pod_id] -= 1
                if not self._pod_users[pod_id]:
                    del self._pod_users[pod_id]
                    del self._pod_locks[pod_id]


def _capability_args(
    port_mappings: Iterable[PortMapping],
    bandwidth: Bandwidth | None,
    dns: PodDNS | None,
    cgroup_path: str,
    annotations: Mapping[str, str] | None,
) -> dict[str, Any]:
    caps: dict[str, Any] = {}
    ports = [p.to_cni() for p in port_mappings]
    if ports:
        caps["portMappings"] = ports
    if bandwidth is not None and bandwidth.to_cni():
        caps["bandwidth"] = bandwidth.to_cni()
    if dns is not None:
        caps["dns"] = dns.to_cni()
    if cgroup_path:
        caps["cgroupPath"] = cgroup_path
    if annotations:
        caps["io.kubernetes.cri.pod-annotations"] = dict(annotations)
    return caps


def _loopback_network(pod_network_version: str) -> NetworkConfigList:
    # Loopback needs no state; the pod network's version keeps us within what the
    # installed plugin set speaks (1.1.0 lists fall back to 1.0.0 for old loopbacks).
    ver = "1.0.0" if pod_network_version == "1.1.0" else pod_network_version
    return parse_conflist(
        {"cniVersion": ver, "name": LOOPBACK_NETWORK, "plugins": [{"type": "loopback"}]},
        "<built-in loopback>",
    )
