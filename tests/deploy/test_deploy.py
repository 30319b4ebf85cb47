"""The shipped operations artifacts: alert rules, Grafana dashboard, Dockerfile, Helm chart.

The alert rules are checked and unit-tested with ``promtool`` (Debian/Ubuntu package
``prometheus``). Without it these tests fail, unless ``SPENDGATE_ALLOW_NO_PROMTOOL=1``
turns them into skips. Every metric that a panel, an alert or an alert test names must
be one that ``gateway.telemetry.metrics.metric_names()`` declares.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "spendgate-dashboard.json"
DOCKERFILE = ROOT / "Dockerfile"
CHART = ROOT / "helm" / "spendgate"

EXPECTED_ALERTS = {
    "SpendgateBreakerOpen",
    "SpendgateUpstreamErrorRatioHigh",
    "SpendgateBudgetRejectionsSpike",
    "SpendgateWorkflowCostOutlier",
    "SpendgateWorkflowsStalled",
    "SpendgateHighLatencyP99",
    "SpendgateHighTTFTP99",
    "SpendgateUpstreamCallHung",
}
SEVERITIES = {"critical", "warning", "info"}
METRIC_RE = re.compile(r"\bspendgate_[a-z0-9_]*[a-z0-9]")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
GRAFANA_VAR_RE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")
PROMTOOL_TIMEOUT_S = 120


# ---------------------------------------------------------------- helpers


def known_metric_names() -> set[str]:
    """The metric names the code exports, from the one module that defines them."""
    try:
        from gateway.telemetry import metrics
    except ImportError as exc:
        pytest.fail(f"cannot import gateway.telemetry.metrics: {exc}")
    metric_names = getattr(metrics, "metric_names", None)
    if not callable(metric_names):
        pytest.fail("gateway.telemetry.metrics defines no metric_names()")
    names = set(metric_names())
    assert names, "metric_names() returned no names"
    return names


def metric_base(name: str, known: set[str]) -> str:
    """``x_bucket``/``x_sum``/``x_count`` of a known histogram ``x`` -> ``x``."""
    if name in known:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in known:
            return name.removesuffix(suffix)
    return name


def metrics_in(text: str) -> set[str]:
    return set(METRIC_RE.findall(text))


def promtool() -> str | None:
    """The promtool binary; fails the test when it is missing, unless allowed."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("SPENDGATE_ALLOW_NO_PROMTOOL") == "1":
            pytest.skip("promtool is not installed (SPENDGATE_ALLOW_NO_PROMTOOL=1)")
        pytest.fail(
            "promtool is not on PATH. Install it (Debian/Ubuntu: apt-get install prometheus) "
            "or set SPENDGATE_ALLOW_NO_PROMTOOL=1 to skip the promtool checks."
        )
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = promtool()
    assert binary is not None
    return subprocess.run(
        [binary, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
    )


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(ALERTS)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    with DASHBOARD.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def panel_exprs(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in all_panels(board["panels"]):
        for target in panel.get("targets", []):
            yield panel.get("title", "?"), target["expr"]


def variable_queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for variable in board["templating"]["list"]:
        if variable.get("type") == "query":
            query = variable["query"]
            yield variable["name"], query["query"] if isinstance(query, dict) else query


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's variables with values promtool can parse."""

    def value(match: re.Match[str]) -> str:
        return "5m" if match.group(1).startswith("__") else ".*"

    return GRAFANA_VAR_RE.sub(value, expr)


# ---------------------------------------------------------------- alert rules


def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", str(ALERTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", str(ALERTS_TEST.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_carry_severity_summary_description_runbook() -> None:
    groups = load_yaml(ALERTS)["groups"]
    assert [group["name"] for group in groups] == ["spendgate"]
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    missing = EXPECTED_ALERTS - set(names)
    assert not missing, f"alerts missing from {ALERTS.name}: {sorted(missing)}"
    for rule in rules:
        assert rule.get("labels", {}).get("severity") in SEVERITIES, rule["alert"]
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert str(annotations.get(key, "")).strip(), f"{rule['alert']}: no {key}"


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases: dict[str, list[bool]] = {}
    for test in load_yaml(ALERTS_TEST)["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    for rule in alert_rules():
        name = rule["alert"]
        outcomes = cases.get(name, [])
        assert True in outcomes, f"{name}: no test case where it fires"
        assert False in outcomes, f"{name}: no test case where it stays quiet"
    unknown = set(cases) - {rule["alert"] for rule in alert_rules()}
    assert not unknown, f"tests for alerts that do not exist: {sorted(unknown)}"


# ---------------------------------------------------------------- dashboard


def test_dashboard_structure() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 38
    assert board.get("uid") and board.get("title")

    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    queries = dict(variable_queries(board))
    for name in ("model", "key"):
        assert name in queries, f"no templating variable {name!r}"
        assert queries[name].startswith("label_values("), queries[name]
        assert queries[name].rstrip(")").endswith(f", {name}"), queries[name]

    panels = list(all_panels(board["panels"]))
    assert panels
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids are not unique"

    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        title, kind = panel.get("title"), panel.get("type")
        assert title and kind, f"panel {panel['id']} lacks a title or type"
        pos = panel["gridPos"]
        assert all(isinstance(pos[k], int) for k in ("h", "w", "x", "y")), title
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, title
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{title!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = title
        if kind == "row":
            continue
        targets = panel.get("targets")
        assert targets, f"{title!r} has no targets"
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", title
        ref_ids = [target["refId"] for target in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{title!r}: duplicate refIds"
        for target in targets:
            assert str(target.get("expr", "")).strip(), f"{title!r}: target without expr"


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    board = dashboard()
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": grafana_to_promql(expr)}
        for i, (_, expr) in enumerate(panel_exprs(board))
    ]
    rules_file = tmp_path / "dashboard_rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(rules_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_charts_every_metric() -> None:
    known = known_metric_names()
    charted = {
        metric_base(name, known)
        for _, expr in panel_exprs(dashboard())
        for name in metrics_in(expr)
    }
    missing = known - charted
    assert not missing, f"metrics without a dashboard panel: {sorted(missing)}"


# ---------------------------------------------------------------- metric names


def referenced_metrics() -> Iterator[tuple[str, str]]:
    """(where, metric name) for every metric named by a panel, an alert or an alert test."""
    board = dashboard()
    for title, expr in panel_exprs(board):
        for name in metrics_in(expr):
            yield f"dashboard panel {title!r}", name
    for variable, query in variable_queries(board):
        for name in metrics_in(query):
            yield f"dashboard variable {variable!r}", name
    for rule in alert_rules():
        texts = [rule["expr"], *map(str, rule.get("annotations", {}).values())]
        for name in metrics_in("\n".join(texts)):
            yield f"alert {rule['alert']}", name
    for test in load_yaml(ALERTS_TEST)["tests"]:
        for series in test.get("input_series", []):
            for name in metrics_in(series["series"]):
                yield f"alert test {test.get('name', '?')!r}", name


def test_every_referenced_metric_exists() -> None:
    known = known_metric_names()
    unknown = sorted(
        f"{where}: {name}"
        for where, name in referenced_metrics()
        if metric_base(name, known) not in known
    )
    assert not unknown, "metrics not defined in gateway.telemetry.metrics:\n" + "\n".join(unknown)


def test_metric_base_strips_histogram_suffixes_of_known_names_only() -> None:
    known = {"spendgate_request_duration_seconds", "spendgate_requests_total"}
    assert metric_base("spendgate_request_duration_seconds_bucket", known) in known
    assert metric_base("spendgate_request_duration_seconds_count", known) in known
    assert metric_base("spendgate_requests_total", known) in known
    assert metric_base("spendgate_request_total", known) not in known
    assert metric_base("spendgate_requests_bucket", known) not in known
    assert metrics_in('sum(rate(spendgate_x_total{a="b"}[5m])) / spendgate_y') == {
        "spendgate_x_total",
        "spendgate_y",
    }


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_essentials() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"^EXPOSE 4000\b", text, re.M)
    assert "get_encoding" in text and "o200k_base" in text and "cl100k_base" in text
    assert re.search(r"^HEALTHCHECK\b.*/healthz", text, re.M | re.S)
    assert re.search(r'^ENTRYPOINT \["spendgate"\]', text, re.M)
    cmd = re.search(r"^CMD (\[.*\])", text, re.M)
    assert cmd and json.loads(cmd.group(1))[0] == "serve"
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".git" in ignored


# ---------------------------------------------------------------- Helm chart


def chart_values() -> dict[str, Any]:
    values: dict[str, Any] = load_yaml(CHART / "values.yaml")
    return values


def test_chart_metadata_and_values_parse() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "spendgate"
    assert chart["version"] and chart["appVersion"]

    values = chart_values()
    expected = {
        "replicaCount",
        "image",
        "config",
        "store",
        "secrets",
        "resources",
        "service",
        "metrics",
        "serviceMonitor",
        "podDisruptionBudget",
    }
    assert expected <= set(values), f"missing values: {sorted(expected - set(values))}"
    assert values["service"]["port"] == 4000
    assert {"repository", "tag", "pullPolicy"} <= set(values["image"])
    assert isinstance(values["config"], dict)
    assert "url" in values["store"]
    assert {"existingSecret", "providerKeys", "gatewayKeys", "adminKey"} <= set(values["secrets"])
    assert isinstance(values["serviceMonitor"]["enabled"], bool)
    assert isinstance(values["podDisruptionBudget"]["enabled"], bool)

    templates = {p.name for p in (CHART / "templates").iterdir()}
    for name in (
        "_helpers.tpl",
        "deployment.yaml",
        "service.yaml",
        "configmap.yaml",
        "servicemonitor.yaml",
        "pdb.yaml",
        "NOTES.txt",
    ):
        assert name in templates, f"templates/{name} missing"


def _env_names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_env") and isinstance(value, str):
                yield value
            else:
                yield from _env_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from _env_names(item)


def test_chart_secrets_provide_every_env_var_the_config_names() -> None:
    values = chart_values()
    secrets = values["secrets"]
    provided = set(secrets["providerKeys"]) | set(secrets["gatewayKeys"])
    provided.add(secrets["adminKey"]["env"])
    provided |= {env["name"] for env in values.get("extraEnv", [])}
    needed = set(_env_names(values["config"]))
    assert needed, "the default config names no secret env vars"
    assert needed <= provided, f"env vars the config needs but no secret sets: {needed - provided}"


def test_chart_default_config_is_a_valid_gateway_config() -> None:
    from gateway import config as gateway_config

    values = chart_values()
    rendered = {**values["config"], "store": values["store"]["url"]}
    gateway_config.parse(rendered)


def test_chart_templates_only_use_defined_values() -> None:
    values = chart_values()
    for template in sorted((CHART / "templates").iterdir()):
        text = template.read_text(encoding="utf-8")
        for path in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
            node: Any = values
            for part in path.strip(".").split("."):
                assert isinstance(node, dict) and part in node, (
                    f"{template.name}: .Values{path} is not in values.yaml"
                )
                node = node[part]


def test_helm_lint() -> None:
    helm = shutil.which("helm")
    if helm is None:
        pytest.skip("helm is not installed")
    result = subprocess.run(
        [helm, "lint", str(CHART)],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_cluster_values_render_a_valid_config() -> None:
    from gateway import config as gateway_config

    values = chart_values()
    cluster = load_yaml(CHART / "values-redis-cluster.yaml")
    assert cluster["store"]["url"].startswith("redis+cluster://") and cluster["replicaCount"] > 1
    assert set(cluster) <= set(values)  # only keys the chart defines
    gateway_config.parse({**values["config"], "store": cluster["store"]["url"]})
