#!/usr/bin/env bash
# The main job on the bundled example: set up if needed, build, compile the example ONNX model
# to model.bin, run it, and compare with the golden logits of the ONNX reference evaluator.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
mkdir -p out
ex=tests/fixtures/lt2_tiny
./target/release/lt2c "$ex/model.onnx" -o out/lt2_tiny.bin
./target/release/lt2c inspect out/lt2_tiny.bin
./target/release/lt2c run out/lt2_tiny.bin --inputs "$ex/io.npz" --outputs out/logits.npz --device auto
.venv/bin/python - <<'PY'
import numpy as np
out = np.load("out/logits.npz")["logits"]
ref = np.load("tests/fixtures/lt2_tiny/io.npz")["logits"]
err = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
print(f"logits {out.shape}: relative error vs the ONNX reference evaluator = {err:.2e}")
print("first token's top-5 ids:", np.argsort(-out[0, 0])[:5].tolist())
raise SystemExit(0 if err < 1e-4 else 1)
PY
