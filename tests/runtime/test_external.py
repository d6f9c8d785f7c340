"""runc as an external runtime under crisp's monitor (runtime.external), driven by scripts in
a fresh interpreter (the fork server must start before any thread exists)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from runtime.cgroups.resources import Cpu, HugepageLimit, LinuxResources, Memory, Pids
from runtime.external import ExternalRuntime, _oci_resources
from runtime.oci_command import last_error
from tests.runtime.containers import Lab, needs_busybox, read_log
from tests.runtime.processes import needs_root, run_python

RUNC = Path("/usr/sbin/runc")
needs_runc = pytest.mark.skipif(not RUNC.is_file(), reason="needs runc")

HEAD = """
import json, sys, time
from pathlib import Path
import runtime.entry_points
from runtime.zygote import Zygote
zygote = Zygote()
from runtime.container import ContainerError
from runtime.external import ExternalRuntime
rt = ExternalRuntime("runc", Path({binary!r}), Path({root!r}), Path({state!r}), zygote)
def names(path): return sorted(p.name for p in Path(path).iterdir())
"""


def run(lab: Lab, body: str) -> dict[str, object]:
    head = HEAD.format(binary=str(RUNC), root=str(lab.base / "runc"), state=str(lab.state_root))
    result = run_python(head + textwrap.dedent(body), timeout=60)
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return answer


@needs_root
@needs_busybox
@needs_runc
def test_terminal_container_gets_its_pty_through_the_console_socket(lab: Lab) -> None:
    script = "test -t 0 && test -t 1 && echo tty; read x; stty size"
    bundle = lab.bundle(["sh", "-c", script], **{"process.terminal": True})
    log = lab.base / "t.log"
    answer = run(
        lab,
        f"""
        rt.create("t", Path({str(bundle)!r}), log_path=Path({str(log)!r}), stdin=True)
        attached = rt.attach("t", stdin=True)
        rt.start("t")
        rt.resize("t", 100, 40)
        attached.write(b"go\\r")
        final = rt.wait("t", 10)
        rt.delete("t")
        print(json.dumps({{"exit": final.exit_code, "left": names({str(lab.base / "runc")!r})}}))
        """,
    )
    assert answer == {"exit": 0, "left": []}
    contents = [r[3].rstrip("\r") for r in read_log(log)]
    assert "tty" in contents and "40 100" in contents


@needs_root
@needs_busybox
@needs_runc
def test_update_exec_and_a_failed_create(lab: Lab) -> None:
    bundle = lab.bundle(["sleep", "100"])
    broken = lab.bundle(["/no/such/program"])
    memory = Path("/sys/fs/cgroup/memory") / lab.cgroup_parent / "c1" / "memory.limit_in_bytes"
    answer = run(
        lab,
        f"""
        from runtime.cgroups.resources import LinuxResources, Memory
        from runtime.spec import Process
        import dataclasses
        rt.create("u", Path({str(bundle)!r}))
        rt.start("u")
        rt.update("u", LinuxResources(memory=Memory(limit=64 << 20)))
        limit = int(Path({str(memory)!r}).read_text())
        import fcntl, os, struct, termios
        outside, inside = os.openpty()
        fcntl.ioctl(inside, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 90, 0, 0))
        script = "test -t 0 && echo tty; stty size; exit 5"
        process = dataclasses.replace(rt.process("u"), args=("sh", "-c", script), terminal=True)
        tty_exit = rt.exec("u", process, stdin=inside, stdout=inside, stderr=inside, timeout=10)
        os.set_blocking(outside, False)
        tty_output = os.read(outside, 4096).decode()
        process = dataclasses.replace(rt.process("u"), args=("/no/such/program",))
        try:
            rt.exec("u", process)
            exec_error = ""
        except ContainerError as e:
            exec_error = str(e)
        rt.delete("u", force=True)
        try:
            rt.create("b", Path({str(broken)!r}))
            create_error = ""
        except ContainerError as e:
            create_error = str(e)
        print(json.dumps({{"limit": limit, "exec": exec_error, "create": create_error,
                          "tty": [tty_exit, tty_output],
                          "state": names({str(lab.state_root)!r}),
                          "runc": names({str(lab.base / "runc")!r})}}))
        """,
    )
    assert answer["limit"] == 64 << 20
    assert answer["tty"] == [5, "tty\r\n30 90\r\n"]  # the size was there from the start
    assert "runc exec failed" in str(answer["exec"]) and "/no/such/program" in str(answer["exec"])
    assert "runc create failed" in str(answer["create"])
    assert "/no/such/program" in str(answer["create"])
    assert answer["state"] == [] and answer["runc"] == []


def test_the_last_error_of_a_runtime_log(tmp_path: Path) -> None:
    log = tmp_path / "runtime.log"
    log.write_text(
        '{"level":"warning","msg":"odd","time":"t"}\n'
        '{"level":"error","msg":"exec: no such file","time":"t"}\n'
        '{"level":"info","msg":"bye","time":"t"}\n'
    )
    assert last_error(log) == "exec: no such file"
    log.write_text("crun: plain text failure\n")
    assert last_error(log) == "crun: plain text failure"
    assert last_error(tmp_path / "missing.log") == "no error message"


def test_resources_for_the_binary_keep_only_what_is_set() -> None:
    resources = LinuxResources(
        memory=Memory(limit=1 << 30, swap=-1),
        cpu=Cpu(shares=512, quota=50000, period=100000, cpus="0"),
        pids=Pids(100),
        hugepage_limits=(HugepageLimit("2MB", 0),),
        unified={"memory.high": "max"},
    )
    assert _oci_resources(resources) == {
        "memory": {"limit": 1 << 30, "swap": -1},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
        "pids": {"limit": 100},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "unified": {"memory.high": "max"},
    }
    assert _oci_resources(LinuxResources()) == {}


def test_a_missing_or_unusable_binary_is_a_problem(tmp_path: Path) -> None:
    def problem(binary: Path) -> str | None:
        return ExternalRuntime("x", binary, tmp_path / "root", tmp_path / "state", None).problem()

    assert (
        problem(tmp_path / "absent")
        == f"runtime handler 'x': binary {tmp_path}/absent does not exist"
    )
    plain = tmp_path / "plain"
    plain.write_text("")
    assert problem(plain) == f"runtime handler 'x': binary {plain} is not executable"
    if RUNC.is_file():
        assert problem(RUNC) is None
