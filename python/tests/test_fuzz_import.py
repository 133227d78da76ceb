"""Robustness: mutated zoo models (an input dropped, an attribute changed, a graph input's rank
changed, an operand rewired, an initializer resized) must give lt2c a clear error or a run,
never a panic or a crash. Seeded, so a failure reproduces."""

import glob
import random
import subprocess
from pathlib import Path

import onnx
import pytest

ROOT = Path(__file__).resolve().parents[2]
LT2C = ROOT / "target" / "release" / "lt2c"


def _nodes(g):
    for n in g.node:
        yield n
        for a in n.attribute:
            if a.g.node:
                yield from _nodes(a.g)


def _mutate(m, rng):
    nodes = list(_nodes(m.graph))
    n = rng.choice(nodes)
    kind = rng.randrange(5)
    if kind == 0 and n.input:
        n.input[rng.randrange(len(n.input))] = ""
    elif kind == 1 and n.attribute:
        a = rng.choice(n.attribute)
        if a.type == onnx.AttributeProto.INT:
            a.i = rng.choice([-5, -1, 0, 1, 3, 999])
        elif a.type == onnx.AttributeProto.INTS and a.ints:
            a.ints[rng.randrange(len(a.ints))] = rng.choice([-7, 0, 5, 99])
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = rng.choice([0.0, -1.0, float("inf")])
        elif a.type == onnx.AttributeProto.STRING:
            a.s = rng.choice([b"", b"bogus"])
    elif kind == 2:
        d = m.graph.input[0].type.tensor_type.shape
        if rng.random() < 0.5 and len(d.dim):
            d.dim.pop()
        else:
            d.dim.add().dim_value = 3
    elif kind == 3 and n.input:
        other = rng.choice(nodes)
        if other.output:
            n.input[rng.randrange(len(n.input))] = rng.choice(list(other.output))
    elif kind == 4 and m.graph.initializer:
        t = rng.choice(m.graph.initializer)
        if len(t.dims) > 0:
            t.dims[0] = max(1, t.dims[0] + rng.choice([-1, 1]))


@pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built")
def test_mutated_models_never_crash_lt2c(tmp_path):
    rng = random.Random(20261127)
    files = sorted(glob.glob(str(ROOT / "tests/fixtures/zoo/*/*.onnx")))
    assert files
    for i in range(40):
        f = rng.choice(files)
        m = onnx.load(f)
        _mutate(m, rng)
        src, binp = tmp_path / "m.onnx", tmp_path / "m.bin"
        src.write_bytes(m.SerializeToString())
        r = subprocess.run([str(LT2C), str(src), "-o", str(binp)], capture_output=True, text=True, timeout=60)
        out = r.stderr
        assert r.returncode in (0, 1), f"case {i} ({f}): exit {r.returncode}: {out[-500:]}"
        if r.returncode == 0:
            io = str(Path(f).parent / "io.npz")
            r2 = subprocess.run([str(LT2C), "run", str(binp), "--inputs", io, "--outputs", str(tmp_path / "o.npz"), "--device", "cpu"],
                                capture_output=True, text=True, timeout=60)
            assert r2.returncode in (0, 1), f"case {i} ({f}): run exit {r2.returncode}: {r2.stderr[-500:]}"
            out += r2.stderr
        assert "panicked" not in out, f"case {i} ({f}): {out[-500:]}"
