"""critest speaks only CRI over gRPC: it may import the standard library, grpc, wsproto,
the generated ``criapi`` stubs and itself, and nothing of crisp."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

CRITEST = Path(__file__).resolve().parents[2] / "critest"
ALLOWED = {"grpc", "wsproto", "criapi", "critest"} | set(sys.stdlib_module_names)


def imported_roots(source: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_critest_imports_only_cri_and_the_standard_library() -> None:
    modules = sorted(CRITEST.rglob("*.py"))
    assert modules, "no critest modules found"
    offenders = {str(m.relative_to(CRITEST)): sorted(imported_roots(m) - ALLOWED) for m in modules}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_scan_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import os\nfrom sandbox.pods import Pod\nimport runtime.spec as s\n")
    assert imported_roots(module) - ALLOWED == {"sandbox", "runtime"}
