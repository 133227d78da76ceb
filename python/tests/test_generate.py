"""Greedy `lt2c generate` (prefill + incremental decode with compiler-derived caches) picks the
same tokens as greedy decoding by the numpy oracle, which re-runs the whole sequence every step
(issue 4). Skipped when the lt2c binary is not built."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lt2 import reference as R
from lt2.models import example

ROOT = Path(__file__).resolve().parents[2]
LT2C = ROOT / "target" / "release" / "lt2c"
FIXTURE = ROOT / "tests" / "fixtures" / "lt2_tiny" / "model.onnx"


def numpy_greedy(prompt, n):
    cfg = example.ExampleConfig()
    w = example.make_weights(cfg)
    ids = list(prompt)
    logits = []
    for _ in range(n):
        out = R.lt2_forward(w, np.array([ids], dtype=np.int64), cfg)[0, -1]
        logits.append(out)
        ids.append(int(np.argmax(out)))
    return ids[len(prompt):], np.array(logits)


@pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built (cargo build --release)")
def test_greedy_generate_matches_numpy_oracle(tmp_path):
    model = tmp_path / "m.bin"
    subprocess.run([str(LT2C), str(FIXTURE), "-o", str(model)], check=True, capture_output=True)
    prompt = [7, 100, 3, 250, 42]
    n = 10
    logits_file = tmp_path / "logits.npz"
    r = subprocess.run(
        [str(LT2C), "generate", str(model), "--prompt-ids", ",".join(map(str, prompt)), "--max-new-tokens", str(n),
         "--device", "cpu", "--json", "--logits-out", str(logits_file)],
        check=True, capture_output=True, text=True,
    )
    out = json.loads(r.stdout)
    assert set(out) == {"tokens", "prefill_ms", "decode_ms_per_token", "decode_ms_steady", "decode_warmup_ms", "device", "decode_recorded"}
    assert out["decode_ms_steady"] > 0 and len(out["decode_warmup_ms"]) == 1  # CPU: the first step only
    assert out["device"] == "cpu"
    assert out["decode_recorded"] is False  # the CPU backend runs steps op by op
    want, want_logits = numpy_greedy(prompt, n)
    assert out["tokens"] == want
    got_logits = np.load(logits_file)["logits"]
    assert got_logits.shape == (n, 256)
    err = np.linalg.norm(got_logits - want_logits) / np.linalg.norm(want_logits)
    assert err < 1e-4, err


@pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built (cargo build --release)")
def test_prompt_file_gives_the_tokens_of_prompt_ids(tmp_path):
    """`--prompt-file` (prompts longer than a command line holds) reads ids separated by commas
    or whitespace; a bad token is an error naming the file."""
    model = tmp_path / "m.bin"
    subprocess.run([str(LT2C), str(FIXTURE), "-o", str(model)], check=True, capture_output=True)
    prompt = [7, 100, 3, 250, 42, 9]
    (tmp_path / "ids.txt").write_text("7, 100 3\n250,42\t9\n")
    gen = [str(LT2C), "generate", str(model), "--max-new-tokens", "6", "--device", "cpu", "--json"]
    by_file = subprocess.run(gen + ["--prompt-file", str(tmp_path / "ids.txt")], check=True, capture_output=True, text=True)
    by_ids = subprocess.run(gen + ["--prompt-ids", ",".join(map(str, prompt))], check=True, capture_output=True, text=True)
    assert json.loads(by_file.stdout)["tokens"] == json.loads(by_ids.stdout)["tokens"] == numpy_greedy(prompt, 6)[0]
    (tmp_path / "bad.txt").write_text("1,2,x")
    bad = subprocess.run(gen + ["--prompt-file", str(tmp_path / "bad.txt")], capture_output=True, text=True)
    assert bad.returncode != 0 and "`x` is not a token id" in bad.stderr and "bad.txt" in bad.stderr


@pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built")
def test_generate_past_capacity_is_a_clear_error(tmp_path):
    model = tmp_path / "m.bin"
    subprocess.run([str(LT2C), str(FIXTURE), "-o", str(model)], check=True, capture_output=True)
    r = subprocess.run([str(LT2C), "generate", str(model), "--prompt-ids", "1,2,3", "--max-new-tokens", "8",
                        "--max-context", "6", "--device", "cpu"], capture_output=True, text=True)
    assert r.returncode != 0
    assert "context capacity of 6" in r.stderr and "panicked" not in r.stderr


OURO = ROOT / "tests" / "fixtures" / "zoo" / "ouro" / "standard_loop.onnx"


def numpy_greedy_early_exit(cfg, w, prompt, n, threshold):
    """Greedy decoding by the numpy oracle under Ouro's early exit: the prompt is one chunk,
    each new token another (lt2c's prefill and decode steps); returns tokens, logits and the
    smallest distance of any cumulative exit probability from the threshold."""
    from lt2.models import looped  # noqa: F401 (cfg type)
    ids = list(prompt)
    chunks = [len(prompt)]
    logits = []
    for _ in range(n):
        out = R.looped_forward(w, np.array([ids], dtype=np.int64), cfg, exit_threshold=threshold, chunks=chunks)
        logits.append(out["logits"][0, -1])
        ids.append(int(np.argmax(logits[-1])))
        chunks.append(1)
    probs = R.looped_forward(w, np.array([ids], dtype=np.int64), cfg)["exit_probs"]
    margin = np.abs(np.cumsum(probs, axis=-1)[..., :-1] - threshold).min()
    return ids[len(prompt):], np.array(logits), margin


@pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built")
@pytest.mark.parametrize("threshold", [0.3, 0.6])
# The Loop export computes each loop's exit gate in the loop; torch's unrolled export computes
# them all after the copies (reroll-loops, then sink-into-loop, put them back in the loop).
@pytest.mark.parametrize("form", ["standard_loop.onnx", "standard_unrolled.onnx", "decomposed_unrolled.onnx"])
def test_ouro_early_exit_generate_matches_numpy_oracle(tmp_path, threshold, form):
    from lt2.models import looped as L
    from lt2.zoo import get
    cfg = get("ouro").tiny
    w = L.make_weights(cfg)
    model = tmp_path / "ouro.bin"
    subprocess.run([str(LT2C), str(OURO.parent / form), "-o", str(model)], check=True, capture_output=True)
    prompt, n = [5, 17, 200, 3, 99, 42], 8
    logits_file = tmp_path / "logits.npz"
    r = subprocess.run(
        [str(LT2C), "generate", str(model), "--prompt-ids", ",".join(map(str, prompt)), "--max-new-tokens", str(n),
         "--device", "cpu", "--json", "--logits-out", str(logits_file), "--exit-threshold", str(threshold)],
        check=True, capture_output=True, text=True,
    )
    out = json.loads(r.stdout)
    want, want_logits, margin = numpy_greedy_early_exit(cfg, w, prompt, n, threshold)
    assert margin > 1e-4, f"a cumulative exit probability lies within {margin} of the threshold; pick another"
    assert out["tokens"] == want
    got = np.load(logits_file)["logits"]
    err = np.linalg.norm(got - want_logits) / np.linalg.norm(want_logits)
    assert err < 1e-4, err
    assert out["loop_iterations_skipped"] > 0, out
    # The exact model differs: early exit changed something.
    exact, _ = numpy_greedy_exact_ouro(cfg, w, prompt, n)
    assert not np.allclose(exact, want_logits)


def numpy_greedy_exact_ouro(cfg, w, prompt, n):
    ids = list(prompt)
    logits = []
    for _ in range(n):
        logits.append(R.looped_forward(w, np.array([ids], dtype=np.int64), cfg)["logits"][0, -1])
        ids.append(int(np.argmax(logits[-1])))
    return np.array(logits), ids


@pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built")
def test_exit_threshold_errors_are_clear(tmp_path):
    model = tmp_path / "m.bin"
    subprocess.run([str(LT2C), str(FIXTURE), "-o", str(model)], check=True, capture_output=True)
    r = subprocess.run([str(LT2C), "generate", str(model), "--prompt-ids", "1,2", "--exit-threshold", "0.5", "--device", "cpu"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "needs an exit gate" in r.stderr and "panicked" not in r.stderr
    r = subprocess.run([str(LT2C), "generate", str(model), "--prompt-ids", "1,2", "--exit-threshold", "1.5", "--device", "cpu"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "outside (0, 1]" in r.stderr


@pytest.mark.skipif(not LT2C.exists(), reason="target/release/lt2c is not built (cargo build --release)")
def test_warmup_prefills_report_the_cold_prefill_and_keep_the_tokens(tmp_path):
    """`--warmup-prefills N` runs N untimed prefills in sessions of their own first: the tokens and
    logits are those of a plain run, and `--json` adds the first (cold) prefill's time."""
    model = tmp_path / "m.bin"
    subprocess.run([str(LT2C), str(FIXTURE), "-o", str(model)], check=True, capture_output=True)
    runs = []
    for extra in ([], ["--warmup-prefills", "2"]):
        logits_file = tmp_path / f"logits{len(extra)}.npz"
        r = subprocess.run(
            [str(LT2C), "generate", str(model), "--prompt-ids", "7,100,3,250,42", "--max-new-tokens", "6",
             "--device", "cpu", "--json", "--logits-out", str(logits_file)] + extra,
            check=True, capture_output=True, text=True,
        )
        runs.append((json.loads(r.stdout), np.load(logits_file)["logits"]))
    (plain, plain_logits), (warm, warm_logits) = runs
    assert "prefill_cold_ms" not in plain
    assert warm["prefill_cold_ms"] > 0 and warm["prefill_ms"] > 0
    assert warm["tokens"] == plain["tokens"]
    np.testing.assert_array_equal(warm_logits, plain_logits)
