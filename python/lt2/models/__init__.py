"""ONNX builders of LT2-family models (``example``: the tiny LT2-hybrid test model)."""
