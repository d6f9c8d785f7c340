"""The critest framework without a runtime: discovery, selection, the per-case run with
cleanup and time limit, the summary line, JUnit XML and exit codes."""

from __future__ import annotations

import io
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from critest import cli
from critest.case import SERIAL, Case, CaseFailure, Registry, discover, expect_eq, skip
from critest.fixture import Fixture
from critest.junit import junit_xml
from critest.runner import (
    Result,
    exit_code,
    format_result,
    make_env_fixture,
    run_all,
    run_case,
    select,
    summary,
)
from tests.critest.fakes import fake_env

UPSTREAM_AREAS = {
    "runtime-info",
    "pod",
    "container",
    "logs",
    "mounts",
    "resources",
    "multi-container",
    "idempotence",
    "image",
    "networking",
    "security-context",
    "streaming",
    "events-stats",
}


def _case(name: str, func: object, area: str = "unit", **kw: object) -> Case:
    return Case(name, area, "", func, **kw)  # type: ignore[arg-type]


@pytest.fixture
def factory(tmp_path: Path) -> object:
    return make_env_fixture(fake_env(tmp_path))


def test_discovery_finds_every_area_with_unique_titles() -> None:
    cases = discover()
    assert {c.area for c in cases} == UPSTREAM_AREAS
    assert len({c.title for c in cases}) == len(cases)
    assert len(cases) >= 100


def test_every_upstream_area_case_names_its_spec() -> None:
    crisp_only = {"events-stats"}
    missing = [c.title for c in discover() if not c.spec and c.area not in crisp_only]
    # Log format, resource and terminal resize checks are the only other cases upstream lacks.
    assert all(
        t.startswith(("[logs]", "[resources]")) or "follows terminal resizes" in t for t in missing
    )


def test_registry_refuses_duplicates() -> None:
    registry = Registry()
    registry.register("same", area="a")(lambda f: None)
    with pytest.raises(ValueError, match="duplicate"):
        registry.register("same", area="a")(lambda f: None)


def test_focus_and_skip_match_title_tags_and_spec() -> None:
    cases = [
        Case("pull by tag", "image", "public image with tag", lambda f: None),
        Case(
            "run a pod",
            "pod",
            "basic operations on PodSandbox",
            lambda f: None,
            frozenset({SERIAL}),
        ),
        Case("run as user", "security-context", "RunAsUser", lambda f: None),
    ]
    assert [c.name for c in select(cases, focus=r"\[image\]")] == ["pull by tag"]
    assert [c.name for c in select(cases, focus=r"\[serial\]")] == ["run a pod"]
    assert [c.name for c in select(cases, focus="RunAsUser")] == ["run as user"]
    assert [c.name for c in select(cases, skip="pod|image")] == ["run as user"]
    assert len(select(cases)) == 3


def test_a_passing_case(factory: object) -> None:
    result = run_case(_case("ok", lambda f: None), factory)  # type: ignore[arg-type]
    assert result.outcome == "passed"
    assert format_result(result).startswith("PASS [unit] ok (")


def test_a_skip_prints_its_reason(factory: object) -> None:
    def body(f: Fixture) -> None:
        skip("host has no cgroup v2")

    result = run_case(_case("needs v2", body), factory)  # type: ignore[arg-type]
    assert result.outcome == "skipped"
    assert format_result(result).endswith(": host has no cgroup v2")


def test_cleanup_runs_in_reverse_even_when_the_case_fails(factory: object) -> None:
    order: list[str] = []

    def body(f: Fixture) -> None:
        f.defer("first", lambda: order.append("first"))
        f.defer("second", lambda: order.append("second"))
        expect_eq(1, 2, "one")

    result = run_case(_case("fails", body), factory)  # type: ignore[arg-type]
    assert result.outcome == "failed"
    assert result.message == "one: got 1, want 2"
    assert order == ["second", "first"]


