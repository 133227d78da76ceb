"""Generate the ``tests/fixtures/lt2_tiny`` fixture: the tiny LT2-hybrid model and goldens.

Writes ``model.onnx`` (Loop form), ``model_unrolled.onnx``, ``io.npz`` (``input_ids``
int64 [2, 12], ``logits`` float32 [2, 12, 256]) and ``io_b1_l7.npz`` (batch 1, seq 7).
Goldens come from ``onnx.reference.ReferenceEvaluator`` on the Loop form. Before writing
anything, three independent oracles must agree to ``||a - b|| / ||b|| < 1e-5``:

1. ReferenceEvaluator on the Loop form (the golden),
2. onnxruntime CPU on the unrolled form,
3. ``lt2.reference.lt2_forward`` (float64 numpy, from the weights, not from the graph);

and, as extra checks, onnxruntime on the Loop form (it runs it since the body input is
shaped) and the ReferenceEvaluator on the unrolled form.

Usage (from the repo root)::

    PYTHONPATH=python .venv/bin/python -m lt2.examples.gen_example [--out DIR] [--check]

``--check`` regenerates in memory and compares with the files in ``--out`` instead of
writing (exit status 1 on a difference).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lt2 import oracles, reference
from lt2.fixtures import load_npz, save_npz
from lt2.models import example

TOL = 1e-5
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "lt2_tiny"

# (file name, seed of default_rng, batch, seq)
INPUTS = [("io.npz", 1, 2, 12), ("io_b1_l7.npz", 2, 1, 7)]


class OracleMismatch(AssertionError):
    """Two oracles disagree by more than ``TOL``."""


def input_ids(seed: int, batch: int, seq: int, vocab: int) -> np.ndarray:
    """Fixed-seed token ids ``[batch, seq]`` (int64) in ``[0, vocab)``."""
    return np.random.default_rng(seed).integers(0, vocab, (batch, seq)).astype(np.int64)


def build_all(cfg: example.ExampleConfig | None = None, verbose: bool = True):
    """Build both model forms and the goldens, cross-checking the three oracles.

    Returns ``(files, errors)``: ``files`` maps file name -> bytes (``.onnx``) or dict of
    arrays (``.npz``); ``errors`` maps ``"<npz>: a vs b"`` -> relative error. Raises
    ``OracleMismatch`` when any error reaches ``TOL``.
    """
    cfg = cfg or example.ExampleConfig()
    weights = example.make_weights(cfg)
    loop = example.build_model(cfg, weights, unrolled=False)
    unrolled = example.build_model(cfg, weights, unrolled=True)
    files: dict = {"model.onnx": loop.SerializeToString(), "model_unrolled.onnx": unrolled.SerializeToString()}
    errors: dict[str, float] = {}
    for fname, seed, batch, seq in INPUTS:
        ids = input_ids(seed, batch, seq, cfg.vocab)
        feeds = {"input_ids": ids}
        ref_loop = oracles.run_reference(loop, feeds)[0]
        ref_unrolled = oracles.run_reference(unrolled, feeds)[0]
        ort_unrolled = oracles.run_onnxruntime(unrolled, feeds)[0]
        ort_loop = oracles.run_onnxruntime(loop, feeds)[0]
        numpy_fwd = reference.lt2_forward(weights, ids, cfg)
        if ref_loop.shape != (batch, seq, cfg.vocab) or ref_loop.dtype != np.float32:
            raise OracleMismatch(f"{fname}: golden has shape {ref_loop.shape} dtype {ref_loop.dtype}")
        pairs = {
            "reference(loop) vs onnxruntime(unrolled)": (ref_loop, ort_unrolled),
            "reference(loop) vs numpy": (ref_loop, numpy_fwd),
            "onnxruntime(unrolled) vs numpy": (ort_unrolled, numpy_fwd),
            "reference(loop) vs reference(unrolled)": (ref_loop, ref_unrolled),
            "reference(loop) vs onnxruntime(loop)": (ref_loop, ort_loop),
        }
        for what, (a, b) in pairs.items():
            errors[f"{fname}: {what}"] = oracles.rel_err(a, b)
        files[fname] = {"input_ids": ids, "logits": ref_loop}
    if verbose:
        for k, v in errors.items():
            print(f"  {k:<60s} rel err {v:.3e}")
    bad = {k: v for k, v in errors.items() if not v < TOL}
    if bad:
        raise OracleMismatch(f"oracles disagree (tolerance {TOL}): {bad}")
    return files, errors


def write(files: dict, out: Path) -> None:
    """Write ``files`` (as returned by ``build_all``) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, bytes):
            (out / name).write_bytes(content)
        else:
            save_npz(out / name, **content)


def check(files: dict, out: Path, logits_rtol: float = 1e-6) -> list[str]:
    """Differences between freshly built ``files`` and the ones in ``out``: models must be
    byte-identical, ``input_ids`` equal, logits within ``logits_rtol`` (relative norm)."""
    problems = []
    for name, content in files.items():
        path = out / name
        if not path.exists():
            problems.append(f"{path} missing")
        elif isinstance(content, bytes):
            if path.read_bytes() != content:
                problems.append(f"{path} differs from a fresh build")
        else:
            old = load_npz(path)
            if sorted(old) != sorted(content):
                problems.append(f"{path} keys {sorted(old)} != {sorted(content)}")
            elif not np.array_equal(old["input_ids"], content["input_ids"]):
                problems.append(f"{path}: input_ids differ")
            elif old["logits"].dtype != content["logits"].dtype or old["logits"].shape != content["logits"].shape:
                problems.append(f"{path}: logits dtype/shape differ")
            elif (e := oracles.rel_err(old["logits"], content["logits"])) > logits_rtol:
                problems.append(f"{path}: logits differ (rel err {e:.2e})")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    ap.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    args = ap.parse_args(argv)
    print("lt2_tiny: cross-checking oracles")
    try:
        files, _ = build_all()
    except OracleMismatch as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.check:
        problems = check(files, args.out)
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        print("check: ok" if not problems else "check: FAILED")
        return 1 if problems else 0
    write(files, args.out)
    total = sum((args.out / n).stat().st_size for n in files)
    print(f"wrote {', '.join(files)} to {args.out} ({total} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
