#!/usr/bin/env bash
# Runs every test: set-up if needed, the Rust workspace (release profile only, so CI builds
# MLIR and tract once), then the Python oracles' tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --release --workspace
# The C ABI as a shared library, for the Python binding's tests (lt2.runtime).
cargo build --release -p lt2-capi
.venv/bin/python -m pytest python/tests -q
