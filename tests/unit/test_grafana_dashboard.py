"""deploy/prometheus/grafana-dashboard.json charts only metrics crisp exports, and all of them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cri.metrics import ContainerCollector, ImagePullCollector, create_metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "grafana-dashboard.json"

# Words of PromQL that are not metric names when they stand without a "(" after them.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPINGS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


class _NoPulls:
    bytes_fetched = 0
    pulls = 0
    layers_reused = 0
    failures: Mapping[str, int] = {"manifest": 1}  # so the labelled family has a sample


def exported_names() -> set[str]:
    """Every sample name crisp's /metrics serves, from the same registry the daemon builds."""
    metrics = create_metrics()
    metrics.registry.register(ImagePullCollector(_NoPulls()))
    metrics.registry.register(ContainerCollector(lambda: []))
    metrics.observe("Version", 0.001, "INTERNAL")
    return {sample.name for family in metrics.registry.collect() for sample in family.samples}


def metric_names(expression: str) -> set[str]:
    text = _STRINGS.sub("", expression)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPINGS.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation
        if match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def _expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) of every query, the template variables' included."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            yield f"variable {variable['name']}", inner.group(1) if inner else query


def test_metric_name_parser() -> None:
    expression = (
        'histogram_quantile(0.99, sum by (le, operation) (rate(a_bucket{x=~"$i"}[5m]))) '
        "/ ignoring(code) b_total + on(instance) group_left c"
    )
    assert metric_names(expression) == {"a_bucket", "b_total", "c"}


def test_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_names()
    used: set[str] = set()
    for title, expression in _expressions(dashboard):
        names = metric_names(expression)
        assert names, f"{title}: no metric in {expression!r}"
        unknown = names - exported
        assert not unknown, f"{title}: {expression!r} uses {unknown}, crisp exports no such metric"
        used |= names
    # Every crisp family has a panel (the _created timestamps are no family of their own).
    crisp_families = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for name in exported
        if name.startswith("crisp_") and not name.endswith("_created")
    }
    charted = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert crisp_families <= charted, f"not charted: {sorted(crisp_families - charted)}"


def test_dashboard_panels_are_laid_out_and_use_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] == "crisp"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["targets"], panel["title"]
