"""runtime.syscalls against the real kernel; namespace work runs in child interpreters."""

from __future__ import annotations

import errno
import os
import textwrap
from pathlib import Path

import pytest

from runtime import syscalls
from tests.runtime.processes import needs_root, run_python


def check(code: str) -> str:
    result = run_python(textwrap.dedent(code))
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_format_flags_names_bits_and_leftovers() -> None:
    names = {syscalls.MS_BIND: "MS_BIND", syscalls.MS_REC: "MS_REC"}
    assert syscalls.format_flags(syscalls.MS_BIND | syscalls.MS_REC, names) == "MS_BIND|MS_REC"
    assert syscalls.format_flags(syscalls.MS_BIND | 1, names) == "MS_BIND|0x1"
    assert syscalls.format_flags(0, names) == "0x0"


def test_capget_self_matches_proc_status() -> None:
    effective, permitted, inheritable = syscalls.capget()
    lines = Path("/proc/self/status").read_text().splitlines()
    status = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
    assert effective == int(status["CapEff"], 16)
    assert permitted == int(status["CapPrm"], 16)
    assert inheritable == int(status["CapInh"], 16)


def test_capget_of_missing_pid_raises_with_call_in_message() -> None:
    with pytest.raises(ProcessLookupError, match=r"capget\(pid=2147483647\)"):
        syscalls.capget(2**31 - 1)


def test_mount_error_names_call_and_arguments(tmp_path: Path) -> None:
    target = os.path.join(tmp_path, "missing")
    with pytest.raises(FileNotFoundError) as info:
        syscalls.mount("tmpfs", target, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, "size=1m")
    assert info.value.errno == errno.ENOENT
    message = str(info.value)
    assert "mount('tmpfs'" in message and "MS_NOSUID|MS_NODEV" in message and "size=1m" in message


def test_personality_query_is_linux() -> None:
    assert syscalls.personality(syscalls.PERSONALITY_QUERY) & 0xFF == syscalls.PER_LINUX


@needs_root
def test_unshare_uts_then_sethostname_and_setns_back() -> None:
    out = check(
        """
        import os, socket
        from runtime import syscalls
        original = socket.gethostname()
        host_ns = os.open("/proc/self/ns/uts", os.O_RDONLY)
        syscalls.unshare(syscalls.CLONE_NEWUTS)
        syscalls.sethostname("crisp-uts-test")
        syscalls.setdomainname("crisp.test")
        assert socket.gethostname() == "crisp-uts-test"
        assert open("/proc/sys/kernel/domainname").read().strip() == "crisp.test"
        syscalls.setns(host_ns, syscalls.CLONE_NEWUTS)
        assert socket.gethostname() == original, socket.gethostname()
        print("ok")
        """
    )
    assert out.strip() == "ok"
    assert os.uname().nodename != "crisp-uts-test"


@needs_root
def test_tmpfs_in_new_mount_namespace_is_invisible_outside(tmp_path: Path) -> None:
    target = os.path.join(tmp_path, "mnt")
    os.mkdir(target)
    out = check(
        f"""
        import os
        from runtime import syscalls
        syscalls.unshare(syscalls.CLONE_NEWNS)
        # Private first, or the mount would propagate back to the host namespace.
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        syscalls.mount("tmpfs", {target!r}, "tmpfs", syscalls.MS_NOSUID, "size=1m,mode=0700")
        open(os.path.join({target!r}, "marker"), "w").write("x")
        assert any(line.split()[4] == {target!r} for line in open("/proc/self/mountinfo"))
        syscalls.umount2({target!r}, syscalls.MNT_DETACH)
        assert not os.path.exists(os.path.join({target!r}, "marker"))
        syscalls.mount("tmpfs", {target!r}, "tmpfs", 0, "size=1m")
        print("ok")
        """
    )
    assert out.strip() == "ok"
    assert os.listdir(target) == []
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    assert all(line.split()[4] != target for line in mountinfo)


