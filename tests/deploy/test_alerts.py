"""The chart's PrometheusRule pages for what needs a person, and not for a healthy guarded burst.

The rule group is rendered by the real helm (``.tools/helm``) and checked by the real promtool
(Debian's ``prometheus`` package): ``promtool check rules`` on the PrometheusRule's spec, then
``promtool test rules`` with the fires / does-not-fire cases in ``tests/deploy/alerts/``. Without
either tool these tests fail and say how to install it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.monitoring import metric_names, require_helm, require_promtool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "topup-guard"
ALERT_TESTS = ROOT / "tests" / "deploy" / "alerts" / "topup-guard.test.yaml"
# The promtool tests name these labels: release "topup-guard" in namespace "payments".
RELEASE, NAMESPACE = "topup-guard", "payments"

Doc = dict[str, Any]


def render(*sets: str, release: str = RELEASE) -> list[Doc]:
    args = [str(require_helm()), "template", release, str(CHART), "--namespace", NAMESPACE]
    for item in sets:
        args += ["--set", item]
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def rule_spec(*sets: str) -> Doc:
    rules = [
        d for d in render("prometheusRule.enabled=true", *sets) if d["kind"] == "PrometheusRule"
    ]
    assert len(rules) == 1
    spec: Doc = rules[0]["spec"]
    return spec


def alerts(spec: Doc) -> list[Doc]:
    return [r for g in spec["groups"] for r in g["rules"] if "alert" in r]


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_promtool(), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=120,
    )


def run_unit_tests(spec: Doc, where: Path) -> subprocess.CompletedProcess[str]:
    """``promtool test rules`` of the tests file against ``spec`` written as rules.yaml."""
    (where / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(ALERT_TESTS, where / ALERT_TESTS.name)
    return promtool("test", "rules", ALERT_TESTS.name, cwd=where)


@pytest.fixture(scope="module")
def spec() -> Doc:
    return rule_spec()


@pytest.fixture(scope="module")
def unit_tests() -> Doc:
    tests: Doc = yaml.safe_load(ALERT_TESTS.read_text())
    return tests


def test_promtool_accepts_the_rendered_rule_group(spec: Doc, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    result = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts(spec))} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass(spec: Doc, tmp_path: Path) -> None:
    result = run_unit_tests(spec, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_case_where_it_fires(spec: Doc, unit_tests: Doc) -> None:
    fired = {
        case["alertname"]
        for test in unit_tests["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert {a["alert"] for a in alerts(spec)} - fired == set()


def test_the_healthy_burst_checks_every_alert_at_every_time(spec: Doc, unit_tests: Doc) -> None:
    (burst,) = [
        t for t in unit_tests["tests"] if t["name"] == "a healthy guarded burst does not page"
    ]
    cases = burst["alert_rule_test"]
    assert all(case["exp_alerts"] == [] for case in cases)
    times = {case["eval_time"] for case in cases}
    checked = {(case["eval_time"], case["alertname"]) for case in cases}
    assert len(times) >= 3
    assert {(t, a["alert"]) for t in times for a in alerts(spec)} <= checked


def test_the_cases_catch_the_readme_rules_they_replace(spec: Doc, tmp_path: Path) -> None:
    """The unit tests can fail: with the old README rules they do, for the stated reasons."""
    old = {
        "TopupGuardAbsent": 'up{job="topup-guard"} == 0',
        "TopupGuardExhaustionForecast": "topup_guard_time_to_exhaustion_seconds < 600",
    }
    mutated = yaml.safe_load(yaml.safe_dump(spec))
    for rule in alerts(mutated):
        rule["expr"] = old.get(rule["alert"], rule["expr"])

    result = run_unit_tests(mutated, tmp_path)

    report = result.stdout + result.stderr
    assert result.returncode != 0
    assert "name: the pod is gone pages" in report
    assert "name: a healthy guarded burst does not page" in report


def test_no_rule_reads_the_time_to_exhaustion_on_its_own(spec: Doc) -> None:
    """It is short whenever spend is bursty and the guard tops up; the guard's own condition says
    when it cannot act."""
    for rule in alerts(spec):
        assert "time_to_exhaustion" not in rule["expr"], rule["alert"]


def test_every_alert_has_a_severity_a_summary_and_a_description(spec: Doc) -> None:
    for rule in alerts(spec):
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_rules_are_off_by_default() -> None:
    assert not [d for d in render() if d["kind"] == "PrometheusRule"]


def test_rules_select_the_job_label_the_chart_monitors_set(spec: Doc) -> None:
    monitor_docs = render("serviceMonitor.enabled=true") + render(
        "mode=sidecar", "image.tag=0.1.0", "podMonitor.enabled=true", "podMonitor.selector.app=x"
    )
    monitors = [d for d in monitor_docs if d["kind"] in ("ServiceMonitor", "PodMonitor")]
    assert len(monitors) == 2
    for monitor in monitors:
        key = "endpoints" if monitor["kind"] == "ServiceMonitor" else "podMetricsEndpoints"
        (endpoint,) = monitor["spec"][key]
        (relabel,) = endpoint["relabelings"]
        assert relabel["targetLabel"] == "job"
        assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
        selector = f'namespace="{NAMESPACE}",job="{relabel["replacement"]}"'
        for rule in alerts(spec):
            assert selector in " ".join(rule["expr"].split()), rule["alert"]


def test_a_custom_selector_and_labels_reach_every_alert() -> None:
    spec = rule_spec(
        'prometheusRule.selector=cluster="eu1"\\,job="tg"',
        "prometheusRule.alertLabels.team=sms",
        "prometheusRule.criticalSeverity=page",
    )
    for rule in alerts(spec):
        expr = " ".join(rule["expr"].split())
        assert 'cluster="eu1",job="tg"' in expr, rule["alert"]
        assert NAMESPACE not in expr
        assert rule["labels"]["team"] == "sms"
    assert {r["labels"]["severity"] for r in alerts(spec)} == {"page", "warning"}


def test_rules_name_only_topup_guard_metrics(spec: Doc) -> None:
    """Which of them the worker really exports is checked against a running worker in
    test_dashboard.py; here: no rule leans on a series some other exporter would have to provide."""
    for rule in alerts(spec):
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert all(n.startswith("topup_guard_") for n in names), (rule["alert"], names)


@pytest.mark.parametrize(
    ("sets", "limit"),
    [
        ([], 600),  # 3 x 60 s + 30 s is below the 10-minute minimum
        (["policy.pollInterval=900"], 2730),  # slow polling: never "failing" between two polls
        (["prometheusRule.pollStaleSeconds=120"], 120),
    ],
)
def test_polls_count_as_failing_only_past_the_readiness_limit(sets: list[str], limit: int) -> None:
    (rule,) = [r for r in alerts(rule_spec(*sets)) if r["alert"] == "TopupGuardPollsFailing"]
    assert f"}}) > {limit}\n" in rule["expr"]
