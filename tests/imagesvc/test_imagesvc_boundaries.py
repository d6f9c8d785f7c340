from __future__ import annotations

import ast
from pathlib import Path

import imagesvc

FORBIDDEN = {"cri", "sandbox", "cni", "runtime", "critest", "criapi"}


def test_imagesvc_imports_nothing_above_or_beside_it() -> None:
    # The design's dependency rule: imagesvc is a leaf that sandbox builds on.
    package = Path(imagesvc.__file__).parent
    offenders = []
    for source in sorted(package.rglob("*.py")):
        tree = ast.parse(source.read_text(), str(source))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{source.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
