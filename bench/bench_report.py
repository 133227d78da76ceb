"""Turn one or more calls' ``results.jsonl`` (each with ``peaks.json``, ``command.txt`` and
``lt2c_status.txt`` beside it) into the markdown section for bench/RESULTS.md
(``OUT/RESULTS_section.md``) and the decode plot (``OUT/decode_tokens_per_s.png``).

    python bench/bench_report.py [--out DIR] [RESULTS.jsonl | DIR ...]

With no file: ``$BENCH_OUT/results.jsonl``. Several files (the two device calls of run.sh) merge
into one table; every row keeps the floor computed in its own call (with that call's measured
ceilings) and a ``call`` number. A file that is missing is reported and skipped. Kernel rows of
bench_lt2c_kernels.py (systems "lt2c", "lt2c bf16") fill the kernel table's lt2c column of the
row with the same family, kernel and shape.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import bench_common as common


def fmt(x, nd=3):
    if x is None:
        return ""
    if isinstance(x, str):
        return x
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.{nd}g}"


def load_runs(paths):
    """[{path, rows, peaks, cmd, lt2c}] for each existing file (a directory means its
    results.jsonl), duplicates dropped; and the list of problems met."""
    runs, problems, seen = [], [], set()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            p = p / "results.jsonl"
        if not p.exists():
            problems.append(f"{p}: not found, not merged")
            continue
        key = p.resolve()
        if key in seen:
            continue
        seen.add(key)
        rows = []
        for i, line in enumerate(p.read_text().splitlines()):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    problems.append(f"{p}:{i + 1}: not JSON, skipped")

        def side(name):
            f = p.parent / name
            return f.read_text().strip() if f.exists() else ""

        try:
            peaks = json.loads(side("peaks.json") or "{}")
        except json.JSONDecodeError:
            peaks = {}
        n = len(runs) + 1
        for r in rows:
            r["call"] = n
        runs.append({"path": p, "rows": rows, "peaks": peaks, "cmd": side("command.txt"), "lt2c": side("lt2c_status.txt")})
    return runs, problems


def calls_of(rows):
    return ", ".join(str(c) for c in sorted({r.get("call", 1) for r in rows if r}))


def table(rows, cols):
    head = "| " + " | ".join(c[0] for c in cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    body = ["| " + " | ".join(str(c[1](r)).replace("|", "/") for c in cols) + " |" for r in rows]
    return "\n".join([head, sep] + body)


def shape_key(r):
    s = r.get("shape", "")
    nums = [int("".join(ch for ch in t if ch.isdigit()) or 0) for t in s.split()]
    return nums


LT2C_MARK = {"lt2c fp32": "*", "lt2c bf16": "D", "lt2c fp16": "s"}


def plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dec = [r for r in rows if r.get("section") == "e2e" and r.get("row") == "decode" and r.get("tok_s")]
    big = [r for r in rows if r.get("section") == "lt2c" and r.get("system", "").startswith("lt2c") and r.get("tok_s")
           and "(tiny)" not in r.get("model", "")]
    ctxs = sorted({r["ctx"] for r in dec if r.get("ctx")} | {r["ctx"] for r in big if r.get("ctx")}) or [1024, 8192]
    fig, axes = plt.subplots(1, len(ctxs), figsize=(6 * len(ctxs), 4.5), squeeze=False)
    styles = {"eager": "-", "compile": "--"}
    colors = {}
    for ax, ctx in zip(axes[0], ctxs):
        for (model, system) in sorted({(r["model"], r["system"]) for r in dec if r.get("ctx") == ctx}):
            pts = sorted((r["batch"], r["tok_s"]) for r in dec if r.get("ctx") == ctx and r["model"] == model and r["system"] == system)
            col = colors.setdefault(model, f"C{len(colors)}")
            ax.plot([q[0] for q in pts], [q[1] for q in pts], styles.get(system, "-"), marker="o", color=col,
                    label=f"{model}, PyTorch {system}")
        here = [r for r in big if r.get("ctx") == ctx]
        for r in here:
            col = colors.setdefault(r["model"], f"C{len(colors)}")
            nudge = {"lt2c fp32": 0.9, "lt2c bf16": 1.1}.get(r["system"], 1.0)  # side by side at the same batch
            ax.plot([r.get("batch", 1) * nudge], [r["tok_s"]], marker=LT2C_MARK.get(r["system"], "P"), markersize=10, linestyle="none",
                    color=col, markeredgecolor="black", label=f"{r['model']}, {r['system']}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch (sequences)")
        ax.set_ylabel("decode tokens/s (all sequences)")
        note = "lt2c: markers (generate --batch for B > 1)" if here else "lt2c: no 1.3B row at this context"
        ax.set_title(f"decode at {ctx // 1024}K context; {note}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


LT2C_KERNEL_NOTE = (
    "lt2c column: the same kernel and shape in lt2c (`bench/bench_lt2c_kernels.py`), ms and, in brackets, measured / the row's "
    "floor: a one-op ONNX model (LinearAttention-27; Attention-23, with past_key/past_value for decode; lt2::LightningIndexer + "
    "SparseAttention) on seeded random inputs, compiled by the carried lt2c, fp32 in and out (lt2c computes these ops in fp32; "
    "the floors stay bf16's); \"bf16\": attention prefill built with `--dtype bf16` (q, k, v rounded to bf16 in the op, tensor "
    "cores). Time: device time of the op(s) from `LT2C_CUDA_PROFILE=1 lt2c run` (CUDA events, each op alone on the device), "
    "mean of the runs after the first. Timed only after its check against fp64 passed in the same call (Correctness checks); "
    "— = no lt2c row at that shape; shapes lt2c did not time are under Not measured with the reason. Rows of system lt2c: "
    "lt2c shapes without a row of another system.")


def kernel_key(r):
    """(family, kernel, shape) of a kernel row: bench_lt2c_kernels' rows name the kernel they
    stand beside (``kernel``), the others' kernel is their row text before the brackets."""
    return (r.get("model"), r.get("kernel") or r.get("row", "").split(" (")[0], r.get("shape", ""))


