"""Shared pytest set-up: make `import lt2` work however pytest is started, and set the
onnxruntime switch for opset-27 models before anything imports onnxruntime."""

import os
import sys
from pathlib import Path

os.environ["ALLOW_RELEASED_ONNX_OPSET_ONLY"] = "0"
_PY = str(Path(__file__).resolve().parents[1])
if _PY not in sys.path:
    sys.path.insert(0, _PY)
