"""Turn ``$BENCH_OUT/results.jsonl`` + ``peaks.json`` into the markdown section for
bench/RESULTS.md (``$BENCH_OUT/RESULTS_section.md``) and the decode plot
(``$BENCH_OUT/decode_tokens_per_s.png``).

    python bench/report.py --command "bash bench/run.sh" [--lt2c-status "..."]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json

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


def load_rows():
    p = common.OUT / "results.jsonl"
    if not p.exists():
        return []
    return [json.loads(l) for l in p.read_text().splitlines() if l.strip()]


def table(rows, cols):
    head = "| " + " | ".join(c[0] for c in cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    body = ["| " + " | ".join(str(c[1](r)).replace("|", "/") for c in cols) + " |" for r in rows]
    return "\n".join([head, sep] + body)


def shape_key(r):
    s = r.get("shape", "")
    nums = [int("".join(ch for ch in t if ch.isdigit()) or 0) for t in s.split()]
    return nums


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dec = [r for r in rows if r.get("section") == "e2e" and r.get("row") == "decode" and r.get("tok_s")]
    ctxs = sorted({r["ctx"] for r in dec}) or [1024, 8192]
    fig, axes = plt.subplots(1, len(ctxs), figsize=(6 * len(ctxs), 4.5), squeeze=False)
    styles = {"eager": "-", "compile": "--", "lt2c": ":"}
    colors = {}
    lt2c_rows = [r for r in rows if r.get("section") == "lt2c" and r.get("system", "").startswith("lt2c") and r.get("tok_s")]
    big = [r for r in lt2c_rows if "(tiny)" not in r["model"]]
    for ax, ctx in zip(axes[0], ctxs):
        for (model, system) in sorted({(r["model"], r["system"]) for r in dec if r["ctx"] == ctx}):
            pts = sorted((r["batch"], r["tok_s"]) for r in dec if r["ctx"] == ctx and r["model"] == model and r["system"] == system)
            col = colors.setdefault(model, f"C{len(colors)}")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], styles.get(system, "-"), marker="o", color=col,
                    label=f"{model}, PyTorch {system}")
        for r in big:
            if r.get("shape", "").endswith(f"ctx{ctx}"):
                col = colors.setdefault(r["model"], f"C{len(colors)}")
                ax.plot([1], [r["tok_s"]], marker="*", markersize=12, linestyle="none", color=col, label=f"{r['model']}, lt2c fp32")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch (sequences)")
        ax.set_ylabel("decode tokens/s (all sequences)")
        note = ("lt2c: B=1 only (star)" if big else "lt2c: no 1.3B rows (see RESULTS.md)" if not lt2c_rows
                else "lt2c: tiny models only (see table)")
        ax.set_title(f"decode at {ctx // 1024}K context; {note}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    p = common.load_peaks() or {}
    fig.suptitle(f"Looped 1.3B-shaped models, bf16, {p.get('card', '?')}, torch {p.get('torch', '?')}, fla {p.get('fla', '?')}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--command", default="bash bench/run.sh")
    ap.add_argument("--lt2c-status", default="")
    a = ap.parse_args()
    rows = load_rows()
    p = common.load_peaks() or {}
    last = max((r.get("t", 0) for r in rows), default=0) or dt.datetime.now(dt.timezone.utc).timestamp()
    now = dt.datetime.fromtimestamp(last, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")  # the last row's time
    out = []
    out.append(f"## Benchmark (bench/run.sh), {now}, {p.get('card', '?')}")
    out.append("")
    out.append(f"- Command (repo root, on the GPU machine): `{a.command}`")
    out.append(f"- Versions: torch {p.get('torch', '?')}, triton {p.get('triton', '?')}, flash-linear-attention/fla-core "
               f"{p.get('fla', '?')}, CUDA {p.get('cuda', '?')}, Python {p.get('python', '?')}")
    if p:
        out.append(f"- Ceilings measured in this run: bf16 matmul 8192³ {p['matmul_ms_8192']:.3f} ms = "
                   f"{p['matmul_flops_per_s'] / 1e12:.0f} TFLOP/s; device copy 1 GiB {p['copy_ms_1gib']:.3f} ms = "
                   f"{p['copy_bytes_per_s'] / 1e12:.2f} TB/s (read + write). Floor = max(FLOPs / matmul rate, bytes / copy "
                   f"rate); ratio = measured / floor.")
    if a.lt2c_status:
        out.append(f"- lt2c: {a.lt2c_status}")
    out.append("- Weights: random (seeded), generated on the GPU by `bench/bench_model.py:gen_weights` with the zoo's "
               "names and distributions (`lt2.zoo.registry` big configs); nothing carried.")
    out.append("- PyTorch systems: `bench/bench_model.py`, bf16, the zoo's model function (checked against the ONNX goldens in "
               "this run); the projections of a layer fused into one matmul; GDN through fla's `chunk_gated_delta_rule` "
               "(prefill) and `fused_recurrent_gated_delta_rule` (decode) called as fla 0.6.0's GatedDeltaNet layer calls "
               "them; attention through SDPA (cuDNN allowed for prefill, off for decode); LT2's DSA in plain PyTorch "
               "(indexer, `torch.topk`, gather, attention; no TileLang kernels). `torch.compile(dynamic=True)` wraps the dense "
               "parts of each layer; fla, SDPA and the DSA selection stay eager. Decode: caches filled with random values as "
               "after a prefill of `ctx` tokens, one cache per (loop, layer). Medians of CUDA-event timings after warm-up "
               "(kernels: `triton.testing.do_bench`).")
    out.append("")

    e2e = [r for r in rows if r.get("section") == "e2e"]
    # lt2c rows at the e2e sizes (from lt2c_rows.py --big) join the table as a third system
    for r in rows:
        if r.get("section") == "lt2c" and r.get("ms") and r.get("system", "").startswith("lt2c") and "(tiny)" not in r["model"]:
            e2e.append(dict(r, row=r["row"].split(" ")[0], system="lt2c"))
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
        any_r = next(iter(rr.values()))
        piv.append({"k": k, "e": rr.get("eager", {}), "c": rr.get("compile", {}), "l": rr.get("lt2c", {}), "any": any_r})

    def cell(r, unit):
        if not r:
            return ""
        if not r.get("ms"):
            return r.get("note", "")
        v = r.get("tok_s") if unit == "tok" else r.get("ms")
        return f"{fmt(v)} ({fmt(r.get('ratio'))}x)" if r.get("ratio") else fmt(v)

    def note(x):
        names = {"e": "eager", "c": "compile", "l": "lt2c"}
        return "; ".join(f"{names[s]}: {x[s]['note']}" for s in ("e", "c", "l") if x[s].get("note") and x[s].get("ms"))

    out.append("Cells: ms, or tokens/s for decode, with measured/floor in brackets (floor: bf16 weights and caches). "
               "lt2c: fp32 (its only precision so far), only where it ran and passed its check in this run.")
    out.append("")
    out.append(table(piv, [
        ("model", lambda x: x["k"][0]), ("row", lambda x: x["k"][1]), ("shape", lambda x: x["k"][2]),
        ("PyTorch eager", lambda x: cell(x["e"], "tok" if x["k"][1] == "decode" else "ms")),
        ("PyTorch compile", lambda x: cell(x["c"], "tok" if x["k"][1] == "decode" else "ms")),
        ("eager ms", lambda x: fmt(x["e"].get("ms")) if x["k"][1] == "decode" else ""),
        ("compile ms", lambda x: fmt(x["c"].get("ms")) if x["k"][1] == "decode" else ""),
        ("floor ms", lambda x: fmt(x["any"].get("floor_ms"))), ("bound", lambda x: x["any"].get("floor_bound", "")),
        ("lt2c (fp32)", lambda x: cell(x["l"], "tok" if x["k"][1] == "decode" else "ms") or "—"), ("notes", note),
    ]))
    out.append("")
    ker = [r for r in rows if r.get("section") == "kernel"]
    out.append("### Kernels (bf16)")
    out.append("")
    out.append(table(ker, [
        ("kernel", lambda r: r["row"]), ("shape family", lambda r: r["model"]), ("system", lambda r: r["system"]),
        ("shape", lambda r: r.get("shape", "")), ("ms", lambda r: fmt(r.get("ms"))),
        ("floor ms", lambda r: fmt(r.get("floor_ms"))), ("bound", lambda r: r.get("floor_bound", "")),
        ("measured/floor", lambda r: fmt(r.get("ratio"))), ("lt2c", lambda r: "n/a"), ("note", lambda r: r.get("note", "")),
    ]))
    out.append("")
    out.append("lt2c column: n/a — lt2c runs whole models only (no kernel-level entry point to time).")
    dense = {r["shape"]: r["ms"] for r in ker if r["row"].startswith("attention prefill") and r.get("ms")}
    sp = [r for r in ker if r["row"].startswith("DSA prefill: indexer + top-k + sparse") and r.get("ms")]
    if sp:
        out.append("")
        out.append("Sparse vs dense: " + "; ".join(
            f"{r['shape']}: DSA {fmt(r['ms'])} ms vs dense causal SDPA 16x128 {fmt(dense.get(r['shape']))} ms"
            for r in sp))
    out.append("")
    lt = [r for r in rows if r.get("section") == "lt2c"]
    out.append("### lt2c")
    out.append("")
    if lt:
        out.append(table(lt, [
            ("model", lambda r: r["model"]), ("system", lambda r: r["system"]), ("row", lambda r: r["row"]),
            ("shape", lambda r: r.get("shape", "")), ("ms", lambda r: fmt(r.get("ms"))), ("tokens/s", lambda r: fmt(r.get("tok_s"))),
            ("note", lambda r: r.get("note", "")),
        ]))
    else:
        out.append("No lt2c rows.")
    out.append("")
    gone = [r for r in rows if r.get("section") == "skipped" or (not r.get("ms") and r.get("section") in ("e2e", "kernel", "lt2c")
                                                                 and r.get("row") != "status")]
    gone += [r for r in rows if r.get("section") == "lt2c" and r.get("row") == "status"]
    out.append("### Not measured in this run")
    out.append("")
    if gone:
        out.append(table(gone, [
            ("step / model", lambda r: r.get("model") or r.get("row", "")), ("system", lambda r: r.get("system", "")),
            ("row", lambda r: r.get("row", "") if r.get("model") else ""), ("shape", lambda r: r.get("shape", "")),
            ("why", lambda r: r.get("note", "")),
        ]))
    else:
        out.append("Nothing.")
    out.append("")
    chk = [r for r in rows if r.get("section") == "check"]
    out.append("### Correctness checks (this run)")
    out.append("")
    out.append(table(chk, [
        ("what", lambda r: r["row"]), ("model", lambda r: r["model"]), ("system", lambda r: r["system"]),
        ("shape", lambda r: r.get("shape", "")), ("result", lambda r: r.get("check", "")),
        ("pass", lambda r: "yes" if r.get("ok") else "NO"),
    ]))
    out.append("")
    (common.OUT / "RESULTS_section.md").write_text("\n".join(out) + "\n")
    try:
        plot(rows, common.OUT / "decode_tokens_per_s.png")
    except Exception as ex:  # noqa: BLE001
        print("plot failed:", ex)
    print("\n".join(out))


if __name__ == "__main__":
    main()
