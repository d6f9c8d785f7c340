"""Benchmark arithmetic, the endpoint forms the client accepts, the memory figures, and a
short benchmark run against a real crisp daemon."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from critest import bench, bench_memory, cli
from critest.bench import Timings, percentile, print_table
from critest.client import grpc_target
from critest.procmem import Memory, cgroup_processes, memory_of, parent_of, total, with_descendants
from tests.crisp_daemon import DaemonPaths, assert_nothing_left, start_daemon, write_config
from tests.integration.test_pods import PodNetwork, cgroup_parent, pod_network

__all__ = ["cgroup_parent", "pod_network"]  # fixtures used below


def test_nearest_rank_percentiles() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert [percentile(samples, p) for p in (50, 90, 99)] == [50.0, 90.0, 99.0]
    assert percentile([3.0], 99) == 3.0
    assert percentile([2.0, 1.0], 50) == 1.0


def test_timings_table_and_printout() -> None:
    timings = Timings()
    for _ in range(3):
        timings.call("noop", lambda request, timeout: request, "x")
    rows = timings.table()
    assert [r["operation"] for r in rows] == ["noop"] and rows[0]["n"] == 3
    out = io.StringIO()
    print_table(rows, out)
    header, line = out.getvalue().splitlines()
    assert header.split()[:2] == ["operation", "n"]
    assert line.split()[:2] == ["noop", "3"]


def test_endpoint_forms() -> None:
    assert grpc_target("unix:///run/x.sock") == "unix:/run/x.sock"
    assert grpc_target("/run/x.sock") == "unix:/run/x.sock"
    assert grpc_target("tcp://127.0.0.1:1234") == "127.0.0.1:1234"


# --- memory: /proc sampling, the arithmetic, and a real run against crisp ---


def test_memory_of_a_live_and_a_gone_process() -> None:
    own = memory_of(os.getpid())
    assert own is not None and 0 < own.pss_kib <= own.rss_kib and own.private_kib <= own.rss_kib
    child = subprocess.Popen(["true"])
    child.wait()
    assert memory_of(child.pid) is None  # reaped: its pid is gone
    assert total([child.pid]) == Memory()  # what is gone costs nothing
    assert total([os.getpid(), child.pid]).rss_kib > 0


def test_descendants_and_parents() -> None:
    shell = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        deadline = time.monotonic() + 10
        while len(with_descendants([shell.pid])) < 2:
            assert time.monotonic() < deadline, "sleep did not start"
            time.sleep(0.02)
        (sleeper,) = with_descendants([shell.pid]) - {shell.pid}
        assert parent_of(sleeper) == shell.pid
        assert shell.pid in with_descendants([os.getpid()])
    finally:
        shell.kill()
        shell.wait()
    assert parent_of(shell.pid) is None


def test_cgroup_processes_walk_the_tree(tmp_path: Path) -> None:
    (tmp_path / "cgroup.procs").write_text("10\n11\n")
    (tmp_path / "pod" / "container").mkdir(parents=True)
    (tmp_path / "pod" / "cgroup.procs").write_text("")
    (tmp_path / "pod" / "container" / "cgroup.procs").write_text("12\n")
    assert cgroup_processes(tmp_path) == {10, 11, 12}


def test_pid_lists_and_cgroup_paths() -> None:
    assert bench_memory.parse_pids(["1,2", "3", ""]) == (1, 2, 3)
    assert bench_memory.cgroup_path("memory/crisp") == Path("/sys/fs/cgroup/memory/crisp")
    assert bench_memory.cgroup_path("/sys/fs/cgroup/x") == Path("/sys/fs/cgroup/x")
    described = bench_memory.RuntimeProcesses((5, 6), (Path("/sys/fs/cgroup/x"),)).describe()
    assert described == "pid 5, 6 and descendants; cgroup /sys/fs/cgroup/x"
    assert not bench_memory.RuntimeProcesses()


def test_per_pod_overhead_adds_growth_and_helpers() -> None:
    report = bench_memory.MemoryReport(
        pods=4,
        runtime="pid 1 and descendants",
        idle=bench_memory.Sample(2, rss_kib=1000, pss_kib=600),
        loaded=bench_memory.Sample(2, rss_kib=1400, pss_kib=800),
        helpers=bench_memory.Sample(8, rss_kib=4000, pss_kib=1200),
        shims=4,
        sandboxes=4,
    )
    assert (report.per_pod_rss_kib, report.per_pod_pss_kib) == (1100, 350)
    assert report.as_json()["per_pod"] == {"rss_kib": 1100, "pss_kib": 350}
    assert report.as_json()["idle"] == {"processes": 2, "rss_kib": 1000, "pss_kib": 600}
    out = io.StringIO()
    bench_memory.print_report(report, out)
    lines = out.getvalue().splitlines()
    assert "runtime: pid 1 and descendants" in lines[1]
    assert lines[-2].split() == ["per", "pod", "overhead", "1100", "350"]


def test_benchmark_is_a_critest_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["benchmark", "--help"])
    assert exit_info.value.code == 0
    assert "python -m critest benchmark" in capsys.readouterr().out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_benchmark_against_crisp_reports_its_memory(
    pod_network: PodNetwork, cgroup_parent: str
) -> None:
    base = Path(tempfile.mkdtemp(prefix="bm", dir="/tmp"))  # short: monitor sockets below
    try:
        paths = DaemonPaths(base)
        write_config(paths)
        (base / "net.d").mkdir()
        (base / "net.d" / "10-bench.conflist").write_text(json.dumps(pod_network.conflist()))
        daemon = start_daemon(paths, ["--cgroup-parent", cgroup_parent])
        out = io.StringIO()
        try:
            code = bench.main(
                [
                    "--runtime-endpoint", f"unix://{paths.socket}",
                    "--cgroup-parent", cgroup_parent,
                    "-n", "1",
                    "--daemon-pid", str(daemon.process.pid),
                    "--memory-pods", "2",
                    "--json", str(base / "bench.json"),
                ],
                out,
            )  # fmt: skip
        finally:
            assert daemon.stop() == 0, daemon.log()
        assert code == 0, out.getvalue()
        document = json.loads((base / "bench.json").read_text())
        assert document["runtime"].startswith("crisp ")
        assert {row["operation"] for row in document["operations"]} >= {"pod run", "exec sync"}
        memory = document["memory"]
        # The daemon and its fork server; a monitor and a pause process for each pod.
        assert memory["idle"]["processes"] == 2 and memory["idle"]["pss_kib"] > 0
        assert (memory["shims"], memory["sandboxes"], memory["helpers"]["processes"]) == (2, 2, 4)
        assert memory["per_pod"]["pss_kib"] > 0
        assert "per pod overhead" in out.getvalue()
        assert_nothing_left(daemon)
    finally:
        shutil.rmtree(base, ignore_errors=True)