def is_lt2c(r):
    return r.get("system", "").startswith("lt2c")


def kernel_rows(ker):
    """The kernel table's rows and {key: [lt2c rows]} for its lt2c column: lt2c rows (fp32, and
    "lt2c bf16") whose kernel and shape another system has go into that row's column; the rest
    stay rows."""
    keys = {kernel_key(r) for r in ker if not is_lt2c(r)}
    lt2c_of = {}
    for r in sorted((r for r in ker if is_lt2c(r) and kernel_key(r) in keys), key=lambda r: r["system"] != "lt2c"):
        lt2c_of.setdefault(kernel_key(r), []).append(r)
    return [r for r in ker if not is_lt2c(r) or kernel_key(r) not in keys], lt2c_of


def lt2c_cell(r, lt2c_of):
    """'ms (ratio x)' of each lt2c build of the row's kernel and shape (the bf16 one marked), or
    why it has none."""
    if is_lt2c(r):
        return ""
    cells = []
    for lt in lt2c_of.get(kernel_key(r), []):
        tag = lt["system"][len("lt2c"):].strip()
        if lt.get("ms"):
            v = f"{fmt(lt['ms'])} ({fmt(lt.get('ratio'))}x)" if lt.get("ratio") else fmt(lt["ms"])
        else:
            v = lt.get("note", "").split(":")[0]
        cells.append(f"{tag} {v}".strip())
    return "; ".join(cells) or "—"


