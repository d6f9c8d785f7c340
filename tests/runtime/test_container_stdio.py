"""Attach, stdin and terminals of containers, driven by a script in a fresh interpreter
(an Attachment is a live socket, which the JSON driver cannot hand over)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.runtime.containers import Lab, needs_busybox, read_log
from tests.runtime.processes import needs_root, run_python

pytestmark = [needs_root, needs_busybox]

HEAD = """
import json, sys, time
from pathlib import Path
import runtime.entry_points
from runtime.zygote import Zygote
zygote = Zygote()
from runtime.container import Runtime
from runtime import control
rt = Runtime(Path(sys.argv[1] if len(sys.argv) > 1 else {state!r}), zygote)
"""


def run(lab: Lab, body: str) -> dict[str, object]:
    code = HEAD.format(state=str(lab.state_root)) + textwrap.dedent(body)
    result = run_python(code, timeout=60)
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return answer


def test_attach_streams_output_and_forwards_stdin(lab: Lab) -> None:
    bundle = lab.bundle(["sh", "-c", "echo started; cat; echo done >&2"])
    log = lab.base / "a.log"
    answer = run(
        lab,
        f"""
        rt.create("a", Path({str(bundle)!r}), log_path=Path({str(log)!r}), stdin=True)
        attached = rt.attach("a", stdin=True)
        rt.start("a")
        attached.write(b"ping\\n")
        seen = []
        while b"ping" not in b"".join(d for _, d in seen):
            seen.append(attached.read())
        attached.close_stdin()
        while (frame := attached.read()) is not None:
            seen.append(frame)
        final = rt.wait("a", 10)
        rt.delete("a")
        print(json.dumps({{"frames": [[k, d.decode()] for k, d in seen],
                          "exit": final.exit_code}}))
        """,
    )
    frames = answer["frames"]
    assert isinstance(frames, list)
    stdout = "".join(d for k, d in frames if k == 1)
    assert stdout == "started\nping\n"
    assert [d for k, d in frames if k == 2] == ["done\n"]
    assert answer["exit"] == 0
    assert [(r[1], r[3]) for r in read_log(log)] == [
        ("stdout", "started"),
        ("stdout", "ping"),
        ("stderr", "done"),
    ]


def test_stdin_once_closes_stdin_when_the_attacher_leaves(lab: Lab) -> None:
    bundle = lab.bundle(["sh", "-c", "cat; echo eof"])
    answer = run(
        lab,
        f"""
        rt.create("o", Path({str(bundle)!r}), stdin=True, stdin_once=True)
        attached = rt.attach("o", stdin=True)
        rt.start("o")
        attached.write(b"x\\n")
        attached.read()
        attached.close()
        final = rt.wait("o", 10)
        rt.delete("o")
        print(json.dumps({{"exit": final.exit_code}}))
        """,
    )
    assert answer == {"exit": 0}


def test_terminal_gives_a_tty_and_resize(lab: Lab) -> None:
    script = "test -t 0 && test -t 1 && echo tty; read x; stty size; ls -l /dev/console | wc -l"
    bundle = lab.bundle(["sh", "-c", script], **{"process.terminal": True})
    log = lab.base / "t.log"
    run(
        lab,
        f"""
        rt.create("t", Path({str(bundle)!r}), log_path=Path({str(log)!r}), stdin=True)
        attached = rt.attach("t", stdin=True)
        rt.start("t")
        rt.resize("t", 100, 40)
        attached.write(b"go\\r")
        final = rt.wait("t", 10)
        rt.delete("t")
        print(json.dumps({{"exit": final.exit_code}}))
        """,
    )
    contents = [r[3].rstrip("\r") for r in read_log(log)]
    assert all(r[1] == "stdout" for r in read_log(log))
    assert "tty" in contents
    assert "40 100" in contents
    assert "1" in contents  # /dev/console exists


def test_sysctl_rlimits_and_oom_score_adj(lab: Lab) -> None:
    changes = {
        "linux.sysctl": {"kernel.domainname": "crisp.test", "net.ipv4.ip_forward": "1"},
        "process.rlimits": [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}],
        "process.oomScoreAdj": 500,
    }
    script = (
        "cat /proc/sys/kernel/domainname /proc/sys/net/ipv4/ip_forward; ulimit -n; ulimit -Hn; "
        "cat /proc/self/oom_score_adj"
    )
    bundle = lab.bundle(["sh", "-c", script], **changes)
    log = lab.base / "s.log"
    run(
        lab,
        f"""
        rt.create("s", Path({str(bundle)!r}), log_path=Path({str(log)!r}))
        rt.start("s")
        final = rt.wait("s", 10)
        rt.delete("s")
        print(json.dumps({{"exit": final.exit_code}}))
        """,
    )
    assert [r[3] for r in read_log(log)] == ["crisp.test", "1", "123", "456", "500"]
    assert Path("/proc/sys/kernel/domainname").read_text().strip() != "crisp.test"


def test_exec_joins_namespaces_and_cgroup_with_and_without_tty(lab: Lab) -> None:
    bundle = lab.bundle(["sleep", "600"])
    answer = run(
        lab,
        f"""
        import dataclasses, os, pty
        from runtime.container import ContainerError, ExecTimeoutError
        state = rt.create("e", Path({str(bundle)!r}))
        rt.start("e")
        base = rt.process("e")
        script = ("hostname; echo $$; cat /proc/self/cgroup | grep memory; "
                  "grep CapEff /proc/self/status; exit 7")
        r, w = os.pipe()
        code = rt.exec("e", dataclasses.replace(base, args=("sh", "-c", script)), stdout=w)
        os.close(w)
        plain = os.read(r, 65536).decode()
        os.close(r)
        try:
            rt.exec("e", dataclasses.replace(base, args=("nope",)))
            missing = ""
        except ContainerError as exc:
            missing = str(exc)
        started = time.monotonic()
        try:
            rt.exec("e", dataclasses.replace(base, args=("sleep", "30")), timeout=0.3)
            timed_out = False
        except ExecTimeoutError:
            timed_out = True
        waited = time.monotonic() - started
        master, slave = pty.openpty()
        tty_args = ("sh", "-c", "test -t 0 && echo tty")
        tty_process = dataclasses.replace(base, args=tty_args, terminal=True)
        tty_code = rt.exec("e", tty_process, stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        tty_out = os.read(master, 4096).decode()
        os.close(master)
        rt.delete("e", force=True)
        print(json.dumps({{"code": code, "plain": plain, "missing": missing,
                          "timed_out": timed_out, "waited": waited,
                          "tty_code": tty_code, "tty_out": tty_out}}))
        """,
    )
    assert answer["code"] == 7
    plain = str(answer["plain"]).splitlines()
    assert plain[0] == "crisp-test"
    assert 1 < int(plain[1]) < 100  # a small pid: the container's pid namespace
    assert plain[2].endswith(f"/{lab.cgroup_parent}/c1")
    assert plain[3].split()[1] == "00000000000004e1"  # the container's capabilities
    assert "executable file not found in $PATH: nope" in str(answer["missing"])
    assert answer["timed_out"] is True
    assert float(str(answer["waited"])) < 5
    assert answer["tty_code"] == 0
    assert "tty" in str(answer["tty_out"])
