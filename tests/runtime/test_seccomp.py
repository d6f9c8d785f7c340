"""Compiling OCI seccomp profiles, and loading them into real child interpreters.

Filters are irreversible, so every load happens in a fresh `python -c` child that applies
the profile and then tries syscalls through libc's syscall(2), reporting errnos as JSON.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from runtime import seccomp, seccomp_profiles, syscalls
from runtime.seccomp import SeccompError
from tests.runtime.processes import needs_root, run_python

# The capabilities containerd and CRI-O give a container by default.
DEFAULT_CAPS = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}  # fmt: skip

# `call(name, *args)` returns 0 or the errno of the raw syscall; core dumps are off so
# the SIGSYS tests leave nothing behind.
PRELUDE = """\
import ctypes, json, os, resource, socket, sys
from runtime import seccomp, syscalls
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
_libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    number = seccomp.syscall_number(name)
    assert number is not None, name
    ctypes.set_errno(0)
    result = _libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
    return 0 if result != -1 else ctypes.get_errno()
def sock(family, kind=socket.SOCK_STREAM):
    try:
        socket.socket(family, kind).close()
        return 0
    except OSError as exc:
        return exc.errno
"""


def allow_all_but(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(rules)}


Loadable = Mapping[str, Any] | bytes


def child(profile: Loadable, body: str, setup: str = "") -> subprocess.CompletedProcess[str]:
    """Run `setup`, load `profile` (an OCI object, or BPF bytes for `load_bpf`), then run
    `body` in a fresh interpreter."""
    code = PRELUDE + textwrap.dedent(setup)
    if isinstance(profile, bytes):
        code += f"seccomp.load_bpf(bytes.fromhex({profile.hex()!r}))\n"
    else:
        code += f"seccomp.apply(json.loads({json.dumps(profile)!r}))\n"
    return run_python(code + textwrap.dedent(body))


def results(profile: Loadable, body: str, setup: str = "") -> Any:
    """`body` must print one JSON document as its last line."""
    done = child(profile, body, setup)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


# --- compiling without loading -------------------------------------------------------------


def test_runtime_default_compiles_to_a_bpf_program() -> None:
    with seccomp.compile(seccomp_profiles.runtime_default(DEFAULT_CAPS)) as compiled:
        program = compiled.bpf()
    assert len(program) % 8 == 0 and len(program) // 8 > 100
    compiled.release()  # idempotent
    with pytest.raises(ValueError, match="released"):
        compiled.bpf()


def test_unknown_syscall_names_are_skipped_and_reported() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "crisp_no_such_call"], "action": "SCMP_ACT_ALLOW"}],
    }
    assert seccomp.validate(profile) == ("crisp_no_such_call",)


def test_rules_with_the_default_action_are_dropped() -> None:
    empty = {"defaultAction": "SCMP_ACT_ALLOW"}
    same = allow_all_but({"names": ["read"], "action": "SCMP_ACT_ALLOW"})
    with seccomp.compile(empty) as a, seccomp.compile(same) as b:
        assert a.bpf() == b.bpf()


def test_other_architecture_syscalls_and_flags_are_accepted() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X86", "SCMP_ARCH_ARM"],
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["chown32", "s390_runtime_instr"], "action": "SCMP_ACT_ALLOW"}],
    }
    assert seccomp.validate(profile) == ()


def test_flags_that_reach_the_kernel_are_reported() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
    }
    with seccomp.compile(profile) as compiled:
        assert compiled.flags == ("SECCOMP_FILTER_FLAG_SPEC_ALLOW",)


def test_load_bpf_refuses_what_is_not_a_program() -> None:
    with pytest.raises(ValueError, match="not a BPF program: 7 bytes"):
        seccomp.load_bpf(b"\0" * 7)
    with pytest.raises(ValueError, match="4097 instructions, over the kernel's 4096"):
        seccomp.load_bpf(b"\0" * 8 * 4097)


def test_syscall_number_resolves_for_the_native_architecture() -> None:
    assert isinstance(seccomp.syscall_number("reboot"), int)
    assert seccomp.syscall_number("crisp_no_such_call") is None
    assert seccomp.library_version() >= (2, 5, 0)


def _bad(field: str, value: Any, where: str = "syscalls[0]") -> dict[str, Any]:
    rule: dict[str, Any] = {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}
    arg: dict[str, Any] = {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}
    profile: dict[str, Any] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}
    if where == "syscalls[0]":
        rule[field] = value
    elif where == "args[0]":
        arg[field] = value
        rule["args"] = [arg]
    else:
        profile[field] = value
    return profile


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        (_bad("defaultAction", "SCMP_ACT_NOPE", "top"), r"^defaultAction: unknown action"),
        (_bad("defaultAction", None, "top"), r"^defaultAction: unknown action None"),
        (_bad("defaultErrnoRet", 1, "top"), r"^defaultErrnoRet: only valid with"),
        (_bad("action", "SCMP_ACT_NOTIFY"), r"^syscalls\[0\]\.action: SCMP_ACT_NOTIFY .*not"),
        (_bad("action", "allow"), r"^syscalls\[0\]\.action: unknown action 'allow'"),
        (_bad("errnoRet", 70000), r"^syscalls\[0\]\.errnoRet: expected an integer"),
        (_bad("names", []), r"^syscalls\[0\]\.names: expected a non-empty list"),
        (_bad("names", "getppid"), r"^syscalls\[0\]\.names: expected a list"),
        (_bad("op", "SCMP_CMP_LIKE", "args[0]"), r"^syscalls\[0\]\.args\[0\]\.op: unknown"),
        (_bad("index", 6, "args[0]"), r"^syscalls\[0\]\.args\[0\]\.index: expected"),
        (_bad("value", -1, "args[0]"), r"^syscalls\[0\]\.args\[0\]\.value: expected"),
        (_bad("valueTwo", True, "args[0]"), r"^syscalls\[0\]\.args\[0\]\.valueTwo: expected"),
        (_bad("architectures", ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"], "top"),
         r"^architectures\[1\]: unknown architecture 'SCMP_ARCH_Z80'"),
        (_bad("architectures", ["x86_64"], "top"), r"^architectures\[0\]: unknown"),
        (_bad("flags", ["SECCOMP_FILTER_FLAG_FAST"], "top"), r"^flags\[0\]: unknown flag"),
        (_bad("syscalls", {"names": []}, "top"), r"^syscalls: expected a list"),
        (_bad("syscalls", ["read"], "top"), r"^syscalls\[0\]: expected an object"),
    ],
)  # fmt: skip
def test_invalid_profiles_name_the_field(profile: dict[str, Any], message: str) -> None:
    with pytest.raises(SeccompError, match=message):
        seccomp.validate(profile)


def test_a_profile_must_be_an_object() -> None:
    with pytest.raises(SeccompError, match="expected an object"):
        seccomp.compile([])  # type: ignore[arg-type]


# --- RuntimeDefault as data ----------------------------------------------------------------


def _names(profile: Mapping[str, Any]) -> set[str]:
    return {name for rule in profile["syscalls"] for name in rule["names"]}


def test_runtime_default_adds_capability_groups() -> None:
    plain = seccomp_profiles.runtime_default(DEFAULT_CAPS, machine="x86_64")
    admin = seccomp_profiles.runtime_default(DEFAULT_CAPS | {"CAP_SYS_ADMIN"}, machine="x86_64")
    assert plain["defaultAction"] == "SCMP_ACT_ERRNO" and plain["defaultErrnoRet"] == errno.EPERM
    assert plain["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert {"chroot", "arch_prctl"} <= _names(plain)
    assert not {"mount", "reboot", "kexec_load", "add_key", "io_uring_setup"} & _names(plain)
    assert {"mount", "unshare", "setns"} <= _names(admin)
    clone3 = [rule for rule in plain["syscalls"] if rule["names"] == ["clone3"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}]
    assert not [rule for rule in admin["syscalls"] if rule.get("action") == "SCMP_ACT_ERRNO"]
    assert plain is not seccomp_profiles.runtime_default(DEFAULT_CAPS, machine="x86_64")


def test_runtime_default_follows_the_machine() -> None:
    s390 = seccomp_profiles.runtime_default(set(), machine="s390x")
    clone = next(rule for rule in s390["syscalls"] if rule["names"] == ["clone"])
    assert clone["args"][0]["index"] == 1
    assert s390["architectures"] == ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]
    assert "s390_runtime_instr" in _names(s390) and "arch_prctl" not in _names(s390)
    assert "architectures" not in seccomp_profiles.runtime_default(set(), machine="ppc64le")


# --- loading into a child ------------------------------------------------------------------


@needs_root
def test_blocked_sethostname_gets_eperm_while_the_rest_works() -> None:
    profile = allow_all_but({"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"})
    setup = """\
        syscalls.unshare(syscalls.CLONE_NEWUTS)
        syscalls.sethostname("crisp-before")
    """
    body = """\
        try:
            syscalls.sethostname("crisp-after")
            outcome = "set"
        except PermissionError:
            outcome = "EPERM"
        print(json.dumps([outcome, socket.gethostname(), syscalls.get_no_new_privs(),
                          os.getpid() > 0, len(os.listdir("/")) > 0]))
    """
    assert results(profile, body, setup) == ["EPERM", "crisp-before", False, True, True]


@needs_root
def test_errno_actions_return_the_configured_errno() -> None:
    profile = allow_all_but(
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOMSG},
        {"names": ["getpgrp"], "action": "SCMP_ACT_ERRNO"},
    )
    body = 'print(json.dumps([call("getppid"), call("getpgrp"), call("getpid")]))'
    assert results(profile, body) == [errno.ENOMSG, errno.EPERM, 0]


@needs_root
def test_default_errno_ret_applies_to_everything_not_allowed() -> None:
    allowed = sorted(set(seccomp_profiles.ALLOWED) - {"getppid"})
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EACCES,
        "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}],
    }
    body = 'print(json.dumps([call("getppid"), call("getpid")]))'
    assert results(profile, body) == [errno.EACCES, 0]


@needs_root
def test_argument_conditions() -> None:
    profile = allow_all_but(
        # personality(2) only with 0 (PER_LINUX).
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}],
        },
        # Two indices: ANDed, so only an IPv4 datagram socket is refused.
        {
            "names": ["socket"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno.EAFNOSUPPORT,
            "args": [
                {"index": 0, "value": socket.AF_INET, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": socket.SOCK_DGRAM, "op": "SCMP_CMP_EQ"},
            ],
        },
        # One index twice: ORed (runc's rule), so both pipe2 flag values are refused.
        {
            "names": ["pipe2"],
            "action": "SCMP_ACT_ERRNO",
            "args": [
                {"index": 1, "value": os.O_NONBLOCK, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": os.O_CLOEXEC, "op": "SCMP_CMP_EQ"},
            ],
        },
        # MASKED_EQ: value is the mask, valueTwo what the masked argument must equal.
        {
            "names": ["unshare"],
            "action": "SCMP_ACT_ERRNO",
            "args": [
                {
                    "index": 0,
                    "value": syscalls.CLONE_NEWUTS,
                    "valueTwo": syscalls.CLONE_NEWUTS,
                    "op": "SCMP_CMP_MASKED_EQ",
                }
            ],
        },
    )
    body = f"""\
        fds = (ctypes.c_int * 2)()
        print(json.dumps({{
            "personality(0)": call("personality", 0),
            "personality(PER_LINUX32)": call("personality", 8),
            "personality(query)": call("personality", 0xFFFFFFFF),
            "inet dgram": call("socket", socket.AF_INET, socket.SOCK_DGRAM, 0),
            "inet stream": call("socket", socket.AF_INET, socket.SOCK_STREAM, 0),
            "unix dgram": call("socket", socket.AF_UNIX, socket.SOCK_DGRAM, 0),
            "pipe2 nonblock": call("pipe2", ctypes.addressof(fds), os.O_NONBLOCK),
            "pipe2 cloexec": call("pipe2", ctypes.addressof(fds), os.O_CLOEXEC),
            "pipe2 0": call("pipe2", ctypes.addressof(fds), 0),
            "unshare uts+ipc": call("unshare", {syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC}),
            "unshare ipc": call("unshare", {syscalls.CLONE_NEWIPC}),
        }}))
    """
    assert results(profile, body) == {
        "personality(0)": 0,
        "personality(PER_LINUX32)": errno.EPERM,
        "personality(query)": errno.EPERM,
        "inet dgram": errno.EAFNOSUPPORT,
        "inet stream": 0,
        "unix dgram": 0,
        "pipe2 nonblock": errno.EPERM,
        "pipe2 cloexec": errno.EPERM,
        "pipe2 0": 0,
        "unshare uts+ipc": errno.EPERM,
        "unshare ipc": 0,
    }


@needs_root
@pytest.mark.parametrize(
    "action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"]
)
def test_kill_and_trap_end_the_child_with_sigsys(action: str) -> None:
    profile = allow_all_but({"names": ["getppid"], "action": action})
    done = child(profile, 'print("armed", flush=True)\ncall("getppid")\nprint("survived")')
    assert done.returncode == -signal.SIGSYS, done.stderr
    assert done.stdout.split() == ["armed"]


@needs_root
@pytest.mark.parametrize(
    ("action", "outcome"),
    # Without a tracer attached the kernel fails a TRACE'd syscall with ENOSYS.
    [("SCMP_ACT_LOG", 0), ("SCMP_ACT_TRACE", errno.ENOSYS)],
)
def test_log_and_trace_let_the_process_live(action: str, outcome: int) -> None:
    profile = allow_all_but({"names": ["getppid"], "action": action})
    assert results(profile, 'print(json.dumps(call("getppid")))') == outcome


@needs_root
def test_unknown_names_do_not_stop_the_rest_of_the_rule() -> None:
    profile = allow_all_but(
        {"names": ["crisp_no_such_call", "getppid"], "action": "SCMP_ACT_ERRNO"}
    )
    assert results(profile, 'print(json.dumps(call("getppid")))') == errno.EPERM


@needs_root
def test_loading_needs_no_new_privs_without_cap_sys_admin() -> None:
    profile = allow_all_but({"names": ["getppid"], "action": "SCMP_ACT_ERRNO"})
    code = PRELUDE + textwrap.dedent(
        f"""\
        effective, permitted, inheritable = syscalls.capget()
        syscalls.capset(effective & ~(1 << 21), permitted, inheritable)
        profile = json.loads({json.dumps(profile)!r})
        try:
            seccomp.apply(profile)
            first = "loaded"
        except PermissionError as exc:
            first = str(exc)
        with seccomp.compile(profile) as compiled:
            program = compiled.bpf()
        try:
            seccomp.load_bpf(program)
            second = "loaded"
        except PermissionError as exc:
            second = str(exc)
        syscalls.set_no_new_privs()
        seccomp.apply(profile)
        print(json.dumps([first, second, call("getppid")]))
        """
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    first, second, getppid = json.loads(done.stdout)
    assert "no_new_privs or CAP_SYS_ADMIN" in first
    assert "no_new_privs or CAP_SYS_ADMIN" in second
    assert getppid == errno.EPERM


# --- RuntimeDefault in a child -------------------------------------------------------------

WORKLOAD = """\
    import subprocess, threading
    report = {}
    report["spawn /bin/true"] = subprocess.run(["/bin/true"]).returncode
    report["sh pipeline"] = subprocess.run(
        ["/bin/sh", "-c", "echo hi | cat > /dev/null && ls / > /dev/null"]).returncode
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    report["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    with open("/etc/passwd") as f:
        report["read"] = len(f.read()) > 0
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    client.sendall(b"ping")
    report["tcp"] = conn.recv(4).decode()
    left, right = socket.socketpair()
    left.send(b"x")
    report["socketpair"] = right.recv(1).decode()
    report["inet6"] = sock(socket.AF_INET6)
    report["netlink"] = sock(socket.AF_NETLINK, socket.SOCK_RAW)
    report["vsock"] = sock(40)
    report["alg"] = sock(38, socket.SOCK_SEQPACKET)
    report["unshare(NEWUSER)"] = call("unshare", syscalls.CLONE_NEWUSER)
    report["mount"] = call("mount", 0, 0, 0, 0, 0)
    report["reboot"] = call("reboot", 0, 0, 0, 0)
    report["kexec_load"] = call("kexec_load", 0, 0, 0, 0xDEAD0000)
    report["add_key"] = call("add_key", 0, 0, 0, 0, 0)
    report["clone3"] = call("clone3", 0, 0)
    # NEWNS with CLONE_FS is invalid: a kernel that got this far would fail, not fork.
    report["clone(NEWNS)"] = call("clone", syscalls.CLONE_NEWNS | syscalls.CLONE_FS, 0, 0, 0, 0)
    report["io_uring_setup"] = call("io_uring_setup", 1, 0)
    report["personality(0x0400000)"] = call("personality", 0x0400000)
    report["personality(query)"] = call("personality", 0xFFFFFFFF)
    print(json.dumps(report))
"""


def _precompiled(profile: Mapping[str, Any]) -> bytes:
    with seccomp.compile(profile) as compiled:
        return compiled.bpf()


@needs_root
@pytest.mark.parametrize("loader", ["apply", "load_bpf"])
def test_runtime_default_runs_a_workload_and_blocks_the_dangerous_calls(loader: str) -> None:
    profile = seccomp_profiles.runtime_default(DEFAULT_CAPS)
    report = results(profile if loader == "apply" else _precompiled(profile), WORKLOAD)
    assert report == {
        "spawn /bin/true": 0,
        "sh pipeline": 0,
        "fork": 7,
        "read": True,
        "tcp": "ping",
        "socketpair": "x",
        "inet6": 0,
        "netlink": 0,
        "vsock": errno.EPERM,
        "alg": errno.EPERM,
        "unshare(NEWUSER)": errno.EPERM,
        "mount": errno.EPERM,
        "reboot": errno.EPERM,
        "kexec_load": errno.EPERM,
        "add_key": errno.EPERM,
        "clone3": errno.ENOSYS,
        "clone(NEWNS)": errno.EPERM,
        "io_uring_setup": errno.EPERM,
        "personality(0x0400000)": errno.EPERM,
        "personality(query)": 0,
    }


@needs_root
def test_runtime_default_with_cap_sys_admin_allows_mount(tmp_path: Path) -> None:
    profile = seccomp_profiles.runtime_default(DEFAULT_CAPS | {"CAP_SYS_ADMIN"})
    body = f"""\
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        syscalls.mount("tmpfs", {str(tmp_path)!r}, "tmpfs")
        with open("/proc/self/mountinfo") as f:
            mounted = any(line.split()[4] == {str(tmp_path)!r} for line in f)
        print(json.dumps([mounted, call("clone3", 0, 0), call("reboot", 0, 0, 0, 0)]))
    """
    # clone3 now reaches the kernel, which rejects the empty arguments with EINVAL.
    assert results(profile, body) == [True, errno.EINVAL, errno.EPERM]
    with open("/proc/self/mountinfo") as f:
        assert not any(line.split()[4] == str(tmp_path) for line in f)
