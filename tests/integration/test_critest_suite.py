"""crisp's own conformance suite (critest/) against a real crisp daemon: the whole of it.

Every case must pass; the only skips allowed are those critest itself explains.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.crisp_daemon import DaemonPaths, assert_nothing_left, start_daemon, write_config
from tests.integration.test_pods import PodNetwork, cgroup_parent, pod_network

__all__ = ["cgroup_parent", "pod_network"]  # fixtures used below

_SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$")


def test_critest_passes_against_crisp(pod_network: PodNetwork, cgroup_parent: str) -> None:
    # Short: every container's monitor socket lies below the run dir (sun_path: 107 bytes).
    base = Path(tempfile.mkdtemp(prefix="cs", dir="/tmp"))
    # Passable by all (mkdtemp makes it 0700): root of a pod's user namespace is an ordinary
    # user on the host and must reach its rootfs below it, or crisp turns user namespaces off.
    base.chmod(0o711)
    try:
        paths = DaemonPaths(base)
        write_config(paths)
        conf_dir = base / "net.d"
        conf_dir.mkdir()
        (conf_dir / "10-critest.conflist").write_text(json.dumps(pod_network.conflist()))
        daemon = start_daemon(paths, ["--cgroup-parent", cgroup_parent])
        try:
            result = subprocess.run(
                [
                    sys.executable, "-m", "critest",
                    "--runtime-endpoint", f"unix://{paths.socket}",
                    "--cgroup-parent", cgroup_parent,
                    "--parallel", "2",
                    "--junit", str(base / "critest.xml"),
                ],
                capture_output=True,
                text=True,
                timeout=1200,
            )  # fmt: skip
        finally:
            code = daemon.stop()
        failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
        # The failures first: the tail alone may cut them off.
        report = "\n".join(failures) + "\n" + result.stdout[-6000:] + result.stderr[-2000:]
        summary = _SUMMARY.match(result.stdout.strip().splitlines()[-1])
        assert summary, report
        passed, failed, skipped = (int(n) for n in summary.groups())
        print(f"\ncritest against crisp: {passed} passed, {failed} failed, {skipped} skipped")
        assert failed == 0 and result.returncode == 0, report
        assert passed >= 100, report
        assert code == 0, daemon.log()
        assert_nothing_left(daemon)
        assert pod_network.allocated_ips() == [], "pod IPs left allocated"
    finally:
        shutil.rmtree(base, ignore_errors=True)
