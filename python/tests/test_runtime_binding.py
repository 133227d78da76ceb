"""The runtime from Python (`lt2.runtime`, ctypes over `liblt2_capi.so`): greedy generation
through the binding picks the numpy oracle's tokens with its logits, a batch of two prompts
prefills and decodes like two single ones, and bad input raises Lt2Error with the runtime's
message. Skipped when the library or lt2c is not built."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from lt2 import runtime
from test_generate import FIXTURE, LT2C, numpy_greedy

ROOT = Path(__file__).resolve().parents[2]
LIB = runtime._library_path()

pytestmark = pytest.mark.skipif(not (LIB.exists() and LT2C.exists()), reason="liblt2_capi.so or lt2c not built (cargo build --release)")


@pytest.fixture(scope="module")
def model_bin(tmp_path_factory):
    out = tmp_path_factory.mktemp("binding") / "m.bin"
    subprocess.run([str(LT2C), str(FIXTURE), "-o", str(out), "--no-kernels"], check=True, capture_output=True)
    return out


def test_greedy_generation_matches_the_numpy_oracle(model_bin):
    m = runtime.Model(model_bin, device="cpu")
    assert m.device.startswith("cpu")
    assert m.vocab == 256
    prompt, n = [7, 100, 3, 250, 42], 10
    want_tokens, want_logits = numpy_greedy(prompt, n)
    s = m.session(max_context=len(prompt) + n)
    assert not s.decode_recorded
    logits = s.prefill([prompt])[0]
    got_tokens, got_logits = [], []
    for i in range(n):
        got_logits.append(logits.copy())
        got_tokens.append(int(np.argmax(logits)))
        if i + 1 < n:
            logits = s.decode([got_tokens[-1]])[0]
    assert got_tokens == want_tokens
    err = np.linalg.norm(np.array(got_logits) - want_logits) / np.linalg.norm(want_logits)
    assert err < 1e-4, err
    assert m.generate(prompt, n) == want_tokens


def test_a_batch_decodes_like_its_sequences(model_bin):
    m = runtime.Model(model_bin, device="cpu")
    a, b = [5, 6, 7, 8], [200, 1, 2, 3]
    batch = m.session(16)
    both = batch.prefill([a, b])
    nxt = batch.decode([9, 10])
    for i, (p, t) in enumerate([(a, 9), (b, 10)]):
        single = m.session(16)
        np.testing.assert_allclose(both[i], single.prefill([p])[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(nxt[i], single.decode([t])[0], rtol=1e-5, atol=1e-5)


def test_prompts_of_different_lengths_decode_like_their_sequences(model_bin):
    m = runtime.Model(model_bin, device="cpu")
    prompts = [[5, 6, 7, 8], [200, 1], [9, 10, 11, 12], [42]]
    batch = m.session(16)
    first = batch.prefill(prompts)
    steps = [batch.decode([3, 4, 5, 6]), batch.decode([7, 8, 9, 10])]
    for i, p in enumerate(prompts):
        single = m.session(16)
        np.testing.assert_allclose(first[i], single.prefill([p])[0], rtol=1e-5, atol=1e-5)
        for k, step in enumerate(steps):
            np.testing.assert_allclose(step[i], single.decode([[3, 4, 5, 6], [7, 8, 9, 10]][k][i])[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(runtime.Lt2Error, match="none of them empty"):
        batch.prefill([[1, 2], []])


def test_errors_carry_the_runtimes_message(model_bin, tmp_path):
    with pytest.raises(runtime.Lt2Error, match="expected cpu, cuda or auto"):
        runtime.Model(model_bin, device="tpu")
    with pytest.raises(runtime.Lt2Error, match="missing.bin"):
        runtime.Model(tmp_path / "missing.bin", device="cpu")
    s = runtime.Model(model_bin, device="cpu").session(max_context=4)
    with pytest.raises(runtime.Lt2Error, match="context capacity of 4"):
        s.prefill([[1, 2, 3, 4, 5]])
    s.prefill([[1, 2, 3, 4]])
    with pytest.raises(runtime.Lt2Error, match="context capacity"):
        s.decode([1])
    with pytest.raises(runtime.Lt2Error, match="decode got 2 tokens for 1 sequences"):
        s.decode([1, 2])


def test_early_exit_through_the_binding_matches_the_cli(tmp_path):
    import json

    src = ROOT / "tests" / "fixtures" / "zoo" / "ouro" / "standard_unrolled.onnx"
    model = tmp_path / "ouro.bin"
    subprocess.run([str(LT2C), str(src), "-o", str(model), "--no-kernels"], check=True, capture_output=True)
    prompt, n, threshold = [5, 17, 200, 3, 99, 42], 8, 0.6
    cli = json.loads(subprocess.run(
        [str(LT2C), "generate", str(model), "--prompt-ids", ",".join(map(str, prompt)), "--max-new-tokens", str(n),
         "--device", "cpu", "--json", "--exit-threshold", str(threshold)], check=True, capture_output=True, text=True).stdout)
    m = runtime.Model(model, device="cpu")
    s = m.session(max_context=len(prompt) + n, exit_threshold=threshold)
    logits = s.prefill([prompt])[0]
    tokens = []
    for i in range(n):
        tokens.append(int(np.argmax(logits)))
        if i + 1 < n:
            logits = s.decode([tokens[-1]])[0]
    assert tokens == cli["tokens"]
    assert s.loop_iterations == (cli["loop_iterations_run"], cli["loop_iterations_skipped"])
    assert s.loop_iterations[1] > 0
    # Exact sessions skip nothing.
    exact = m.session(max_context=len(prompt) + 1)
    exact.prefill([prompt])
    assert exact.loop_iterations[1] == 0
    with pytest.raises(runtime.Lt2Error, match=r"outside \(0, 1\]"):
        m.session(exit_threshold=1.5)


def test_sampled_generation_matches_the_cli(model_bin):
    import json

    m = runtime.Model(model_bin, device="cpu")
    prompt, n = [7, 100, 3, 250, 42], 12
    for temperature, top_k, top_p, seed in [(0.8, 0, 1.0, 3), (1.3, 20, 0.9, 11)]:
        cli = json.loads(subprocess.run(
            [str(LT2C), "generate", str(model_bin), "--prompt-ids", ",".join(map(str, prompt)), "--max-new-tokens", str(n),
             "--device", "cpu", "--json", "--temperature", str(temperature), "--top-k", str(top_k), "--top-p", str(top_p), "--seed", str(seed)],
            check=True, capture_output=True, text=True).stdout)
        got = m.generate(prompt, n, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        assert got == cli["tokens"]
        # Sampling, not greedy: some token differs from the argmax path.
        assert got != m.generate(prompt, n)
