#!/usr/bin/env bash
# Install everything the tests need (system packages, .venv), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
.venv/bin/ruff check monitor tests benchmarks scripts
exec .venv/bin/python -m pytest -q "$@"
