"""The built-in pause binary and namespace pinning, with real processes and mounts. Scripts
run in a fresh interpreter: the fork server must start before any thread exists."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import namespaces, pause

REPO = Path(__file__).resolve().parents[2]
needs_root_x86 = pytest.mark.skipif(
    os.geteuid() != 0 or pause.supported() is not None, reason="needs root on x86_64"
)


def run_script(code: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_pause_binary_is_a_tiny_static_elf() -> None:
    elf = pause.PAUSE_ELF
    assert elf[:4] == b"\x7fELF" and elf[4] == 2 and elf[5] == 1  # 64-bit little-endian
    e_type, e_machine = struct.unpack_from("<HH", elf, 16)
    assert (e_type, e_machine) == (2, 62)  # a static x86_64 executable
    (entry,) = struct.unpack_from("<Q", elf, 24)
    assert entry == 0x400000 + 64 + 56
    assert len(elf) < 512


@needs_root_x86
def test_pause_blocks_signals_exits_on_term_and_costs_little_memory() -> None:
    result = run_script(
        """
import json, os, signal, time
from runtime import pause
pid = os.fork()
if pid == 0:
    pause.exec_pause()
time.sleep(0.2)
comm = open(f"/proc/{pid}/comm").read().strip()
pss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/smaps_rollup") if l.startswith("Pss:"))
for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGPIPE, signal.SIGALRM):
    os.kill(pid, sig)
time.sleep(0.1)
survived = pause.start_time(pid) is not None
pause.stop(pid, pause.start_time(pid))
_, status = os.waitpid(pid, 0)
print(json.dumps({"comm": comm, "pss": pss, "survived": survived,
                  "code": os.waitstatus_to_exitcode(status)}))
"""
    )
    assert result["comm"] == "crisp-pause"
    assert isinstance(result["pss"], int) and result["pss"] < 1024  # KiB
    assert result["survived"] is True
    assert result["code"] == 0  # SIGTERM is a clean exit, not a kill


@needs_root_x86
def test_namespaces_are_created_pinned_and_unpinned(tmp_path: Path) -> None:
    pins = tmp_path / "pins"
    result = run_script(
        f"""
import json, os, subprocess
from pathlib import Path
from runtime import namespaces, pause, syscalls
from runtime.zygote import Zygote
zygote = Zygote()
root = Path({str(pins)!r})
# The parent is a shared mount, as / is under systemd: the pin root must not be.
syscalls.mount(root.parent, root.parent, None, syscalls.MS_BIND)
syscalls.mount(None, root.parent, None, syscalls.MS_SHARED)
namespaces.prepare_pin_root(root)
out = {{}}
def propagation(path):
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        if fields[4] == str(path):
            return [f for f in fields[6:fields.index("-")] if ":" in f]
out["parent_propagation"] = propagation(root.parent)
out["root_propagation"] = propagation(root)
spec = namespaces.NamespaceSpec(new=("net", "ipc", "uts"), new_pid=True, hostname="pinned",
                                sysctls={{"net.ipv4.ip_unprivileged_port_start": "42"}})
made = namespaces.create(zygote, spec, root / "a")
out["pinned"] = all(namespaces.is_pinned(p) for p in made.pins.values())
out["pin_propagation"] = propagation(made.pins["net"])
uts = subprocess.run(["nsenter", "--uts=" + made.pins["uts"], "hostname"],
                     capture_output=True, text=True).stdout.strip()
port = subprocess.run(["nsenter", "--net=" + made.pins["net"], "cat",
                       "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
                      capture_output=True, text=True).stdout.strip()
out["uts"], out["port"] = uts, port
out["nspid"] = [l.split()[1:] for l in open(f"/proc/{{made.pid}}/status")
                if l.startswith("NSpid")][0]
pause.stop(made.pid, made.start_time)
for path in made.pins.values():
    namespaces.unpin(path)
out["left"] = sorted(os.listdir(root / "a"))
held = namespaces.create(zygote, namespaces.NamespaceSpec(new=("net",), keep_process=False),
                         root / "b")
out["held_pid"] = held.pid
out["held_pinned"] = namespaces.is_pinned(held.pins["net"])
namespaces.unpin(held.pins["net"])
try:
    namespaces.create(zygote, namespaces.NamespaceSpec(new=("net",), sysctls={{"net.nope": "1"}}),
                      root / "c")
except namespaces.SysctlError as e:
    out["sysctl_error"] = str(e)
out["c_left"] = sorted(os.listdir(root / "c")) if (root / "c").exists() else []
for d in ("a", "b", "c"):
    if (root / d).exists():
        (root / d).rmdir()
out["released"] = namespaces.release_pin_root(root)
out["mounts"] = namespaces.mounts_under(root.parent)
namespaces.unmount(root.parent)
zygote.close()
print(json.dumps(out))
"""
    )
    assert result["pinned"] is True
    parent = result["parent_propagation"]
    assert isinstance(parent, list) and parent[0].startswith("shared:")
    assert result["root_propagation"] == [] and result["pin_propagation"] == []  # private
    assert result["uts"] == "pinned"
    assert result["port"] == "42"
    nspid = result["nspid"]
    assert isinstance(nspid, list) and nspid[-1] == "1"
    assert result["left"] == []
    assert result["held_pid"] == 0 and result["held_pinned"] is True
    assert "net.nope" in str(result["sysctl_error"])
    assert result["c_left"] == []
    assert result["released"] is True
    assert result["mounts"] == []


def test_sysctl_paths() -> None:
    assert namespaces.sysctl_path("net.ipv4.ip_forward") == Path("/proc/sys/net/ipv4/ip_forward")
    assert namespaces.sysctl_path("net/ipv4/conf/eth0.1/forwarding") == Path(
        "/proc/sys/net/ipv4/conf/eth0.1/forwarding"
    )
    for bad in ("", "net/../x", "net//x", "."):
        with pytest.raises(ValueError):
            namespaces.sysctl_path(bad)
