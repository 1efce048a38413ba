"""The Grafana dashboard ships as a sidecar-labelled ConfigMap, and every query in it (and in the
alert rules) names a metric that a real ``topup-guard run`` exports on ``/metrics``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import DEMO_CREDENTIALS, QUIET_SCENARIO
from tests.deploy.monitoring import metric_names, worker_metric_names
from tests.deploy.test_alerts import alerts, promtool, render, rule_spec
from topup_guard.sim import RunningSimulator, start_simulator

ROOT = Path(__file__).resolve().parents[2]
Doc = dict[str, Any]


def dashboard_configmap(*sets: str) -> Doc:
    docs = [d for d in render("dashboard.enabled=true", *sets) if d["kind"] == "ConfigMap"]
    (found,) = [d for d in docs if "topup-guard.json" in d["data"]]
    return found


@pytest.fixture(scope="module")
def dashboard() -> Doc:
    board: Doc = json.loads(dashboard_configmap()["data"]["topup-guard.json"])
    return board


def queries(board: Doc) -> list[str]:
    """Every PromQL query: panel targets and the templating variables' label_values()."""
    found = [t["expr"] for p in board["panels"] for t in p["targets"]]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            inner = variable["query"]["query"]
            assert inner.startswith("label_values("), inner
            assert inner.endswith(")"), inner
            found.append(inner[len("label_values(") : -1].rsplit(",", 1)[0])
    return found


def test_metric_names_finds_selectors_and_nothing_else() -> None:
    """Guards the checker itself: a wrong name must be found, labels and functions must not."""
    expr = (
        'histogram_quantile(0.95, sum by (le, endpoint) (rate(a_bucket{job="$job",x=~"b|c"}'
        "[$__rate_interval]))) > on (job) group_left (x) max without (pod) (b) unless c offset 5m"
        ' or time() - d{e="f"} * 3600 and bool e'
    )
    assert metric_names(expr) == {"a_bucket", "b", "c", "d", "e"}


def test_the_dashboard_configmap_carries_the_grafana_sidecar_label() -> None:
    cm = dashboard_configmap(
        "dashboard.namespace=monitoring", "dashboard.annotations.grafana_folder=SMS"
    )
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "SMS"}


def test_the_dashboard_is_off_by_default() -> None:
    docs = render()
    assert not [d for d in docs if d["kind"] == "ConfigMap" and "topup-guard.json" in d["data"]]


# What Grafana puts in place of its variables before the query reaches Prometheus.
GRAFANA_VARIABLES = {"$namespace": "payments", "$job": "topup-guard", "$__rate_interval": "2m"}


def test_every_dashboard_query_is_valid_promql(dashboard: Doc, tmp_path: Path) -> None:
    """promtool parses each query, variables filled in, as the expression of a recording rule."""
    rules = []
    for i, query in enumerate(queries(dashboard)):
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, query
        rules.append({"record": f"dashboard:query_{i}", "expr": query})
    (tmp_path / "queries.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]})
    )

    result = promtool("check", "rules", "queries.yaml", cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_the_dashboard_shows_balance_floor_forecast_topups_api_calls_and_conditions(
    dashboard: Doc,
) -> None:
    shown = set().union(*(metric_names(q) for q in queries(dashboard)))
    assert {
        "topup_guard_balance_eur",
        "topup_guard_min_balance_eur",
        "topup_guard_time_to_exhaustion_seconds",
        "topup_guard_topups_total",
        "topup_guard_api_calls_total",
        "topup_guard_condition",
    } <= shown


def test_every_panel_has_a_unique_id_a_place_and_a_query_on_the_chosen_guard(
    dashboard: Doc,
) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        for target in panel["targets"]:
            assert 'namespace="$namespace",job="$job"' in target["expr"], panel["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace", "job"}


def readme_metric_names() -> set[str]:
    """The metric names of the README's Metrics table (first column)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Metrics") : readme.index("### Alert rules")]
    return set(re.findall(r"^\| `(topup_guard_[a-z_]+)", section, re.MULTILINE))


def test_the_dashboard_shows_each_accounts_balance_and_the_ten_lowest(dashboard: Doc) -> None:
    by_title = {p["title"]: p for p in dashboard["panels"]}
    per_account = by_title["Fleet: balance per account"]["targets"][0]
    assert per_account["expr"].startswith("max by (account) (topup_guard_account_balance_eur{")
    assert per_account["legendFormat"] == "{{account}}"
    lowest = by_title["Fleet: the 10 lowest balances"]["targets"][0]
    assert lowest["expr"].startswith("bottomk(10, max by (account) (topup_guard_account_balance")
    assert lowest["instant"] is True
    transfers = by_title["Fleet: transfers by state"]["targets"][0]
    assert "sum by (state)" in transfers["expr"]


async def test_every_dashboard_alert_and_readme_metric_is_one_the_worker_exports(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    board = json.loads(dashboard_configmap()["data"]["topup-guard.json"])
    wanted = {name for q in queries(board) for name in metric_names(q)}
    wanted |= {name for rule in alerts(rule_spec()) for name in metric_names(rule["expr"])}
    documented = readme_metric_names()
    assert len(wanted) > 10
    assert len(documented) > 10

    exported = await worker_metric_names(sim, tmp_path)
    # Fleet mode's series (the fleet panels): a fleet worker, funding a subaccount.
    fleet_dir = tmp_path / "fleet"
    fleet_dir.mkdir()
    fleet_sim = await start_simulator(
        "127.0.0.1", 0, scenario=QUIET_SCENARIO, credentials=DEMO_CREDENTIALS
    )
    try:
        exported |= await worker_metric_names(fleet_sim, fleet_dir, fleet=True)
    finally:
        await fleet_sim.stop()

    assert wanted - exported == set()
    # A histogram is documented by its base name; it is exported as _bucket, _sum and _count.
    histograms = {n.removesuffix("_bucket") for n in exported if n.endswith("_bucket")}
    assert documented - exported - histograms == set()
