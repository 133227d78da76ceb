"""Damaged models never crash lt2c: zoo models with seeded random damage (attributes set to odd
values, inputs dropped or rewired, op types swapped, outputs added, initializer dims changed; or
raw bytes overwritten) either compile or fail with an `error:` line, and what compiles runs on
the golden inputs or fails the same way. A panic (exit 101) or a signal is a bug: the first one
found was Concat over inputs of different ranks. Skipped when lt2c is not built."""

import random
import subprocess
from pathlib import Path

import onnx
import pytest

from test_generate import LT2C

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "tests" / "fixtures" / "zoo").glob("*/*.onnx"))
ODD_OPS = ["Add", "MatMul", "Reshape", "Gather", "Softmax", "Transpose", "Attention", "LinearAttention", "Loop", "TopK", "Concat", "Slice"]

pytestmark = pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built")


def _nodes(g):
    out = []
    for n in g.node:
        out.append(n)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                out += _nodes(a.g)
    return out


def _damage(m: onnx.ModelProto, rng: random.Random):
    nodes = _nodes(m.graph)
    for _ in range(rng.randint(1, 3)):
        n, k = rng.choice(nodes), rng.randrange(6)
        if k == 0 and n.attribute:
            a = rng.choice(n.attribute)
            if a.type == onnx.AttributeProto.INT:
                a.i = rng.choice([-1, 0, 1, 2, 3, 7, -5, 1 << 40])
            elif a.type == onnx.AttributeProto.INTS and len(a.ints):
                a.ints[rng.randrange(len(a.ints))] = rng.choice([-1, 0, 5, -9])
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = rng.choice([0.0, -1.0, float("nan")])
        elif k == 1 and n.input:
            del n.input[rng.randrange(len(n.input))]
        elif k == 2 and n.input:
            n.input[rng.randrange(len(n.input))] = rng.choice(list(rng.choice(nodes).output) or [""])
        elif k == 3:
            n.op_type = rng.choice(ODD_OPS)
        elif k == 4 and n.output:
            n.output.append("extra_out")
        elif k == 5 and m.graph.initializer:
            t = rng.choice(m.graph.initializer)
            if len(t.dims):
                t.dims[rng.randrange(len(t.dims))] = rng.choice([0, 1, 3, 1000])


def _check(proc, what):
    assert proc.returncode in (0, 1), f"{what}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
    if proc.returncode == 1:
        assert "error:" in proc.stderr and "panicked" not in proc.stderr, f"{what}: {proc.stderr[-2000:]}"


@pytest.mark.parametrize("seed", range(4))
def test_damaged_models_fail_cleanly(tmp_path, seed):
    rng = random.Random(seed)
    for i in range(30):
        src = rng.choice(FILES)
        m = onnx.load(src)
        if i % 5 == 4:
            data = bytearray(m.SerializeToString())
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data) // 3)] = rng.randrange(256)
        else:
            _damage(m, rng)
            data = m.SerializeToString()
        path, out = tmp_path / "m.onnx", tmp_path / "m.bin"
        path.write_bytes(bytes(data))
        what = f"seed {seed} round {i} ({src.parent.name}/{src.name})"
        p = subprocess.run([str(LT2C), str(path), "-o", str(out), "--no-kernels"], capture_output=True, text=True, timeout=120)
        _check(p, what)
        if p.returncode == 0:
            r = subprocess.run([str(LT2C), "run", str(out), "--inputs", str(src.parent / "io.npz"), "--outputs", str(tmp_path / "o.npz"), "--device", "cpu"],
                               capture_output=True, text=True, timeout=120)
            _check(r, what + " run")


def test_the_concat_rank_panic_is_an_error(tmp_path):
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Concat", ["a", "b"], ["y"], axis=2)],
        "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 2, 3]), helper.make_tensor_value_info("b", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    path = tmp_path / "c.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]), path)
    p = subprocess.run([str(LT2C), str(path), "-o", str(tmp_path / "c.bin"), "--no-kernels"], capture_output=True, text=True)
    assert p.returncode == 1 and "different ranks (3 and 1)" in p.stderr, p.stderr
