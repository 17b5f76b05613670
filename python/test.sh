#!/usr/bin/env bash
# The Python package's tests: a venv under target/ (created once), the package
# built from this checkout into it (`maturin develop`, dev profile: its first
# build compiles the module's dependency tree, which the test build's artefacts
# do not serve), pytest, then every notebook executed (into a temporary
# directory: the committed outputs under notebooks-output/ are not touched).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${REELKIT_VENV:-target/py-venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "maturin>=1.5,<2" pytest polars pyarrow numpy pandas nbconvert nbformat ipykernel
VENV="$(cd "$VENV" && pwd)"
(cd python && VIRTUAL_ENV="$VENV" "$VENV/bin/maturin" develop --locked -q)
"$VENV/bin/python" -m pytest python/tests -q
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for nb in notebooks/*.ipynb; do
    "$VENV/bin/jupyter" nbconvert --to notebook --execute "$nb" --output-dir "$out" \
        --ExecutePreprocessor.timeout=900 --log-level=WARN
done
echo "python: pytest and $(ls notebooks/*.ipynb | wc -l) notebooks passed"
