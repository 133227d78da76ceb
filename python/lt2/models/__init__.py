"""ONNX builders of LT2-family models (``looped``: the general builder; ``example``: the tiny
LT2-hybrid test model)."""
