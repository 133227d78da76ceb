#!/usr/bin/env bash
# Idempotent set-up of a fresh machine for lt2c: Debian packages (LLVM/MLIR 22 for melior),
# and a Python virtual environment inside the repo (.venv) with the oracles and NVRTC.
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for p in llvm-22-dev libmlir-22-dev mlir-22-tools libclang-22-dev clang-22 libpolly-22-dev \
         zlib1g-dev libzstd-dev libxml2-dev libz3-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
want="onnx==1.23.2 onnxruntime==1.31.1 numpy pytest nvidia-cuda-nvrtc==13.0.88"
if ! .venv/bin/python - 2>/dev/null <<'PY'
import glob, os, sysconfig
import onnx, onnxruntime, numpy, pytest
assert onnx.__version__ == "1.23.2" and onnxruntime.__version__ == "1.31.1"
assert glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "nvidia/cu13/lib/libnvrtc.so.13"))
PY
then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q --no-cache-dir --disable-pip-version-check $want
fi
echo "setup: ok"
