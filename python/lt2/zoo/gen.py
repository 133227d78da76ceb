"""Generate the LT2 model zoo: every model of ``lt2.zoo.registry.ZOO`` in every form, golden
inputs/outputs, and the manifest ``tests/models/zoo.toml``.

Usage (from the repo root)::

    PYTHONPATH=python .venv/bin/python -m lt2.zoo.gen [--check] [--size tiny|1.3b] [--out DIR]
                                                     [--models a,b] [--goldens]

``--size tiny`` (default) writes ``tests/fixtures/zoo/<model>/<spelling>_<loop>.onnx``,
``io.npz`` (``input_ids`` [2, 12], seed 1) and ``io_short.npz`` ([1, 3], seed 2) holding the
inputs and every output (``logits``; Ouro also ``exit_probs``), and ``tests/models/zoo.toml``.
Before anything is written the oracles must agree (``||a - b|| / ||b|| < 1e-5``):

- golden: ``onnx.reference.ReferenceEvaluator`` on the ``standard_loop`` form (with the lt2
  and com.microsoft oracles of ``lt2.lt2_ops``/``lt2.ms_ops`` and a scan-stacking Loop);
- ``lt2.reference.looped_forward``: float64 numpy, written from lt2-models.md, not from
  the graph;
- the ReferenceEvaluator on every other form (all forms of a model give the same outputs);
- onnxruntime 1.31.1 CPU on every form it runs, and on ``ms`` forms with GatedDeltaNet
  rewritten into ops it runs (``lt2.ms_ops.substitute_gated_delta_net``).

DSA models also report the smallest gap between the k-th and (k+1)-th indexer score (a
golden closer to a tie than 1e-4 is refused: float32 rounding could flip the selection).

``--check`` rebuilds in memory and compares with the files on disk (models byte for byte,
inputs exactly, outputs to 1e-6 relative, the manifest as text); exit status 1 on a
difference. ``--size 1.3b`` builds the paper's sizes (lt2-models.md section 4; Ouro: 1.4B)
into ``--out`` (default ``target/zoo/1.3b``, never committed): one raw weight file
``<model>.weights`` per model (ONNX external data, float32, shared by all its forms) and the
forms next to it; ``--goldens`` also computes ``io.npz``/``io_short.npz`` there (slow, needs
about three times the weights in memory).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx

from .. import oracles
from ..fixtures import load_npz, save_npz
from ..models import looped
from ..reference import looped_forward
from ..ms_ops import substitute_gated_delta_net
from .registry import ZOO, ZooModel

TOL = 1e-5  # oracle and form agreement when generating
TOL_FP32 = 1e-4  # what the manifest asks of an fp32 implementation
MIN_TIE_GAP = 1e-4
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "zoo"
MANIFEST = REPO_ROOT / "tests" / "models" / "zoo.toml"
BIG_OUT = REPO_ROOT / "target" / "zoo" / "1.3b"

# (file name, seed of default_rng, batch, seq)
INPUTS = [("io.npz", 1, 2, 12), ("io_short.npz", 2, 1, 3)]
GOLDEN_FORM = "standard_loop.onnx"


class OracleMismatch(AssertionError):
    """Two oracles (or two forms) disagree by more than ``TOL``."""


def input_ids(seed: int, batch: int, seq: int, vocab: int) -> np.ndarray:
    """Fixed-seed token ids ``[batch, seq]`` (int64) in ``[0, vocab)``."""
    return np.random.default_rng(seed).integers(0, vocab, (batch, seq)).astype(np.int64)


def output_names(cfg) -> list[str]:
    return ["logits", "exit_probs"] if cfg.exit_gate else ["logits"]


def build_forms(zm: ZooModel, size: str = "tiny", weights=None, external_data: str | None = None) -> dict[str, onnx.ModelProto]:
    """Every form of ``zm`` (file name -> ModelProto), from one weights dict."""
    cfg = zm.config(size)
    weights = looped.make_weights(cfg) if weights is None else weights
    out = {}
    for f in zm.forms:
        out[f.file] = looped.build_model(
            cfg, weights, f.unrolled, spelling=f.spelling, graph_name=f"{zm.name}_{f.spelling}_{f.loop_form}",
            producer_name="lt2.zoo", doc_string=f"{zm.name} ({zm.family}, {size}): {zm.description}",
            external_data=external_data,
        )
    return out


def ops_of(model: onnx.ModelProto) -> list[str]:
    """Sorted ``op`` / ``domain::op`` names used anywhere in ``model`` (Loop bodies included)."""
    found = set()

    def walk(g):
        for n in g.node:
            found.add(f"{n.domain}::{n.op_type}" if n.domain else n.op_type)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)

    walk(model.graph)
    return sorted(found)


def opsets_of(model: onnx.ModelProto) -> list[str]:
    """``domain:version`` of each opset import (``ai.onnx`` for the default domain)."""
    return [f"{o.domain or 'ai.onnx'}:{o.version}" for o in model.opset_import]


def _ort_reason(msg: str) -> str:
    if "lt2:" in msg:
        return "onnxruntime has no lt2 domain (lt2::LightningIndexer, lt2::SparseAttention)"
    if "left_window_size" in msg:
        return "onnxruntime 1.31.1's Attention does not know Attention-25's left_window_size/right_window_size"
    if "GatedDeltaNet" in msg:
        return ("onnxruntime 1.31.1 has no CPU kernel for com.microsoft::GatedDeltaNet (CUDA/WebGPU only); checked with "
                "GatedDeltaNet rewritten into LinearAttentionGate + com.microsoft::LinearAttention")
    return msg.strip().splitlines()[0][:200]


def check_model(zm: ZooModel, forms: dict, weights: dict, size: str = "tiny", verbose: bool = True, use_ort: bool = True):
    """Run every oracle on every form; returns ``(io_files, report)``.

    ``io_files``: file name -> arrays (inputs and golden outputs). ``report``: ``errors``
    (``"<io>: a vs b"`` -> relative error), ``onnxruntime`` (form -> ``(status, note)``,
    status ``runs`` / ``runs_substituted`` / ``fails``), ``tie_gap`` (DSA only).
    Raises ``OracleMismatch`` when any error reaches ``TOL``.
    """
    cfg = zm.config(size)
    names = output_names(cfg)
    errors: dict[str, float] = {}
    ort_status: dict[str, tuple[str, str]] = {}
    io_files = {}
    gaps = []
    for fname, seed, batch, seq in INPUTS:
        ids = input_ids(seed, batch, seq, cfg.vocab)
        feeds = {"input_ids": ids}
        golden = dict(zip(names, oracles.run_reference(forms[GOLDEN_FORM], feeds)))
        for k, v in golden.items():
            if v.dtype != np.float32 or not np.isfinite(v).all():
                raise OracleMismatch(f"{zm.name} {fname}: golden {k} has dtype {v.dtype} or non-finite values")
        stats = []
        fwd = looped_forward(weights, ids, cfg, stats=stats)
        gaps += [g for g in stats if np.isfinite(g)]

        def cmp(what, got: dict, want: dict):
            for k in names:
                errors[f"{fname}: {what} [{k}]"] = oracles.rel_err(got[k], want[k])

        cmp(f"reference({GOLDEN_FORM}) vs numpy", golden, fwd)
        for form, model in forms.items():
            if form != GOLDEN_FORM:
                cmp(f"reference({form}) vs reference({GOLDEN_FORM})", dict(zip(names, oracles.run_reference(model, feeds))), golden)
            if not use_ort:
                continue
            try:
                got = dict(zip(names, oracles.run_onnxruntime(model, feeds)))
                status = ("runs", "")
            except Exception as e:  # noqa: BLE001 (onnxruntime raises several types)
                status = ("fails", _ort_reason(str(e)))
                got = None
                if "GatedDeltaNet" in str(e):
                    got = dict(zip(names, oracles.run_onnxruntime(substitute_gated_delta_net(model), feeds)))
                    status = ("runs_substituted", status[1])
            prev = ort_status.setdefault(form, status)
            if prev != status:
                raise OracleMismatch(f"{zm.name} {form}: onnxruntime status differs between inputs: {prev} vs {status}")
            if got is not None:
                cmp(f"onnxruntime({form}) vs reference({GOLDEN_FORM})", got, golden)
                cmp(f"onnxruntime({form}) vs numpy", got, fwd)
        io_files[fname] = {"input_ids": ids, **golden}
    report = {"errors": errors, "onnxruntime": ort_status, "tie_gap": min(gaps) if gaps else None}
    if verbose:
        worst = max(errors.items(), key=lambda kv: kv[1])
        print(f"  {zm.name}: {len(errors)} comparisons, worst {worst[1]:.2e} ({worst[0]})"
              + (f", smallest DSA tie gap {report['tie_gap']:.3g}" if gaps else ""))
    bad = {k: v for k, v in errors.items() if not v < TOL}
    if bad:
        raise OracleMismatch(f"{zm.name}: oracles disagree (tolerance {TOL}): {bad}")
    if gaps and min(gaps) < MIN_TIE_GAP:
        raise OracleMismatch(f"{zm.name}: a DSA top-k selection is within {min(gaps):.2e} of a tie; change the seed")
    return io_files, report


def build_all(size: str = "tiny", models=None, verbose: bool = True):
    """Build and cross-check every selected zoo model. Returns ``(files, reports)``:
    ``files`` maps ``"<model>/<file>"`` -> bytes or arrays, ``reports`` model -> report."""
    files, reports = {}, {}
    for zm in ZOO:
        if models and zm.name not in models:
            continue
        cfg = zm.config(size)
        w = looped.make_weights(cfg)
        forms = build_forms(zm, size, w)
        io_files, rep = check_model(zm, forms, w, size, verbose)
        rep["forms"] = {f: {"ops": ops_of(m), "opsets": opsets_of(m)} for f, m in forms.items()}
        rep["n_params"] = looped.n_params(w)
        for f, m in forms.items():
            files[f"{zm.name}/{f}"] = m.SerializeToString()
        for f, arrays in io_files.items():
            files[f"{zm.name}/{f}"] = arrays
        reports[zm.name] = rep
    return files, reports


# --------------------------------------------------------------------------- manifest


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        r = repr(v)
        return r if any(c in r for c in ".en") else r + ".0"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    raise TypeError(type(v))


def _config_summary(cfg) -> dict:
    import dataclasses

    d = {}
    for f in dataclasses.fields(cfg):
        d[f.name] = getattr(cfg, f.name)
    d["gdn_v_heads"] = cfg.gdn_hv
    return d


def manifest_text(reports: dict, size: str = "tiny", fixtures_dir: str = "tests/fixtures/zoo") -> str:
    """``tests/models/zoo.toml``: one ``[[model]]`` table per model with its config, io files,
    oracles and ``[[model.form]]`` tables (file, loop form, spelling, ops, onnxruntime)."""
    lines = [
        "# LT2 model zoo manifest. Generated by `PYTHONPATH=python .venv/bin/python -m lt2.zoo.gen`; do not edit.",
        "# Each [[model]] lists its forms ([[model.form]]); every form of a model computes the same outputs.",
        "# io files hold `input_ids` (int64) and every graph output (float32 goldens) under the output's name.",
        "# Goldens: onnx.reference.ReferenceEvaluator (onnx 1.23.2) on the golden form, cross-checked before writing",
        f"# (relative error ||a - b|| / ||b|| < {TOL}) against the oracles in `confirmed_by` and against every other form.",
        "# onnxruntime: runs | runs_substituted (ms forms: GatedDeltaNet rewritten into ops onnxruntime 1.31.1 CPU runs) | fails.",
        "",
        "version = 1",
        f"size = {_toml(size)}",
        f"fixtures = {_toml(fixtures_dir)}",
        f"tolerance_fp32 = {_toml(TOL_FP32)}",
        'tolerance_metric = "relative_l2"',
        "",
    ]
    for zm in ZOO:
        if zm.name not in reports:
            continue
        rep = reports[zm.name]
        cfg = zm.config(size)
        ort_runs = [f for f, (st, _) in rep["onnxruntime"].items() if st != "fails"]
        confirmed = ["numpy float64 forward (lt2.reference.looped_forward)", "onnx.reference.ReferenceEvaluator on every form"]
        if ort_runs:
            confirmed.append("onnxruntime 1.31.1 CPU on " + ", ".join(sorted(ort_runs)))
        lines += [
            "[[model]]",
            f"name = {_toml(zm.name)}",
            f"family = {_toml(zm.family)}",
            f"description = {_toml(zm.description)}",
            f"dir = {_toml(fixtures_dir + '/' + zm.name)}",
            f"inputs = {_toml(['input_ids'])}",
            f"outputs = {_toml(output_names(cfg))}",
            f"io = {_toml([n for n, *_ in INPUTS])}",
            f"io_shapes = {_toml([[b, s] for _, _, b, s in INPUTS])}",
            f"golden_form = {_toml(GOLDEN_FORM)}",
            'golden_oracle = "onnx.reference.ReferenceEvaluator"',
            f"confirmed_by = {_toml(confirmed)}",
            f"tolerance = {_toml(TOL_FP32)}",
            f"n_params = {rep['n_params']}",
            "",
            "[model.config]",
        ]
        for k, v in _config_summary(cfg).items():
            lines.append(f"{k} = {_toml(v)}")
        lines.append("")
        for f in zm.forms:
            st, note = rep["onnxruntime"].get(f.file, ("unchecked", ""))
            lines += [
                "[[model.form]]",
                f"file = {_toml(f.file)}",
                f"loop_form = {_toml(f.loop_form)}",
                f"spelling = {_toml(f.spelling)}",
                f"onnxruntime = {_toml(st)}",
            ]
            if note:
                lines.append(f"onnxruntime_note = {_toml(note)}")
            lines += [
                f"opset_imports = {_toml(rep['forms'][f.file]['opsets'])}",
                f"ops = {_toml(rep['forms'][f.file]['ops'])}",
                "",
            ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- writing / checking


def write(files: dict, out: Path) -> None:
    for name, content in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            save_npz(path, **content)


def check(files: dict, out: Path, rtol: float = 1e-6) -> list[str]:
    """Differences between freshly built ``files`` and the ones under ``out``."""
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
            if list(old) != list(content):
                problems.append(f"{path} keys {list(old)} != {list(content)}")
                continue
            for k, v in content.items():
                o = old[k]
                if o.dtype != v.dtype or o.shape != v.shape:
                    problems.append(f"{path}: {k} dtype/shape {o.dtype}{o.shape} != {v.dtype}{v.shape}")
                elif k == "input_ids":
                    if not np.array_equal(o, v):
                        problems.append(f"{path}: input_ids differ")
                elif (e := oracles.rel_err(o, v)) > rtol:
                    problems.append(f"{path}: {k} differs (rel err {e:.2e})")
    return problems


def build_big(out: Path, models=None, goldens: bool = False, verbose: bool = True) -> None:
    """Write the big sizes: ``<out>/<model>/<model>.weights`` + every form (external data)."""
    for zm in ZOO:
        if models and zm.name not in models:
            continue
        cfg = zm.config("1.3b")
        d = out / zm.name
        d.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        w = looped.make_weights(cfg)
        loc = f"{zm.name}.weights"
        size = looped.write_external_data(w, d / loc)
        forms = build_forms(zm, "1.3b", w, external_data=loc)
        for f, m in forms.items():
            onnx.save_model(m, str(d / f))
        onnx.checker.check_model(str(d / GOLDEN_FORM), full_check=True)
        if verbose:
            print(f"  {zm.name} ({zm.big_label}): {looped.n_params(w) / 1e9:.3f}B params, {size / 2**30:.2f} GiB weights, "
                  f"{len(forms)} forms, {time.time() - t0:.0f} s")
        del w, forms
        if goldens:
            names = output_names(cfg)
            feeds = [(fname, input_ids(seed, batch, seq, cfg.vocab)) for fname, seed, batch, seq in INPUTS]
            refs = {fname: dict(zip(names, oracles.run_reference(str(d / GOLDEN_FORM), {"input_ids": ids}))) for fname, ids in feeds}
            wm = load_external_weights(d / GOLDEN_FORM)  # memory-mapped: the numpy forward casts one weight at a time
            for fname, ids in feeds:
                fwd = looped_forward(wm, ids, cfg)
                for k in names:
                    e = oracles.rel_err(refs[fname][k], fwd[k])
                    print(f"    {fname}: reference vs numpy [{k}] {e:.2e}")
                    if not e < TOL:
                        raise OracleMismatch(f"{zm.name} {fname}: reference vs numpy {e:.2e}")
                save_npz(d / fname, input_ids=ids, **refs[fname])


def load_external_weights(model_path) -> dict[str, np.ndarray]:
    """The float32 initializers of a model saved with external data, memory-mapped (read-only)."""
    model_path = Path(model_path)
    m = onnx.load(str(model_path), load_external_data=False)
    out = {}
    for t in m.graph.initializer:
        info = {e.key: e.value for e in t.external_data}
        shape = tuple(t.dims)
        out[t.name] = np.memmap(model_path.parent / info["location"], dtype="<f4", mode="r", offset=int(info.get("offset", 0)),
                                shape=shape)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="tiny", choices=["tiny", "1.3b"], help="tiny (committed) or the paper's sizes")
    ap.add_argument("--out", type=Path, default=None, help=f"output folder (default {DEFAULT_OUT} / {BIG_OUT})")
    ap.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing (tiny)")
    ap.add_argument("--models", default="", help="comma-separated zoo model names (default: all)")
    ap.add_argument("--goldens", action="store_true", help="--size 1.3b: also compute io.npz/io_short.npz (slow)")
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m] or None
    if args.size != "tiny":
        if args.check:
            print("error: --check is for --size tiny", file=sys.stderr)
            return 2
        out = args.out or BIG_OUT
        print(f"zoo {args.size}: writing to {out}")
        build_big(out, models, args.goldens)
        return 0
    out = args.out or DEFAULT_OUT
    print("zoo tiny: building every form and cross-checking the oracles")
    try:
        files, reports = build_all("tiny", models)
    except OracleMismatch as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    manifest = manifest_text(reports)
    manifest_path = MANIFEST if args.out is None else out / "zoo.toml"
    if args.check:
        problems = check(files, out)
        if models is None:
            if not manifest_path.exists() or manifest_path.read_text() != manifest:
                problems.append(f"{manifest_path} differs from a fresh build")
            on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
            extra = sorted(on_disk - set(files) - {"zoo.toml"})
            if extra:
                problems.append(f"files not made by the generator: {extra}")
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        print("check: ok" if not problems else "check: FAILED")
        return 1 if problems else 0
    write(files, out)
    if models is None:
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        manifest_path.write_text(manifest)
    total = sum((out / n).stat().st_size for n in files)
    print(f"wrote {len(files)} files to {out} ({total} bytes)" + (f" and {manifest_path}" if models is None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
