#!/usr/bin/env bash
# Runs every test: set-up if needed, the Rust workspace (release profile only, so CI builds
# MLIR and tract once), then the Python oracles' tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --release --workspace
.venv/bin/python -m pytest python/tests -q