@needs_root
def test_pivot_root_dot_dot_into_tmpfs(tmp_path: Path) -> None:
    root = os.path.join(tmp_path, "root")
    os.mkdir(root)
    out = check(
        f"""
        import os
        from runtime import syscalls
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        syscalls.mount("tmpfs", {root!r}, "tmpfs", 0, "size=1m")
        open(os.path.join({root!r}, "inside-new-root"), "w").close()
        os.chdir({root!r})
        syscalls.pivot_root(".", ".")
        syscalls.umount2(".", syscalls.MNT_DETACH)
        os.chdir("/")
        print(sorted(os.listdir("/")))
        """
    )
    assert out.strip() == "['inside-new-root']"
    assert os.listdir(root) == []


@needs_root
def test_prctl_helpers_in_child() -> None:
    out = check(
        """
        import signal
        from runtime import syscalls
        assert not syscalls.get_no_new_privs()
        syscalls.set_no_new_privs()
        assert syscalls.get_no_new_privs()
        syscalls.set_pdeathsig(signal.SIGKILL)
        assert syscalls.get_pdeathsig() == signal.SIGKILL
        syscalls.set_child_subreaper()
        syscalls.set_keepcaps(True)
        assert syscalls.prctl(syscalls.PR_GET_KEEPCAPS) == 1
        syscalls.set_name("crisp-test")
        assert open("/proc/self/comm").read().strip() == "crisp-test"
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_unshare_invalid_flag_reports_einval() -> None:
    with pytest.raises(OSError) as info:
        syscalls.unshare(0x1)  # CSIGNAL bits are not a namespace
    assert info.value.errno == errno.EINVAL
    assert "unshare(0x1)" in str(info.value)


def test_fork_single_threaded_skips_the_interpreters_fork_hooks() -> None:
    out = check(
        """
        import os
        from runtime import syscalls
        hooks = []
        os.register_at_fork(before=lambda: hooks.append("before"),
                            after_in_child=lambda: hooks.append("child"))
        parent = os.getpid()
        pid = syscalls.fork_single_threaded()
        if pid == 0:
            # The child runs Python as usual, with none of the hooks having run.
            os._exit(0 if hooks == [] and os.getppid() == parent else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), hooks)
        """
    )
    assert out.strip() == "0 []"


def test_memory_merge_is_inherited_by_children() -> None:
    out = check(
        """
        import errno, os
        from runtime import syscalls
        try:
            syscalls.set_memory_merge()
        except OSError as exc:
            assert exc.errno == errno.EINVAL and "PR_SET_MEMORY_MERGE" in str(exc)
            print("kernel before 6.4")
            raise SystemExit(0)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if syscalls.get_memory_merge() else 3)
        _, status = os.waitpid(pid, 0)
        syscalls.set_memory_merge(False)
        print(os.waitstatus_to_exitcode(status), syscalls.get_memory_merge())
        """
    )
    assert out.strip() in ("0 False", "kernel before 6.4")


@needs_root
def test_idmapped_bind_shows_owners_through_a_user_namespace(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    (source / "file").touch()
    os.chown(source / "file", 7, 7)
    out = check(
        f"""
        import os, subprocess, time
        from runtime import idmap, syscalls
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        holder = subprocess.Popen(["unshare", "--user", "sleep", "60"])
        try:
            ns = f"/proc/{{holder.pid}}/ns/user"
            while os.readlink(ns) == os.readlink("/proc/self/ns/user"):
                time.sleep(0.01)
            for name in ("uid_map", "gid_map"):
                open(f"/proc/{{holder.pid}}/{{name}}", "w").write("0 100000 65536\\n")
            idmap.bind({str(source)!r}, {str(target)!r}, ns)
            info = os.stat({str(target / "file")!r})
            print(info.st_uid, info.st_gid)
            try:
                syscalls.move_mount(syscalls.open_tree({str(source)!r}), "/nonexistent/x")
            except FileNotFoundError as e:
                print("move_mount" in str(e))
        finally:
            holder.kill()
            holder.wait()
        """
    )
    assert out.split() == ["100007", "100007", "True"]
    assert os.listdir(target) == [], "the mount stayed in the child's mount namespace"