def test_host_dirs_are_removed_after_a_crash(factory: object) -> None:
    made: list[Path] = []

    def body(f: Fixture) -> None:
        made.append(f.host_dir())
        (made[0] / "file").write_text("x")
        raise RuntimeError("boom")

    result = run_case(_case("crash", body), factory)  # type: ignore[arg-type]
    assert (result.outcome, result.message) == ("failed", "RuntimeError: boom")
    assert not made[0].exists()


def test_a_failing_cleanup_fails_a_passing_case(factory: object) -> None:
    def body(f: Fixture) -> None:
        f.defer("remove thing", lambda: (_ for _ in ()).throw(OSError("busy")))

    result = run_case(_case("leaks", body), factory)  # type: ignore[arg-type]
    assert result.outcome == "failed"
    assert result.message == "cleanup failed: remove thing: OSError: busy"


def test_a_case_over_its_time_limit_fails_and_is_cleaned_up(factory: object) -> None:
    cleaned: list[bool] = []

    def body(f: Fixture) -> None:
        f.defer("mark", lambda: cleaned.append(True))
        time.sleep(5)

    began = time.monotonic()
    result = run_case(_case("slow", body, timeout=0.2), factory)  # type: ignore[arg-type]
    assert time.monotonic() - began < 2
    assert (result.outcome, result.message) == ("failed", "timed out after 0.2s")
    assert cleaned == [True]


def test_run_all_prints_a_line_per_case_and_runs_serial_cases_alone(factory: object) -> None:
    running: list[str] = []
    overlaps: list[str] = []

    def body(name: str) -> object:
        def run(f: Fixture) -> None:
            if running:
                overlaps.append(name)
            running.append(name)
            time.sleep(0.05)
            running.remove(name)

        return run

    cases = [_case(f"c{i}", body(f"c{i}")) for i in range(4)]
    cases.append(_case("alone", body("alone"), tags=frozenset({SERIAL})))
    out = io.StringIO()
    results = run_all(cases, factory, out, parallel=4)  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and all(line.startswith("PASS ") for line in lines)
    assert lines[-1].startswith("PASS [unit] alone")
    assert "alone" not in overlaps
    assert summary(results) == "5 passed, 0 failed, 0 skipped"


def _results() -> list[Result]:
    def case(name: str) -> Case:
        return _case(name, lambda f: None)

    return [
        Result(case("a"), "passed", 0.5),
        Result(case("b"), "failed", 1.0, "boom", "Traceback: boom"),
        Result(case("c"), "skipped", 0.0, "no cgroup v2"),
    ]


def test_summary_and_exit_codes() -> None:
    results = _results()
    assert summary(results) == "1 passed, 1 failed, 1 skipped"
    assert exit_code(results) == 1
    assert exit_code([r for r in results if r.outcome != "failed"]) == 0


def test_junit_xml() -> None:
    root = ET.fromstring(junit_xml(_results()))
    assert (root.tag, root.get("tests"), root.get("failures"), root.get("skipped")) == (
        "testsuite",
        "3",
        "1",
        "1",
    )
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["a"].find("failure") is None
    failure = cases["b"].find("failure")
    assert failure is not None and failure.get("message") == "boom"
    assert failure.text == "Traceback: boom"
    skipped = cases["c"].find("skipped")
    assert skipped is not None and skipped.get("message") == "no cgroup v2"


def test_cli_list_needs_no_runtime() -> None:
    out = io.StringIO()
    assert cli.main(["--list", "--focus", r"\[idempotence\]"], out) == 0
    lines = out.getvalue().splitlines()
    assert lines[-1] == f"{len(lines) - 1} cases"
    assert all(line.startswith("[idempotence] ") for line in lines[:-1])


def test_cli_unreachable_runtime_exits_2(tmp_path: Path) -> None:
    out = io.StringIO()
    code = cli.main(["--runtime-endpoint", f"unix://{tmp_path}/none.sock"], out)
    assert code == 2
    assert "cannot reach" in out.getvalue()


def test_case_failure_is_an_assertion_error() -> None:
    assert issubclass(CaseFailure, AssertionError)
