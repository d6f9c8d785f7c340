"""Containers end to end on the real kernel: Runtime in a driver process, a monitor per
container, busybox rootfs. Every test deletes what it made (the `lab` fixture)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from runtime.cgroups import find_mounts
from runtime.procfs import start_time
from tests.runtime.containers import DriverError, Lab, mounts_under, needs_busybox, read_log
from tests.runtime.processes import Spawn, needs_root

pytestmark = [needs_root, needs_busybox]

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def status_of(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def run_to_end(lab: Lab, args: list[str], **changes: object) -> tuple[dict[str, object], str]:
    """Create, start and wait for a container; returns its final state and its stdout."""
    name = f"c{lab.count + 1}"
    log = lab.base / f"{name}.log"
    lab.driver.call("create", name, lab.bundle(args, **changes), log_path=log)
    lab.driver.call("start", name)
    state = lab.driver.call("wait", name, 20)
    lines = [r[3] for r in read_log(log) if r[1] == "stdout"]
    lab.driver.call("delete", name)
    return state, "\n".join(lines)


def cgroup_dirs(parent: str) -> list[Path]:
    mounts = find_mounts()
    return [Path(p) / parent for p in mounts.v1.values() if (Path(p) / parent).exists()]


def test_create_blocks_start_runs_and_the_log_is_in_cri_format(lab: Lab) -> None:
    log = lab.base / "c.log"
    script = "echo out1; echo err1 >&2; printf 'no newline'; exit 3"
    created = lab.driver.call("create", "c", lab.bundle(["sh", "-c", script]), log_path=log)
    assert created["status"] == "created" and created["started_at"] == 0
    pid = created["pid"]
    # Blocked before execve: still the (python) init, already in its own pid namespace.
    assert "python" in Path(f"/proc/{pid}/exe").resolve().name
    assert status_of(pid)["NSpid"].split()[-1] == "1"
    assert log.read_text() == ""
    lab.driver.call("start", "c")
    final = lab.driver.call("wait", "c", 20)
    assert final["status"] == "stopped"
    assert final["exit_code"] == 3 and final["signal"] is None
    assert final["started_at"] >= created["created_at"]
    assert final["finished_at"] >= final["started_at"]
    records = read_log(log)
    assert all(STAMP.match(r[0]) for r in records), records
    assert [(r[1], r[2], r[3]) for r in records if r[1] == "stdout"] == [
        ("stdout", "F", "out1"),
        ("stdout", "F", "no newline"),
    ]
    assert ("stderr", "F", "err1") in [(r[1], r[2], r[3]) for r in records]
    with pytest.raises(DriverError, match="stopped"):
        lab.driver.call("start", "c")
    lab.driver.call("delete", "c")


def test_long_lines_are_split_into_partial_records(lab: Lab) -> None:
    _, _ = run_to_end(lab, ["sh", "-c", "head -c 40000 /dev/zero | tr '\\0' x; echo"])
    records = read_log(lab.base / "c1.log")
    assert [r[2] for r in records] == ["P", "P", "F"]
    assert "".join(r[3] for r in records) == "x" * 40000


def test_missing_executable_is_a_clear_error_at_create(lab: Lab) -> None:
    with pytest.raises(DriverError, match="executable file not found: /bin/nope"):
        lab.driver.call("create", "c", lab.bundle(["/bin/nope"]))
    with pytest.raises(DriverError, match=r"executable file not found in \$PATH: nope"):
        lab.driver.call("create", "c", lab.bundle(["nope"]))
    assert list(lab.state_root.iterdir()) == []
    # the parent may stay (shared by pods, as with runc); the containers' own are gone
    assert not [p for d in cgroup_dirs(lab.cgroup_parent) for p in d.glob("c[0-9]*") if p.is_dir()]


def test_exec_failure_is_reported_by_start(lab: Lab) -> None:
    bundle = lab.bundle(["/bin/garbage"])
    garbage = bundle / "rootfs" / "bin" / "garbage"
    garbage.write_bytes(b"\x00\x01 not a program")
    garbage.chmod(0o755)
    lab.driver.call("create", "c", bundle)
    with pytest.raises(DriverError, match="exec /bin/garbage: Exec format error"):
        lab.driver.call("start", "c")
    final = lab.driver.call("wait", "c", 10)
    assert final["status"] == "stopped"
    assert "Exec format error" in final["error"]
    lab.driver.call("delete", "c")


def test_spec_errors_name_the_field_and_leave_nothing(lab: Lab) -> None:
    cases: dict[str, tuple[str, object]] = {
        "process.user.uid": ("process.user.uid", "root"),
        "mounts": ("mounts[0].destination", [{"destination": "/../etc", "type": "tmpfs"}]),
        "linux.namespaces": ("unknown namespace", [{"type": "bogus"}]),
        "process.capabilities": ("CAP_BOGUS", {"bounding": ["CAP_BOGUS"]}),
        "linux.resources": ("linux.resources.memory.limit", {"memory": {"limit": "x"}}),
    }
    for key, (expected, value) in cases.items():
        with pytest.raises(DriverError, match=re.escape(expected)) as info:
            lab.driver.call("create", "c", lab.bundle(None, **{key: value}))
        assert info.value.kind == "SpecError"
    assert list(lab.state_root.iterdir()) == []


def test_mount_destination_escaping_by_symlink_is_refused(lab: Lab) -> None:
    bundle = lab.bundle(
        ["true"], mounts=[{"destination": "/evil/x", "type": "tmpfs", "source": "tmpfs"}]
    )
    (bundle / "rootfs" / "evil").symlink_to("../../../..")
    with pytest.raises(DriverError, match="escapes the container rootfs"):
        lab.driver.call("create", "c", bundle)
    assert list(lab.state_root.iterdir()) == []


def test_kill_with_sigterm_and_sigkill(lab: Lab) -> None:
    trap = "trap 'exit 42' TERM; echo ready; while true; do sleep 0.05; done"
    lab.driver.call("create", "t", lab.bundle(["sh", "-c", trap]), log_path=lab.base / "t.log")
    lab.driver.call("create", "k", lab.bundle(["sleep", "600"]))
    lab.driver.call("start", "t")
    lab.driver.call("start", "k")
    deadline = time.monotonic() + 10
    while "ready" not in (lab.base / "t.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    lab.driver.call("kill", "t", int(signal.SIGTERM))
    lab.driver.call("kill", "k", int(signal.SIGKILL))
    term = lab.driver.call("wait", "t", 10)
    killed = lab.driver.call("wait", "k", 10)
    assert term["exit_code"] == 42
    assert killed["exit_code"] == 137 and killed["signal"] == signal.SIGKILL
    with pytest.raises(DriverError, match="stopped"):
        lab.driver.call("kill", "k", int(signal.SIGKILL))
    lab.driver.call("delete", "t")
    lab.driver.call("delete", "k")


def test_created_container_can_be_killed_and_deleted(lab: Lab) -> None:
    created = lab.driver.call("create", "c", lab.bundle(["sleep", "600"]))
    lab.driver.call("delete", "c")
    assert not Path(f"/proc/{created['pid']}").exists()
    assert not (lab.state_root / "c").exists()


def test_namespaces_are_new_and_can_be_joined_by_path(lab: Lab) -> None:
    first = lab.driver.call("create", "a", lab.bundle(["sleep", "600"]))
    lab.driver.call("start", "a")
    pid = first["pid"]
    kinds = ("net", "ipc", "uts", "mnt", "pid")
    for kind in kinds:
        assert os.readlink(f"/proc/{pid}/ns/{kind}") != os.readlink(f"/proc/self/ns/{kind}")
    joined = [
        {"type": "network", "path": f"/proc/{pid}/ns/net"},
        {"type": "ipc", "path": f"/proc/{pid}/ns/ipc"},
        {"type": "pid", "path": f"/proc/{pid}/ns/pid"},
        {"type": "mount"},
    ]
    second = lab.driver.call(
        "create", "b", lab.bundle(["sleep", "600"], hostname=None, **{"linux.namespaces": joined})
    )
    other = second["pid"]
    for kind in ("net", "ipc", "pid"):
        assert os.readlink(f"/proc/{other}/ns/{kind}") == os.readlink(f"/proc/{pid}/ns/{kind}")
    assert os.readlink(f"/proc/{other}/ns/uts") == os.readlink("/proc/self/ns/uts")
    assert os.readlink(f"/proc/{other}/ns/mnt") != os.readlink(f"/proc/{pid}/ns/mnt")
    assert status_of(other)["NSpid"].split()[-1] != "1"
    lab.driver.call("delete", "b", force=True)
    lab.driver.call("delete", "a", force=True)


def test_hostname_mounts_masked_and_readonly_paths(lab: Lab) -> None:
    shared = lab.base / "shared"
    shared.mkdir()
    (shared / "file").write_text("from host")
    mounts = [
        *lab_mounts(),
        {"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
        {"destination": "/ro", "type": "bind", "source": str(shared), "options": ["rbind", "ro"]},
    ]
    script = (
        "hostname; cat /ro/file; echo; touch /ro/new 2>/dev/null || echo ro-refused; "
        "touch /data/x && echo tmpfs-ok; grep -c ' /data tmpfs ' /proc/mounts; "
        "test -e /proc/self/status && echo proc-ok; "
        "wc -c < /proc/keys; echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null || echo sys-ro; "
        "ls /sys/firmware | wc -l; ls -l /dev/null /dev/ptmx | tr -s ' ' | cut -d' ' -f1,10-"
    )
    state, out = run_to_end(lab, ["sh", "-c", script], mounts=mounts)
    assert state["exit_code"] == 0, out
    lines = out.splitlines()
    assert lines[0] == "crisp-test"
    assert lines[1] == "from host"
    assert lines[2:8] == ["ro-refused", "tmpfs-ok", "1", "proc-ok", "0", "sys-ro"]
    assert lines[8] == "0"  # the masked /sys/firmware is an empty tmpfs
    assert lines[9].startswith("crw-rw-rw-") and lines[10].startswith("lrwxrwxrwx")
    assert not (shared / "new").exists()


def lab_mounts() -> list[dict[str, object]]:
    from tests.runtime.containers import BASE_SPEC

    return list(BASE_SPEC["mounts"])


def test_capabilities_user_and_groups(lab: Lab) -> None:
    caps = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    changes = {
        "process.user": {"uid": 1000, "gid": 1000, "additionalGids": [2000], "umask": 0o027},
        "process.capabilities": {k: caps for k in ("bounding", "effective", "permitted")}
        | {"inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]},
    }
    created = lab.driver.call("create", "c", lab.bundle(["sleep", "600"], **changes))
    lab.driver.call("start", "c")
    pid = created["pid"]
    deadline = time.monotonic() + 5
    while "python" in Path(f"/proc/{pid}/exe").resolve().name and time.monotonic() < deadline:
        time.sleep(0.01)
    status = status_of(pid)
    assert status["Uid"].split() == ["1000"] * 4
    assert status["Gid"].split() == ["1000"] * 4
    assert status["Groups"].split() == ["2000"]
    kill_bit = 1 << 5
    assert int(status["CapEff"], 16) == kill_bit  # only the ambient one survives execve
    assert int(status["CapBnd"], 16) == kill_bit | 1 << 10
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Umask"].strip() == "0027"
    lab.driver.call("delete", "c", force=True)


def test_cgroup_placement_and_oom_kill(lab: Lab) -> None:
    memory = {"memory": {"limit": 32 << 20, "swap": 32 << 20}, "pids": {"limit": 50}}
    created = lab.driver.call(
        "create", "s", lab.bundle(["sleep", "600"], **{"linux.resources": memory})
    )
    cgroup_line = next(
        line
        for line in Path(f"/proc/{created['pid']}/cgroup").read_text().splitlines()
        if ":memory:" in line
    )
    assert cgroup_line.endswith(f"/{lab.cgroup_parent}/c1")
    memory_dir = Path(find_mounts().v1["memory"]) / lab.cgroup_parent / "c1"
    assert int((memory_dir / "memory.limit_in_bytes").read_text()) == 32 << 20
    assert created["pid"] in [int(p) for p in (memory_dir / "cgroup.procs").read_text().split()]
    lab.driver.call("update", "s", {"memory": {"limit": 48 << 20, "swap": 48 << 20}})
    assert int((memory_dir / "memory.limit_in_bytes").read_text()) == 48 << 20
    lab.driver.call("delete", "s")
    assert not memory_dir.exists()

    state, _ = run_to_end(
        lab,
        ["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
        **{"linux.resources": memory},
    )
    assert state["oom_killed"] is True
    assert state["signal"] == signal.SIGKILL


def test_monitor_outlives_the_daemon_and_a_new_runtime_sees_its_state(lab: Lab) -> None:
    loop = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done"
    log = lab.base / "r.log"
    lab.driver.call("create", "r", lab.bundle(["sh", "-c", loop]), log_path=log)
    lab.driver.call("start", "r")
    lab.driver.call("create", "q", lab.bundle(["sleep", "0.3"]))
    lab.driver.call("start", "q")
    lab.driver.kill()
    time.sleep(0.6)  # "q" exits while no daemon runs
    before = len(read_log(log))
    lab.driver = lab.new_driver()
    time.sleep(0.2)
    assert len(read_log(log)) > before, "the log stopped flowing without the daemon"
    states = {s["id"]: s for s in lab.driver.call("list")}
    assert states["r"]["status"] == "running"
    assert states["q"]["status"] == "stopped" and states["q"]["exit_code"] == 0
    lab.driver.call("kill", "r", int(signal.SIGKILL))
    assert lab.driver.call("wait", "r", 10)["exit_code"] == 137


def test_a_monitor_killed_after_a_running_state_is_noticed_at_the_next_state(lab: Lab) -> None:
    # The first answer is remembered (later polls skip the monitor): its death still shows.
    lab.driver.call("create", "m", lab.bundle(["sleep", "600"]))
    lab.driver.call("start", "m")
    first = lab.driver.call("state", "m")
    assert first["status"] == "running"
    assert lab.driver.call("state", "m") == first
    (monitor,) = lab.monitor_pids()
    os.kill(monitor, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while start_time(monitor) is not None:  # None once it has exited, zombie or reaped
        assert time.monotonic() < deadline, "the monitor survived SIGKILL"
        time.sleep(0.01)
    final = lab.driver.call("state", "m")
    assert final["status"] == "stopped" and final["exit_code"] == 255
    assert "monitor died" in final["error"]


def test_delete_refuses_running_and_force_removes_everything(lab: Lab) -> None:
    created = lab.driver.call("create", "d", lab.bundle(["sleep", "600"]))
    lab.driver.call("start", "d")
    with pytest.raises(DriverError, match="is running"):
        lab.driver.call("delete", "d")
    monitors = lab.monitor_pids()
    lab.driver.call("delete", "d", force=True)
    assert not (lab.state_root / "d").exists()
    assert not Path(f"/proc/{created['pid']}").exists()
    for pid in monitors:
        assert not Path(f"/proc/{pid}").exists() or "Z" in status_of(pid)["State"]
    assert not any((d / "c1").exists() for d in cgroup_dirs(lab.cgroup_parent))
    assert not mounts_under(lab.base)
    with pytest.raises(DriverError, match="does not exist"):
        lab.driver.call("state", "d")


def test_reopen_log_after_rotation(lab: Lab) -> None:
    log = lab.base / "r.log"
    loop = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.02; done"
    lab.driver.call("create", "r", lab.bundle(["sh", "-c", loop]), log_path=log)
    lab.driver.call("start", "r")
    time.sleep(0.2)
    log.rename(lab.base / "r.log.1")
    lab.driver.call("reopen_log", "r")
    time.sleep(0.2)
    lab.driver.call("delete", "r", force=True)
    old, new = read_log(lab.base / "r.log.1"), read_log(log)
    assert old and new
    # SIGKILL may cut the very last line short; every complete one is in order, none lost
    numbers = [int(r[3][5:]) for r in old + new if re.fullmatch(r"line \d+", r[3])]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_user_namespace_with_id_mappings(lab: Lab) -> None:
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "user")]
    # Mapping host root keeps the (root-only) pytest tmp dirs reachable from inside.
    mapping = [
        {"containerID": 0, "hostID": 0, "size": 1},
        {"containerID": 1, "hostID": 100001, "size": 65535},
    ]
    script = (
        "cat /proc/self/uid_map /proc/self/gid_map | tr -s ' '; echo $$; "
        "ls /proc/1/ns >/dev/null && echo proc-ok"
    )
    created = lab.driver.call(
        "create",
        "u",
        lab.bundle(
            ["sh", "-c", script],
            **{
                "linux.namespaces": namespaces,
                "linux.uidMappings": mapping,
                "linux.gidMappings": mapping,
            },
        ),
        log_path=lab.base / "u.log",
    )
    pid = created["pid"]
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    assert status_of(pid)["NSpid"].split()[-1] == "1"
    lab.driver.call("start", "u")
    assert lab.driver.call("wait", "u", 10)["exit_code"] == 0
    out = [r[3].strip() for r in read_log(lab.base / "u.log")]
    assert out == ["0 0 1", "1 100001 65535", "0 0 1", "1 100001 65535", "1", "proc-ok"]
    lab.driver.call("delete", "u")


def test_joined_user_namespace_and_idmapped_binds(lab: Lab, spawn: Spawn) -> None:
    holder = spawn("unshare", "--user", "sleep", "600")
    userns = f"/proc/{holder.pid}/ns/user"
    deadline = time.monotonic() + 5
    while os.readlink(userns) == os.readlink("/proc/self/ns/user"):
        assert time.monotonic() < deadline, "unshare did not make its user namespace"
        time.sleep(0.01)
    # Mapping host root keeps the (root-only) pytest tmp dirs reachable from inside.
    for name in ("uid_map", "gid_map"):
        Path(f"/proc/{holder.pid}/{name}").write_text("0 0 1\n1 100001 65535\n")
    mapping = [
        {"containerID": 0, "hostID": 0, "size": 1},
        {"containerID": 1, "hostID": 100001, "size": 65535},
    ]
    volume = lab.base / "volume"
    volume.mkdir()
    (volume / "file").touch()
    os.chown(volume / "file", 5, 5)
    bind = {"type": "bind", "source": str(volume)}
    mounts = [
        *lab_mounts(),
        {**bind, "destination": "/mapped", "options": ["rbind", "ridmap"]},
        {**bind, "destination": "/plain", "options": ["rbind"]},
    ]
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]
    script = "stat -c %u /mapped/file /plain/file; echo $$; touch /mapped/new; id -u"
    state, out = run_to_end(
        lab,
        ["sh", "-c", script],
        mounts=mounts,
        **{
            "linux.namespaces": [*namespaces, {"type": "user", "path": userns}],
            "linux.uidMappings": mapping,
            "linux.gidMappings": mapping,
        },
    )
    assert state["exit_code"] == 0, out
    # Through the idmapped mount the file's on-disk owner 5 is uid 5 of the namespace;
    # through the plain one it is host uid 5, which the namespace does not map.
    assert out.split() == ["5", "65534", "1", "0"]
    assert os.stat(volume / "new").st_uid == 0


def test_readonly_root_cgroup_mount_devices_and_propagation(lab: Lab) -> None:
    mounts = [
        *lab_mounts(),
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
    ]
    devices = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600}]
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")]
    script = (
        "touch /x 2>/dev/null || echo root-ro; touch /tmp/x && echo tmp-rw; "
        "ls /sys/fs/cgroup/memory/memory.limit_in_bytes; cat /proc/self/cgroup | grep memory; "
        "ls -l /dev/fuse | cut -c1-10; "
        "while read a b c d e f g; do [ $e = / ] && echo $g; done </proc/self/mountinfo | "
        "grep -o 'shared:[0-9]*'"
    )
    state, out = run_to_end(
        lab,
        ["sh", "-c", script],
        mounts=mounts,
        **{
            "root.readonly": True,
            "linux.devices": devices,
            "linux.namespaces": namespaces,
            "linux.rootfsPropagation": "rshared",
        },
    )
    assert len(out.splitlines()) == 6, (state, out)
    assert out.splitlines() == [
        "root-ro",
        "tmp-rw",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        out.splitlines()[3],
        "crw-------",
        out.splitlines()[5],
    ]
    assert out.splitlines()[3].endswith(":memory:/")  # the cgroup namespace hides the path
    assert out.splitlines()[5].startswith("shared:")
    assert state["exit_code"] == 0


def test_bind_source_missing_and_bad_seccomp_are_clear_errors(lab: Lab) -> None:
    missing = [{"destination": "/x", "type": "bind", "source": "/nonexistent", "options": ["bind"]}]
    with pytest.raises(DriverError, match="bind source /nonexistent does not exist"):
        lab.driver.call("create", "c", lab.bundle(["true"], mounts=missing))
    bogus = {"linux.seccomp": {"defaultAction": "SCMP_ACT_BOGUS"}}
    with pytest.raises(DriverError, match=r"linux\.seccomp: defaultAction"):
        lab.driver.call("create", "c", lab.bundle(["true"], **bogus))
    assert list(lab.state_root.iterdir()) == []


def test_seccomp_profile_is_enforced_in_the_container(lab: Lab) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    script = "mkdir /tmp/blocked 2>&1 || echo refused; echo still-running"
    state, out = run_to_end(
        lab,
        ["sh", "-c", script],
        **{"linux.seccomp": profile, "process.noNewPrivileges": True},
    )
    assert state["exit_code"] == 0, out
    assert "Operation not permitted" in out and out.rstrip().endswith("still-running")


def test_a_created_container_can_be_started_by_a_new_runtime(lab: Lab) -> None:
    lab.driver.call("create", "c", lab.bundle(["sh", "-c", "exit 5"]))
    lab.driver.kill()
    lab.driver = lab.new_driver()
    assert lab.driver.call("state", "c")["status"] == "created"
    lab.driver.call("start", "c")
    assert lab.driver.call("wait", "c", 10)["exit_code"] == 5
    lab.driver.call("delete", "c")


def test_without_pid_namespace_kill_all_and_delete_reach_every_process(lab: Lab) -> None:
    namespaces = [{"type": t} for t in ("network", "ipc", "uts", "mount")]
    script = ["sh", "-c", "sleep 600 & echo $!; wait"]
    for name, everything in (("all", True), ("one", False)):
        log = lab.base / f"{name}.log"
        lab.driver.call(
            "create", name, lab.bundle(script, **{"linux.namespaces": namespaces}), log_path=log
        )
        lab.driver.call("start", name)
        deadline = time.monotonic() + 10
        while not read_log(log) and time.monotonic() < deadline:
            time.sleep(0.01)
        child = int(read_log(log)[0][3])  # a host pid: no pid namespace
        lab.driver.call("kill", name, int(signal.SIGKILL), all=everything)
        final = lab.driver.call("wait", name, 10)
        assert final["signal"] == signal.SIGKILL, final
        if everything:
            deadline = time.monotonic() + 5
            while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not Path(f"/proc/{child}").exists()  # and the monitor reaped it
        else:
            assert "sleep" in Path(f"/proc/{child}/cmdline").read_text()
        lab.driver.call("delete", name)
        assert not Path(f"/proc/{child}").exists() or "Z" in status_of(child)["State"]


def test_delete_cleans_up_after_a_create_interrupted_by_a_crash(lab: Lab) -> None:
    created = lab.driver.call("create", "i", lab.bundle(["sleep", "600"]))
    record_path = lab.state_root / "i" / "container.json"
    record = json.loads(record_path.read_text())
    monitor = record["monitor_pid"]
    # what the first write of create leaves when the daemon dies before the second one
    for key in ("pid", "monitor_pid", "monitor_start"):
        record.pop(key)
    record_path.write_text(json.dumps(record))
    driver = lab.new_driver()  # the restarted daemon, which knows only what is on disk
    assert driver.call("list") == []
    driver.call("delete", "i")
    assert not (lab.state_root / "i").exists()
    assert not Path(f"/proc/{created['pid']}").exists()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{monitor}").exists() and "Z" not in status_of(monitor)["State"]:
        assert time.monotonic() < deadline, "monitor still running"
        time.sleep(0.01)
    assert not [p for d in cgroup_dirs(lab.cgroup_parent) for p in d.glob("c1")]


def test_recursive_read_only_bind_covers_submounts(lab: Lab) -> None:
    shared = lab.base / "rro"
    (shared / "sub").mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(shared / "sub")], check=True
    )
    try:
        mounts = [
            *lab_mounts(),
            {
                "destination": "/plain",
                "type": "bind",
                "source": str(shared),
                "options": ["rbind", "ro"],
            },
            {
                "destination": "/rro",
                "type": "bind",
                "source": str(shared),
                "options": ["rbind", "rro"],
            },
        ]
        script = (
            "touch /plain/sub/x 2>/dev/null && echo plain-sub-writable; "
            "touch /rro/sub/y 2>/dev/null || echo rro-sub-refused; "
            "touch /rro/z 2>/dev/null || echo rro-refused"
        )
        state, out = run_to_end(lab, ["sh", "-c", script], mounts=mounts)
        assert state["exit_code"] == 0, out
        # plain "ro" leaves submounts writable: that is what recursive read-only is for
        assert out.splitlines() == ["plain-sub-writable", "rro-sub-refused", "rro-refused"]
    finally:
        subprocess.run(["umount", str(shared / "sub")], check=True)
