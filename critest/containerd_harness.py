"""Runs the suite (or the benchmark) against Debian's containerd, started here on temporary
paths so that it touches none of the host's defaults:

    python -m critest.containerd_harness [--bench] [-- critest arguments...]

containerd 1.6 (config schema version 2) gets its own root, state, socket, a bridge CNI
network on a private /24 with a unique bridge name, and a sandbox image from a registry on
loopback. Afterwards it is stopped by its PID and everything it left is removed: pods (so
CNI tears down its veths and port mappings), shims, mounts, network namespaces, the bridge,
the iptables chains the CNI plugins added, and the cgroups."""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

from criapi import api_pb2 as pb
from critest import bench, cli
from critest.client import Client
from critest.registry import Registry
from critest.testimages import build_and_push

CONTAINERD = "/usr/bin/containerd"
RUNC = "/usr/sbin/runc"
CNI_BIN = "/usr/lib/cni"
NETNS_DIR = Path("/var/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
IPTABLES_TABLES = ("nat", "filter", "mangle")


def config_toml(base: Path, pause_image: str) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{base}/root"
state = "{base}/state"

[grpc]
  address = "{base}/containerd.sock"

[ttrpc]
  address = "{base}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"

[{cri}]
  sandbox_image = "{pause_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  max_container_log_line_size = 16384
  # This machine refuses to lower oom_score_adj below the caller's (the sandbox's -998
  # fails with EPERM); restricting keeps containerd's values at or above its own.
  restrict_oom_score_adj = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  BinaryName = "{RUNC}"
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{base}/cni"
"""


def cni_conflist(bridge: str, subnet: str, ipam_dir: Path) -> str:
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "critest",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": subnet}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(ipam_dir),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        indent=2,
    )


def _iptables_chains() -> dict[str, set[str]]:
    chains: dict[str, set[str]] = {}
    for table in IPTABLES_TABLES:
        out = _iptables("-t", table, "-S")
        chains[table] = {line.split()[1] for line in out.splitlines() if line.startswith("-N ")}
    return chains


def _iptables(*args: str) -> str:
    return subprocess.run(["iptables", *args], capture_output=True, text=True, check=False).stdout


def _remove_new_chains(before: dict[str, set[str]]) -> None:
    """Drops the CNI chains that appeared during the run, and the rules jumping to them;
    but only when no port mapping is left in CNI-HOSTPORT-DNAT: those top-level chains are
    shared by every portmap user on the host, and another one may still need them."""
    if any(
        line.startswith("-A")
        for line in _iptables("-t", "nat", "-S", "CNI-HOSTPORT-DNAT").splitlines()
    ):
        print("harness: port mappings remain; CNI chains left in place", file=sys.stderr)
        return
    for table, old in before.items():
        rules = _iptables("-t", table, "-S").splitlines()
        new = {r.split()[1] for r in rules if r.startswith("-N ")} - old
        new = {c for c in new if c.startswith("CNI-")}
        for rule in rules:
            parts = shlex.split(rule)  # comments are quoted and hold spaces
            jumps_to_new = "-j" in parts and parts[parts.index("-j") + 1] in new
            if parts[0] == "-A" and parts[1] not in new and jumps_to_new:
                _iptables("-t", table, "-D", *parts[1:])
        for chain in new:
            _iptables("-t", table, "-F", chain)
        for chain in new:
            _iptables("-t", table, "-X", chain)


def _mounts_under(paths: Sequence[Path]) -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if any(point == str(p) or point.startswith(f"{p}/") for p in paths):
                found.append(point)
    return found


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _remove_cgroups(relative: str) -> None:
    """rmdir bottom-up every cgroup named ``relative`` in each hierarchy (only empty ones
    can go; a process still inside keeps its cgroup and is reported)."""
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / relative.strip("/")
        if not top.is_dir():
            continue
        for directory in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
        ):
            directory.rmdir()
        top.rmdir()


class Containerd:
    def __init__(self, pause_image: str) -> None:
        suffix = "".join(random.choices("0123456789abcdef", k=6))
        self.base = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
        self.bridge = f"crt{suffix}"
        self.subnet = f"10.199.{random.randrange(1, 255)}.0/24"
        self.cgroup_parent = f"/critest-{suffix}"
        self.pause_image = pause_image
        self.process: subprocess.Popen[bytes] | None = None
        self._netns_before: set[str] = set()
        self._chains_before: dict[str, set[str]] = {}

    @property
    def endpoint(self) -> str:
        return f"unix://{self.base}/containerd.sock"

    def start(self) -> None:
        (self.base / "cni").mkdir()
        (self.base / "cni" / "10-critest.conflist").write_text(
            cni_conflist(self.bridge, self.subnet, self.base / "ipam")
        )
        (self.base / "config.toml").write_text(config_toml(self.base, self.pause_image))
        self._netns_before = set(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else set()
        self._chains_before = _iptables_chains()
        with (self.base / "containerd.log").open("wb") as log:
            self.process = subprocess.Popen(
                [CONTAINERD, "--config", str(self.base / "config.toml")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        with Client(self.endpoint) as client:
            while True:
                try:
                    status = client.runtime.Status(pb.StatusRequest(), timeout=2).status
                    if all(c.status for c in status.conditions):
                        return
                except grpc.RpcError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "containerd did not become ready; its log:\n"
                        + (self.base / "containerd.log").read_text(errors="replace")[-4000:]
                    )
                time.sleep(0.2)

    def _remove_pods(self) -> None:
        with Client(self.endpoint) as client:
            pods = client.runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=60)
            for pod in pods.items:
                print(f"harness: removing leftover pod {pod.metadata.name}", file=sys.stderr)
                client.runtime.StopPodSandbox(
                    pb.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=60
                )
                client.runtime.RemovePodSandbox(
                    pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=60
                )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self._remove_pods()
            except grpc.RpcError as error:
                print(f"harness: listing pods failed: {error}", file=sys.stderr)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # Shims outlive containerd by design; ours name our socket on their command line.
        for pid in _processes_mentioning(f"{self.base}/containerd.sock"):
            os.kill(pid, signal.SIGKILL)
        for point in reversed(_mounts_under([self.base])):
            subprocess.run(["umount", "-l", point], check=False)
        if NETNS_DIR.is_dir():
            for name in set(os.listdir(NETNS_DIR)) - self._netns_before:
                if name.startswith("cni-"):
                    subprocess.run(["umount", "-l", str(NETNS_DIR / name)], check=False)
                    (NETNS_DIR / name).unlink(missing_ok=True)
        subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)
        _remove_new_chains(self._chains_before)
        for relative in (self.cgroup_parent, "/k8s.io"):
            try:
                _remove_cgroups(relative)
            except OSError as error:
                print(f"harness: cgroup {relative} left: {error}", file=sys.stderr)
        shutil.rmtree(self.base, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m critest.containerd_harness")
    parser.add_argument("--bench", action="store_true", help="run the benchmark instead")
    parser.add_argument("--keep-log", type=Path, help="copy containerd's log here")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the suite")
    args = parser.parse_args(argv)
    rest = [a for a in args.rest if a != "--"]
    with Registry() as first, Registry() as second:
        pause = build_and_push(first.host).pause.ref
        daemon = Containerd(pause)
        try:
            daemon.start()
            common = ["--runtime-endpoint", daemon.endpoint, "--cgroup-parent"]
            common += [daemon.cgroup_parent]
            if args.bench:
                assert daemon.process is not None
                # Its shims leave its process tree; the benchmark finds them through CRI.
                memory = ["--daemon-pid", str(daemon.process.pid)]
                return bench.main([*common, "--registry", first.host, *memory, *rest])
            registries = ["--registry", first.host, "--registry", second.host]
            return cli.main([*common, *registries, *rest])
        finally:
            if args.keep_log and (daemon.base / "containerd.log").exists():
                shutil.copy(daemon.base / "containerd.log", args.keep_log)
            daemon.stop()


if __name__ == "__main__":
    sys.exit(main())
