"""The case registry: a decorator records each conformance case with its area, the upstream
spec it mirrors and its tags; ``discover`` imports every ``critest.spec_*`` module."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from critest.fixture import Fixture

CaseFunc = Callable[["Fixture"], None]

# Tags with a meaning to the runner; others are free text for --focus/--skip.
SERIAL = "serial"  # must not overlap with other cases (host-wide effects or timing)
NEEDS_REGISTRY = "needs-registry"
DEFAULT_TIMEOUT = 120.0


class Skipped(Exception):
    """Raised by a case that cannot run here; the message is the reason printed."""


class CaseFailure(AssertionError):
    """A check of a case did not hold."""


def skip(reason: str) -> NoReturn:
    raise Skipped(reason)


def expect(condition: object, message: str) -> None:
    # Not ``assert``: the checks must hold under ``python -O`` too.
    if not condition:
        raise CaseFailure(message)


def expect_eq(actual: object, wanted: object, what: str) -> None:
    if actual != wanted:
        raise CaseFailure(f"{what}: got {actual!r}, want {wanted!r}")


@dataclass(frozen=True)
class Case:
    name: str
    area: str
    spec: str  # the upstream cri-tools spec it mirrors; "" for cases upstream lacks
    func: CaseFunc
    tags: frozenset[str] = field(default_factory=frozenset)
    timeout: float = DEFAULT_TIMEOUT

    @property
    def title(self) -> str:
        return f"[{self.area}] {self.name}"

    @property
    def match_text(self) -> str:
        """What --focus and --skip search: title, tags and upstream spec name."""
        tags = " ".join(f"[{t}]" for t in sorted(self.tags))
        return f"{self.title} {tags} {self.spec}".strip()


class Registry:
    def __init__(self) -> None:
        self._cases: dict[str, Case] = {}

    def add(self, case: Case) -> None:
        if case.title in self._cases:
            raise ValueError(f"duplicate case {case.title!r}")
        self._cases[case.title] = case

    def cases(self) -> list[Case]:
        return list(self._cases.values())

    def register(
        self,
        name: str,
        *,
        area: str,
        spec: str = "",
        tags: Iterable[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Callable[[CaseFunc], CaseFunc]:
        def decorate(func: CaseFunc) -> CaseFunc:
            self.add(Case(name, area, spec, func, frozenset(tags), timeout))
            return func

        return decorate


REGISTRY = Registry()
case = REGISTRY.register


def discover(package: str = "critest", prefix: str = "spec_") -> list[Case]:
    """Imports every ``<package>.<prefix>*`` module (each registers its cases on import)."""
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        if info.name.startswith(prefix):
            importlib.import_module(f"{package}.{info.name}")
    return REGISTRY.cases()
