"""JUnit XML, as CI systems read it: one testsuite, a testcase per case."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from critest.runner import Result


def junit_xml(results: Sequence[Result], suite: str = "critest") -> str:
    root = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(sum(1 for r in results if r.outcome == "failed")),
        skipped=str(sum(1 for r in results if r.outcome == "skipped")),
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    for result in results:
        element = ET.SubElement(
            root,
            "testcase",
            classname=result.case.area,
            name=result.case.name,
            time=f"{result.seconds:.3f}",
        )
        if result.outcome == "failed":
            failure = ET.SubElement(element, "failure", message=result.message)
            failure.text = result.detail or result.message
        elif result.outcome == "skipped":
            ET.SubElement(element, "skipped", message=result.message)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path: Path, results: Sequence[Result]) -> None:
    path.write_text(junit_xml(results))
