"""`crisp check` tells the truth about this host: each expectation here is computed from the
kernel's own files, independently of crisp's cgroup and CNI code."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.integration.test_cli import run_crisp

V1_OPTIONAL = ("cpuset", "cpuacct", "blkio", "hugetlb", "devices", "freezer")


def _cgroup_mounts() -> tuple[set[str], str | None]:
    """(v1 controllers, cgroup2 mountpoint) from /proc/self/mountinfo."""
    controllers: set[str] = set()
    unified = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fstype, _source, options = after.split()[:3]
        if fstype == "cgroup":
            controllers |= {o for o in options.split(",") if o not in ("rw", "ro")}
        elif fstype == "cgroup2":
            unified = before.split()[4]
    return {c for c in controllers if not c.startswith("name=")}, unified


def _verdicts(stdout: str) -> dict[str, tuple[str, str]]:
    """check name → (verdict, detail)"""
    found = {}
    for line in stdout.splitlines():
        if line.startswith(" "):
            continue
        verdict, rest = line.split(None, 1)
        name, _, detail = rest.partition(": ")
        found[name] = (verdict, detail)
    return found


def _check(tmp_path: Path, *extra: str) -> tuple[int, dict[str, tuple[str, str]], str]:
    args = ["--config-dir", "/none", "--root", str(tmp_path / "root"), *extra]
    result = run_crisp("check", *args)
    return result.returncode, _verdicts(result.stdout), result.stdout


def test_check_reports_this_hosts_kernel_init_and_cgroups(tmp_path: Path) -> None:
    code, found, stdout = _check(tmp_path, "--cni-conf-dir", str(tmp_path / "net.d"))

    assert found["kernel"] == ("OK", f"Linux {os.uname().release}")
    assert found["namespaces"][0] == "OK"
    assert found["overlayfs"][0] == "OK"
    assert found["seccomp"][0] == "OK"

    init = Path("/proc/1/comm").read_text().strip()
    verdict, detail = found["init system"]
    assert verdict == "OK"
    if Path("/run/systemd/system").is_dir():
        assert detail.startswith(f"systemd (PID 1 is {init})")
    else:
        assert detail.startswith(f"no systemd (PID 1 is {init}): not needed with cgroup.driver")
        assert "runs crisp in the background with a pid file" in detail

    v1, unified = _cgroup_mounts()
    verdict, detail = found["cgroup mode"]
    assert verdict == "OK"
    if v1 and unified:
        assert detail.startswith(
            f"hybrid: v1 controllers {', '.join(sorted(v1))}; cgroup2 at {unified} with "
        )
        assert detail.endswith("; crisp drives cgroup v1")
    elif v1:
        assert detail == f"v1: controllers {', '.join(sorted(v1))}; crisp drives cgroup v1"
    else:
        assert detail.startswith(f"v2 unified at {unified}")

    if v1:
        verdict, detail = found["cgroup controllers"]
        missing = [c for c in V1_OPTIONAL if c not in v1]
        assert verdict == ("WARN" if missing else "OK"), detail
        for controller in missing:
            assert f"{controller} (" in detail
    # Only FAILs decide the exit code; a WARN is information.
    assert code == (1 if any(v == "FAIL" for v, _ in found.values()) else 0), stdout


def test_check_fails_the_systemd_driver_without_systemd(tmp_path: Path) -> None:
    code, found, stdout = _check(tmp_path, "--cgroup-driver", "systemd")
    if Path("/run/systemd/system").is_dir():
        assert found["init system"][0] == "OK"
        return
    assert found["init system"][0] == "FAIL"
    assert 'hint: set cgroup.driver = "cgroupfs"' in stdout
    assert code == 1


def test_check_judges_the_cni_network_and_its_plugins(tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    plugins = [d for d in ("/opt/cni/bin", "/usr/lib/cni") if Path(d, "bridge").exists()]
    assert plugins, "containernetworking-plugins is not installed"

    # An empty conf dir is fine when crisp will write its default network there...
    code, found, _ = _check(tmp_path, "--cni-conf-dir", str(conf_dir))
    assert found["CNI network"][0] == "OK"
    assert "writes its default network 'crisp'" in found["CNI network"][1]
    assert found["CNI plugins"] == (
        "OK",
        f"bridge, host-local, portmap, firewall, tuning, loopback (for crisp's default network) "
        f"in {plugins[0]}",
    )

    # ...and a failure when it will not.
    no_default = ("--cni-conf-dir", str(conf_dir), "--set", "cni.write_default_network=false")
    code, found, stdout = _check(tmp_path, *no_default)
    assert found["CNI network"][0] == "FAIL"
    assert f"no valid CNI network config in {conf_dir}" in found["CNI network"][1]
    assert "hint: apt-get install containernetworking-plugins" in stdout
    assert code == 1

    (conf_dir / "10-net.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "check-test",
                "plugins": [{"type": "bridge", "ipam": {"type": "host-local"}}],
            }
        )
    )
    code, found, _ = _check(tmp_path, *no_default)
    assert found["CNI network"] == ("OK", f"check-test from {conf_dir / '10-net.conflist'}")
    assert found["CNI plugins"][1].startswith(
        "bridge, host-local, loopback (for network check-test)"
    )

    # A plugin that is nowhere to be found is named.
    code, found, _ = _check(tmp_path, *no_default, "--cni-bin-dir", str(tmp_path))
    assert found["CNI plugins"][0] == "FAIL"
    assert found["CNI plugins"][1].startswith("bridge, host-local, loopback (needed by network")
    assert code == 1


def test_check_tells_whether_ksm_merges_the_monitors(tmp_path: Path) -> None:
    _code, found, stdout = _check(tmp_path)
    verdict, detail = found["KSM"]
    run = Path("/sys/kernel/mm/ksm/run")
    major, minor = (int(n) for n in os.uname().release.split("-")[0].split(".")[:2])
    if not run.exists():
        assert verdict == "WARN"
        assert detail.startswith("not in this kernel")
    elif (major, minor) < (6, 4):
        assert verdict == "WARN"
        assert "PR_SET_MEMORY_MERGE" in detail
    elif run.read_text().strip() == "1":
        assert verdict == "OK"
    else:
        # Off is worth a warning, never a failure: monitors only cost more memory.
        assert verdict == "WARN"
        assert detail.startswith(f"ksmd is off ({run} = {run.read_text().strip()})")
        assert "MiB more" in detail
        assert f"hint: echo 1 > {run}" in stdout
        assert "CRISP_ENABLE_KSM=0" in stdout
