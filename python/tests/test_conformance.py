"""ONNX node-test conformance of lt2c (python -m lt2.conformance --check-expected): no test in
tests/conformance/expected_passing.txt may stop passing, and no op in must_pass.txt may have a
failing test. Skipped when the lt2c binary has not been built. About 20 s on 2 cores."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lt2 import conformance as conf

LT2C = Path(os.environ.get("LT2C", conf.DEFAULT_LT2C))


def test_compare_rules():
    a = np.array([1.0, 2.0, 3.0], np.float32)
    assert conf.compare(a, a.astype(np.float64))[0]
    assert not conf.compare(a * 1.001, a)[0]
    assert not conf.compare(a[None], a)[0]                         # shape must match
    assert conf.compare(np.zeros(3), np.zeros(3))[0]                # all-zero ref: absolute
    assert not conf.compare(np.full(3, 1e-3), np.zeros(3))[0]
    assert conf.compare(np.array([np.nan, np.inf, 1.0]), np.array([np.nan, np.inf, 1.0]))[0]
    assert not conf.compare(np.array([np.inf, 1.0]), np.array([-np.inf, 1.0]))[0]
    assert conf.compare(np.array([1, 2], np.int64), np.array([1, 2], np.int32))[0]
    assert not conf.compare(np.array([1, 3], np.int64), np.array([1, 2], np.int64))[0]
    assert conf.compare(np.array([True, False]), np.array([True, False]))[0]
    assert conf.compare(np.zeros((0, 3), np.float32), np.zeros((0, 3)))[0]
    # half references: lt2c's float32 result within the half type's own rounding
    h = np.linspace(1, 2, 50).astype(np.float16)
    assert conf.compare(h.astype(np.float32) * 1.001, h)[0]
    assert not conf.compare(h.astype(np.float32) * 1.004, h)[0]


def test_claimed_ops_match_importer():
    want = conf.claimed_ops_text()
    assert conf.CLAIMED_FILE.read_text() == want, (
        "tests/conformance/claimed_ops.txt is out of date with frontend/src/ops/*.rs: "
        "run `PYTHONPATH=python .venv/bin/python -m lt2.conformance --sync-claimed`")


def test_claimed_and_must_pass_lists():
    claimed = set(conf.read_list(conf.CLAIMED_FILE))
    must = set(conf.read_list(conf.MUST_PASS_FILE))
    assert {"Add", "MatMul", "LinearAttention", "Loop"} <= claimed
    assert must <= claimed, f"must-pass ops not claimed: {sorted(must - claimed)}"


@pytest.mark.skipif(not LT2C.exists(), reason=f"lt2c not built ({LT2C})")
def test_conformance_no_regressions():
    cmd = [sys.executable, "-m", "lt2.conformance", "--lt2c", str(LT2C), "--check-expected",
           "--list-failures", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(conf.REPO / "python")}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=conf.REPO, env=env)
    out = p.stdout + p.stderr
    lines = out.strip().splitlines()
    assert lines and lines[-1].startswith("conformance: "), out[-4000:]
    problems = [ln for ln in lines if ln.startswith(("REGRESSION", "MUST-PASS"))]
    assert p.returncode == 0, "\n".join(problems) or out[-4000:]
