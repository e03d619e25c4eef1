#!/usr/bin/env bash
# Install everything the tests need (system packages, .venv), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
# The README's lean set-up (no torch) in its own venv: tests/test_lean.py runs the monitor with it.
VENV=.venv-lean bash scripts/install.sh --onnx
export SOUND_MONITOR_LEAN_PYTHON="$PWD/.venv-lean/bin/python"
.venv/bin/ruff check monitor tests benchmarks scripts
exec .venv/bin/python -m pytest -q "$@"