def pick(rows):
    """One timing row per (model, system, row, shape) when calls overlap: a measured row beats an
    unmeasured one, a later call beats an earlier one. Checks and skipped steps all stay."""
    def key(r):
        k = (r.get("section"), r.get("model"), r.get("system"), r.get("row"), r.get("shape"))
        return k if r.get("section") in ("e2e", "kernel", "lt2c") else k + (r.get("call"), id(r))

    best = {}
    for r in rows:
        old = best.get(key(r))
        if old is None or bool(r.get("ms")) >= bool(old.get("ms")):
            best[key(r)] = r
    return [r for r in rows if best.get(key(r)) is r]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*", help="results.jsonl files or their directories (default: $BENCH_OUT/results.jsonl)")
    ap.add_argument("--out", default=None, help="where RESULTS_section.md and the plot go (default: $BENCH_OUT)")
    ap.add_argument("--command", default="", help="(old) the command of a single call, if command.txt is missing")
    ap.add_argument("--lt2c-status", default="", help="(old) lt2c status of a single call, if lt2c_status.txt is missing")
    a = ap.parse_args()
    out_dir = Path(a.out) if a.out else common.OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    runs, problems = load_runs(a.files or [common.OUT / "results.jsonl"])
    for pr in problems:
        print("WARNING:", pr)
    rows = pick([r for run in runs for r in run["rows"]])
    last = max((r.get("t", 0) for r in rows), default=0) or dt.datetime.now(dt.timezone.utc).timestamp()
    now = dt.datetime.fromtimestamp(last, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")  # the last row's time
    cards = sorted({run["peaks"].get("card", "?") for run in runs}) or ["?"]
    p = next((run["peaks"] for run in runs if run["peaks"]), {})
    out = []
    out.append(f"## Benchmark (bench/run.sh), {now}, {' / '.join(cards)}")
    out.append("")
    for i, run in enumerate(runs, 1):
        pk = run["peaks"]
        ts = [r.get("t", 0) for r in run["rows"] if r.get("t")]
        when = dt.datetime.fromtimestamp(max(ts), dt.timezone.utc).strftime("%H:%M UTC") if ts else "?"
        ceil = (f"bf16 matmul 8192³ {pk['matmul_ms_8192']:.3f} ms = {pk['matmul_flops_per_s'] / 1e12:.0f} TFLOP/s, device copy "
                f"1 GiB {pk['copy_ms_1gib']:.3f} ms = {pk['copy_bytes_per_s'] / 1e12:.2f} TB/s (read + write)"
                if pk.get("matmul_flops_per_s") else "not measured (no floors in this call)")
        cmd = run["cmd"] or (a.command if len(runs) == 1 else "") or "?"
        out.append(f"- Call {i} (last row {when}, {pk.get('card', '?')}): `{cmd}`; {len(run['rows'])} rows; ceilings: {ceil}.")
        lt = run["lt2c"] or (a.lt2c_status if len(runs) == 1 else "")
        if lt:
            out.append(f"  lt2c: {lt}")
    for pr in problems:
        out.append(f"- Not merged: {pr}")
    out.append(f"- Versions: torch {p.get('torch', '?')}, triton {p.get('triton', '?')}, flash-linear-attention/fla-core "
               f"{p.get('fla', '?')}, CUDA {p.get('cuda', '?')}, Python {p.get('python', '?')}")
    out.append("- Floor = max(FLOPs / matmul rate, bytes / copy rate), with the ceilings measured in the row's own call; "
               "ratio = measured / floor.")
    out.append("- Weights: random (seeded), generated on the GPU by `bench/bench_model.py:gen_weights` from "
               "`lt2.models.looped.weight_spec` (the zoo's names, shapes and distributions; `lt2.zoo.registry` big configs); "
               "nothing carried.")
    out.append("- PyTorch systems: `bench/bench_model.py`, bf16, the zoo's model function (checked against the ONNX goldens); "
               "the projections of a layer fused into one matmul; GDN through fla's `chunk_gated_delta_rule` "
               "(prefill) and `fused_recurrent_gated_delta_rule` (decode) called as fla 0.6.0's GatedDeltaNet layer calls "
               "them; attention through SDPA (cuDNN allowed for prefill, off for decode); LT2's DSA in plain PyTorch "
               "(indexer, `torch.topk`, gather, attention; no TileLang kernels). `torch.compile(dynamic=True)` wraps the dense "
               "parts of each layer; fla, SDPA and the DSA selection stay eager. Decode: caches filled with random values as "
               "after a prefill of `ctx` tokens, one cache per (loop, layer). Medians of CUDA-event timings after warm-up "
               "(kernels: `triton.testing.do_bench`, at least 3 timed calls).")
    out.append("- lt2c: the carried binary compiles the 1.3B ONNX in the call (fp32, and `--dtype bf16`: products with weights "
               "read bf16 weights and bf16-rounded activations, accumulate in fp32; everything else fp32), each build checked "
               "against PyTorch fp32 on the same weights before it is timed; LT2 Full+GDN is timed in fp32 and bf16, LT2 GDN+DSA "
               "and Ouro in bf16 (their fp32 builds serve the check; their weights are drawn on the CPU and their ONNX and "
               "compiles run in the background beside call 2's GDN kernel step). Timings are lt2c's own host wall clock "
               "(`generate --json`), medians over processes; decode is the mean of the steps after the first (one-time set-up "
               "excluded) where the binary reports it, B > 1 through `generate --batch N` (one process).")
    out.append("")

    e2e = [r for r in rows if r.get("section") == "e2e"]
    # lt2c rows at the e2e sizes (bench_lt2c.py --big) join the table, one column per precision
    lt2c_sys = []
    for r in rows:
        if r.get("section") == "lt2c" and r.get("ms") and r.get("system", "").startswith("lt2c") and "(tiny)" not in r.get("model", ""):
            e2e.append(dict(r, row=r["row"].split(" ")[0]))
            if r["system"] not in lt2c_sys:
                lt2c_sys.append(r["system"])
    lt2c_sys.sort(key=lambda x: (x != "lt2c fp32", x))
    if not lt2c_sys:
        lt2c_sys = ["lt2c fp32"]
    out.append("### End to end (bf16; prefill: B = 1, logits of the last position, caches written; decode: one token for "
               "each of B sequences at the given context, per-(loop, layer) caches)")
    out.append("")
    keys = []
    for r in e2e:
        k = (r["model"], r["row"], r.get("shape", ""))
        if k not in keys:
            keys.append(k)

    def skey(k):
        nums = shape_key({"shape": k[2]})
        return (k[0], 0 if k[1] == "prefill" else 1, nums[::-1])

    keys.sort(key=skey)
    piv = []
    for k in keys:
        rr = {r["system"]: r for r in e2e if (r["model"], r["row"], r.get("shape", "")) == k}
        any_r = next((r for r in rr.values() if r.get("floor_ms")), next(iter(rr.values())))
        piv.append({"k": k, "e": rr.get("eager", {}), "c": rr.get("compile", {}), "any": any_r, "rr": rr})

    def cell(r, unit):
        if not r:
            return ""
        if not r.get("ms"):
            return r.get("note", "")
        v = r.get("tok_s") if unit == "tok" else r.get("ms")
        return f"{fmt(v)} ({fmt(r.get('ratio'))}x)" if r.get("ratio") else fmt(v)

    def note(x):  # the lt2c columns' notes are in the lt2c table
        return "; ".join(f"{s}: {r['note']}" for s, r in x["rr"].items() if r.get("note") and r.get("ms") and not s.startswith("lt2c"))

    def unit(x):
        return "tok" if x["k"][1] == "decode" else "ms"

    out.append("Cells: ms, or tokens/s for decode, with measured/floor in brackets (floor: bf16 weights and caches, also for "
               "the lt2c columns). lt2c: only where it ran and passed its check in the same call; its notes are in the lt2c "
               "table below.")
    out.append("")
    cols = [
        ("model", lambda x: x["k"][0]), ("row", lambda x: x["k"][1]), ("shape", lambda x: x["k"][2]),
        ("PyTorch eager", lambda x: cell(x["e"], unit(x))), ("PyTorch compile", lambda x: cell(x["c"], unit(x))),
        ("eager ms", lambda x: fmt(x["e"].get("ms")) if x["k"][1] == "decode" else ""),
        ("compile ms", lambda x: fmt(x["c"].get("ms")) if x["k"][1] == "decode" else ""),
        ("floor ms", lambda x: fmt(x["any"].get("floor_ms"))), ("bound", lambda x: x["any"].get("floor_bound", "")),
    ]
    for ls in lt2c_sys:
        cols.append((ls, lambda x, ls=ls: cell(x["rr"].get(ls, {}), unit(x)) or "—"))
        if True:
            cols.append((f"{ls} ms", lambda x, ls=ls: fmt(x["rr"].get(ls, {}).get("ms")) if x["k"][1] == "decode" else ""))
    cols += [("call", lambda x: calls_of(x["rr"].values())), ("notes", note)]
    out.append(table(piv, cols))
    out.append("")
    ker = [r for r in rows if r.get("section") == "kernel"]
    out.append("### Kernels (bf16)")
    out.append("")
    have_lt2c = any(is_lt2c(r) for r in ker)
    lt_fp32 = [r for r in ker if r.get("system") == "lt2c" and r.get("ms")]
    ker, lt2c_of = kernel_rows(ker)
    out.append(table(ker, [
        ("kernel", lambda r: r["row"]), ("shape family", lambda r: r["model"]), ("system", lambda r: r["system"]),
        ("shape", lambda r: r.get("shape", "")), ("ms", lambda r: fmt(r.get("ms"))),
        ("floor ms", lambda r: fmt(r.get("floor_ms"))), ("bound", lambda r: r.get("floor_bound", "")),
        ("measured/floor", lambda r: fmt(r.get("ratio"))),
        ("lt2c ms (measured/floor)" if have_lt2c else "lt2c", lambda r: lt2c_cell(r, lt2c_of) if have_lt2c else "n/a"),
        ("call", lambda r: calls_of([r] + lt2c_of.get(kernel_key(r), []))), ("note", lambda r: r.get("note", "")),
    ]))
    out.append("")
    if have_lt2c:
        out.append(LT2C_KERNEL_NOTE)
    else:
        out.append("lt2c column: n/a — lt2c runs whole models only (no kernel-level entry point to time).")
    dense = {r["shape"]: r for r in ker if r["row"].startswith("attention prefill") and r.get("ms") and not is_lt2c(r)}
    sp = [r for r in ker if r["row"].startswith("DSA prefill: indexer + top-k + sparse") and r.get("ms") and not is_lt2c(r)]
    if sp:
        out.append("")
        parts = []
        for r in sp:
            d = dense.get(r["shape"])
            parts.append(f"{r['shape']}: DSA {fmt(r['ms'])} ms vs dense "
                         + (f"{fmt(d['ms'])} ms ({fmt(r['ms'] / d['ms'])}x)" if d else "not measured"))
        out.append("Sparse vs dense (LT2's DSA: indexer + top-k + sparse attention, 16 heads over a 576-dim latent, "
                   "top-2048, PyTorch; dense: causal SDPA 16 heads x 128, same length; bf16, B = 1): " + "; ".join(parts) + ".")
    lt_sp = [r for r in lt_fp32 if r["row"].startswith("DSA prefill: indexer + top-k + sparse")]
    lt_dense = {r["shape"]: r for r in lt_fp32 if r["row"].startswith("attention prefill")}
    if lt_sp:
        parts = [f"{r['shape']}: DSA {fmt(r['ms'])} ms vs dense " + (f"{fmt(lt_dense[r['shape']]['ms'])} ms" if r["shape"] in lt_dense
                 else "not measured") for r in lt_sp]
        out.append("")
        out.append("The same in lt2c (fp32, device time of its LightningIndexer + SparseAttention vs its Attention op): "
                   + "; ".join(parts) + ".")
    out.append("")
    lt = [r for r in rows if r.get("section") == "lt2c"]
    out.append("### lt2c")
    out.append("")
    if lt:
        out.append(table(lt, [
            ("model", lambda r: r["model"]), ("system", lambda r: r["system"]), ("row", lambda r: r["row"]),
            ("shape", lambda r: r.get("shape", "")), ("ms", lambda r: fmt(r.get("ms"))), ("tokens/s", lambda r: fmt(r.get("tok_s"))),
            ("measured/floor", lambda r: fmt(r.get("ratio"))), ("call", lambda r: r.get("call", "")), ("note", lambda r: r.get("note", "")),
        ]))
    else:
        out.append("No lt2c rows.")
    out.append("")
    gone = [r for r in rows if r.get("section") == "skipped" or (not r.get("ms") and r.get("section") in ("e2e", "kernel", "lt2c")
                                                                 and r.get("row") != "status")]
    gone += [r for r in rows if r.get("section") == "lt2c" and r.get("row") == "status"]
    out.append("### Not measured")
    out.append("")
    if gone:
        out.append(table(gone, [
            ("step / model", lambda r: r.get("model") or r.get("row", "")), ("system", lambda r: r.get("system", "")),
            ("row", lambda r: r.get("row", "") if r.get("model") else ""), ("shape", lambda r: r.get("shape", "")),
            ("call", lambda r: r.get("call", "")), ("why", lambda r: r.get("note", "")),
        ]))
    else:
        out.append("Nothing.")
    out.append("")
    chk = [r for r in rows if r.get("section") == "check"]
    out.append("### Correctness checks")
    out.append("")
    out.append(table(chk, [
        ("what", lambda r: r["row"]), ("model", lambda r: r["model"]), ("system", lambda r: r["system"]),
        ("shape", lambda r: r.get("shape", "")), ("result", lambda r: r.get("check", "")),
        ("pass", lambda r: "yes" if r.get("ok") else "NO"), ("call", lambda r: r.get("call", "")),
    ]))
    out.append("")
    (out_dir / "RESULTS_section.md").write_text("\n".join(out) + "\n")
    title = (f"Looped 1.3B-shaped models, bf16 PyTorch and lt2c, {' / '.join(cards)}, torch {p.get('torch', '?')}, "
             f"fla {p.get('fla', '?')}")
    try:
        plot(rows, out_dir / "decode_tokens_per_s.png", title)
    except Exception as ex:  # noqa: BLE001
        print("plot failed:", type(ex).__name__, ex)
    print("\n".join(out))


if __name__ == "__main__":
    main()
