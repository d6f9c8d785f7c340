"""Selecting and running cases: each gets a fresh Fixture (its own CRI client), a time
limit, and a cleanup that runs however the case ended."""

from __future__ import annotations

import re
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, TextIO

from critest.case import SERIAL, Case, CaseFailure, Skipped
from critest.fixture import Env, Fixture, describe

Outcome = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class Result:
    case: Case
    outcome: Outcome
    seconds: float
    message: str = ""  # failure detail or skip reason
    detail: str = ""  # traceback of a failure


def select(cases: Iterable[Case], focus: str = "", skip: str = "") -> list[Case]:
    """Cases whose match text matches ``focus`` (if given) and not ``skip`` (if given)."""
    focus_re = re.compile(focus) if focus else None
    skip_re = re.compile(skip) if skip else None
    chosen = [
        c
        for c in cases
        if (focus_re is None or focus_re.search(c.match_text))
        and (skip_re is None or not skip_re.search(c.match_text))
    ]
    return sorted(chosen, key=lambda c: (c.area, c.name))


FixtureFactory = Callable[[], Fixture]


def run_case(case: Case, make_fixture: FixtureFactory) -> Result:
    """Runs one case in a worker thread bounded by its timeout; cleanup always runs."""
    start = time.monotonic()
    fixture = make_fixture()
    outcome: list[tuple[Outcome, str, str]] = []

    def body() -> None:
        try:
            case.func(fixture)
            outcome.append(("passed", "", ""))
        except Skipped as reason:
            outcome.append(("skipped", str(reason), ""))
        except CaseFailure as failure:
            outcome.append(("failed", str(failure), traceback.format_exc()))
        except Exception as error:  # an RPC error or a bug: the case failed either way
            outcome.append(("failed", describe(error), traceback.format_exc()))

    worker = threading.Thread(target=body, name=case.title, daemon=True)
    worker.start()
    worker.join(case.timeout)
    if worker.is_alive():
        # The thread cannot be killed; cleanup removes what it made so far, and the
        # thread dies with the process at the latest.
        outcome.append(("failed", f"timed out after {case.timeout:g}s", ""))
    kind, message, detail = outcome[0]
    errors = fixture.cleanup()
    if errors and kind != "failed":
        kind, message = "failed", "cleanup failed: " + "; ".join(errors)
    elif errors:
        message += " (cleanup also failed: " + "; ".join(errors) + ")"
    return Result(case, kind, time.monotonic() - start, message, detail)


def format_result(result: Result) -> str:
    label = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[result.outcome]
    line = f"{label} {result.case.title} ({result.seconds:.1f}s)"
    return f"{line}: {result.message}" if result.message else line


def summary(results: Sequence[Result]) -> str:
    counts = {o: sum(1 for r in results if r.outcome == o) for o in ("passed", "failed", "skipped")}
    return f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"


def exit_code(results: Sequence[Result]) -> int:
    """0 when nothing failed (skips do not fail a run), 1 otherwise."""
    return 1 if any(r.outcome == "failed" for r in results) else 0


def run_all(
    cases: Sequence[Case],
    make_fixture: FixtureFactory,
    out: TextIO,
    parallel: int = 1,
) -> list[Result]:
    """Runs the parallel-safe cases ``parallel`` at a time, then the serial ones alone;
    prints one line per case as it ends."""
    lock = threading.Lock()
    results: list[Result] = []

    def one(case: Case) -> None:
        result = run_case(case, make_fixture)
        with lock:
            results.append(result)
            print(format_result(result), file=out, flush=True)

    shared = [c for c in cases if SERIAL not in c.tags]
    serial = [c for c in cases if SERIAL in c.tags]
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        list(pool.map(one, shared))
    for case in serial:
        one(case)
    return results


def make_env_fixture(env: Env) -> FixtureFactory:
    return lambda: Fixture(env)
