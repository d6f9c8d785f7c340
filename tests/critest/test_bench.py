"""Benchmark arithmetic and the endpoint forms the client accepts."""

from __future__ import annotations

import io

from critest.bench import Timings, percentile, print_table
from critest.client import grpc_target


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
