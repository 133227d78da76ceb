#!/usr/bin/env bash
# Runs every test: set-up if needed, the Rust workspace (release profile only, so CI builds
# MLIR and tract once), then the Python oracles' tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# glibc fills freed and fresh heap blocks with a pattern: a use of a destroyed MLIR op (a pass
# erasing ops it still iterates over) then crashes every run instead of once in a while.
MALLOC_PERTURB_=165 cargo test --release --workspace
# The runtime-only lt2c (no MLIR: the binary a GPU host needs) still compiles.
cargo check --release --no-default-features -p lt2c
# The C ABI as a shared library, for the Python binding's tests (lt2.runtime).
cargo build --release -p lt2-capi
.venv/bin/python -m pytest python/tests -q
