"""ONNX node-test conformance runner for lt2c.

Takes every node test case that the installed ``onnx`` package generates in memory
(``onnx.backend.test.case.node.collect_testcases``), keeps those whose every node (subgraphs
included) is a default-domain op listed in ``tests/conformance/claimed_ops.txt``, and for each
one compiles the test model with ``lt2c M.onnx -o M.bin`` and runs it with
``lt2c run M.bin --inputs in.npz --outputs out.npz --device cpu``, then compares every output
with the expected one.

Outcome of a test:
  * passed       every output has the expected shape and matches: float ‖out−ref‖/‖ref‖ < 1e-5
                 (absolute ‖out−ref‖ < 1e-5 when ref is all zeros; NaN/±inf positions must
                 agree), ints and bools exactly;
  * unsupported  an input/output uses a dtype lt2c does not take (float16, bfloat16, strings,
                 uint8, sequences, ...), or lt2c refused the model with an error that says so
                 ("not supported", "unsupported");
  * failed       anything else: wrong numbers or shapes, a missing output, a panic, a crash,
                 a timeout, any other error.

Usage (from the repository root):

    .venv/bin/python -m lt2.conformance [--lt2c PATH] [--ops Add,MatMul] [--list-failures]
        [--json OUT] [--update-expected | --check-expected] [--jobs N] [--timeout S]

(``python/`` must be on ``sys.path``: ``PYTHONPATH=python`` or ``pip install -e python``.)
The last line printed is ``conformance: N passed, N failed, N unsupported``.
Exit status: 1 when a test of an op listed in ``tests/conformance/must_pass.txt`` fails, or,
with ``--check-expected``, when a test listed in ``tests/conformance/expected_passing.txt``
no longer passes; 0 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "tests" / "conformance"
CLAIMED_FILE = CONF_DIR / "claimed_ops.txt"
MUST_PASS_FILE = CONF_DIR / "must_pass.txt"
EXPECTED_FILE = CONF_DIR / "expected_passing.txt"
DEFAULT_LT2C = REPO / "target" / "release" / "lt2c"

REL_TOL = 1e-5
ABS_TOL = 1e-5  # used when the reference is all zeros
DEFAULT_TIMEOUT = 30.0

PASSED, FAILED, UNSUPPORTED = "passed", "failed", "unsupported"

# lt2c reads float32/float64 as f32, int64/int32 as i64, and bool.
_SUPPORTED_NP_KINDS = {np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64),
                       np.dtype(np.int32), np.dtype(np.bool_)}
_UNSUPPORTED_RE = re.compile(r"not supported|unsupported", re.IGNORECASE)
_PANIC_RE = re.compile(r"panicked at|RUST_BACKTRACE|stack overflow", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Test selection


def read_list(path: Path) -> list[str]:
    """Non-empty lines of a list file, without comments (``#`` to end of line)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def _all_nodes(graph):
    import onnx

    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _all_nodes(g)


def model_ops(model) -> set[tuple[str, str]]:
    """(domain, op_type) of every node of the model, subgraphs included; "ai.onnx" -> ""."""
    return {("" if n.domain in ("", "ai.onnx") else n.domain, n.op_type)
            for n in _all_nodes(model.graph)}


_EXPANDED_RE = re.compile(r"^(?P<base>.*)_expanded(?:_ver\d+)?$")


@dataclass
class Case:
    name: str
    op: str            # the op under test ("Softmax" for test_softmax_example_expanded)
    group: str         # per-op bucket: op, or "op (expanded)" for function-expanded tests
    model: object
    inputs: list
    outputs: list


def collect_cases() -> list[Case]:
    """Every node test case of the installed onnx package, in generation order."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        tcs = collect_testcases(None)
    by_name = {t.name: t for t in tcs}
    cases = []
    for t in tcs:
        m = _EXPANDED_RE.match(t.name)
        if m and m.group("base") in by_name:
            base = by_name[m.group("base")].model.graph.node
            op = base[0].op_type if len(base) == 1 else "?"
            group = f"{op} (expanded)"
        else:
            top = t.model.graph.node
            op = top[0].op_type if len(top) == 1 else "+".join(sorted({n.op_type for n in top}))
            group = op
        inputs, outputs = t.data_sets[0]
        cases.append(Case(t.name, op, group, t.model, list(inputs), list(outputs)))
    return cases


def select_cases(cases: list[Case], claimed: set[str], ops: set[str] | None = None) -> list[Case]:
    out = []
    for c in cases:
        mops = model_ops(c.model)
        if not all(d == "" and o in claimed for d, o in mops):
            continue
        if ops is not None and c.op not in ops and c.group not in ops:
            continue
        out.append(c)
    return out


# --------------------------------------------------------------------------------------------
# Running one test


@dataclass
class Result:
    name: str
    op: str
    group: str
    status: str
    reason: str = ""
    detail: str = ""          # first lines of lt2c's error output, when there is one
    errors: dict = field(default_factory=dict)  # output name -> relative error
    seconds: float = 0.0


def _to_array(v):
    """A test value as a numpy array, or None when it is not a plain tensor lt2c can read."""
    import onnx
    from onnx import numpy_helper

    if isinstance(v, onnx.TensorProto):
        if v.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE,
                               onnx.TensorProto.INT64, onnx.TensorProto.INT32,
                               onnx.TensorProto.BOOL):
            return None
        v = numpy_helper.to_array(v)
    if not isinstance(v, np.ndarray):
        if isinstance(v, (np.generic, int, float, bool)):
            v = np.asarray(v)
        else:
            return None  # sequences, optionals, maps
    if v.dtype not in _SUPPORTED_NP_KINDS:
        return None
    return v


def _value_info_dtype_ok(vi) -> tuple[bool, str]:
    import onnx

    t = vi.type
    if t.WhichOneof("value") != "tensor_type":
        return False, f"{vi.name}: {t.WhichOneof('value')} type"
    et = t.tensor_type.elem_type
    ok = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.INT64,
          onnx.TensorProto.INT32, onnx.TensorProto.BOOL}
    if et not in ok:
        return False, f"{vi.name}: {onnx.TensorProto.DataType.Name(et)}"
    return True, ""


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            data = io.BytesIO()
            np.lib.format.write_array(data, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(f"{name}.npy", data.getvalue())


def _first_lines(text: str, n: int = 4, width: int = 300) -> str:
    lines = [ln.rstrip()[:width] for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[:n])


def _one_line(text: str, width: int = 240) -> str:
    for ln in text.strip().splitlines():
        ln = ln.strip()
        if ln:
            return ln[:width]
    return ""


def compare(got: np.ndarray, want: np.ndarray) -> tuple[bool, str, float]:
    """(ok, reason, error) for one output."""
    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        return False, f"shape {list(got.shape)} != expected {list(want.shape)}", float("nan")
    if want.dtype.kind in "f":
        g = got.astype(np.float64)
        w = want.astype(np.float64)
        wn, gn = np.isnan(w), np.isnan(g)
        if (wn != gn).any():
            return False, f"NaN at {int((wn != gn).sum())} positions differ", float("nan")
        wi, gi = np.isinf(w), np.isinf(g)
        if (wi != gi).any() or (w[wi] != g[wi]).any():
            return False, "infinities differ", float("nan")
        fin = np.isfinite(w)
        d = np.linalg.norm((g - w)[fin])
        r = np.linalg.norm(w[fin])
        if r == 0.0:
            ok = d < ABS_TOL
            return ok, ("" if ok else f"abs err {d:.3g} (ref all zeros)"), float(d)
        e = float(d / r)
        return e < REL_TOL, ("" if e < REL_TOL else f"rel err {e:.3g}"), e
    if want.dtype.kind == "b":
        if got.dtype.kind != "b" and not np.isin(got, (0, 1)).all():
            return False, f"dtype {got.dtype} for a bool output", float("nan")
        ok = bool((got.astype(bool) == want).all())
        n = int((got.astype(bool) != want).sum())
        return ok, ("" if ok else f"{n} of {want.size} elements differ"), float(n)
    # integers
    if got.dtype.kind == "f":
        if not np.array_equal(got, np.round(got)):
            return False, f"dtype {got.dtype} with fractional values for an int output", float("nan")
    ok = bool((got.astype(np.int64) == want.astype(np.int64)).all())
    n = int((got.astype(np.int64) != want.astype(np.int64)).sum())
    return ok, ("" if ok else f"{n} of {want.size} elements differ"), float(n)


def run_case(case: Case, lt2c: Path, timeout: float = DEFAULT_TIMEOUT) -> Result:
    import onnx

    t0 = time.monotonic()
    res = Result(case.name, case.op, case.group, FAILED)
    g = case.model.graph

    # dtype screen
    for vi in list(g.input) + list(g.output):
        ok, why = _value_info_dtype_ok(vi)
        if not ok:
            res.status, res.reason = UNSUPPORTED, f"dtype not supported by lt2c ({why})"
            return res
    feed = {}
    init_names = {i.name for i in g.initializer}
    graph_inputs = [vi.name for vi in g.input if vi.name not in init_names]
    if len(graph_inputs) != len(case.inputs):
        res.reason = f"harness: {len(graph_inputs)} graph inputs but {len(case.inputs)} values"
        return res
    for name, v in zip(graph_inputs, case.inputs):
        a = _to_array(v)
        if a is None:
            dt = getattr(v, "dtype", type(v).__name__)
            res.status, res.reason = UNSUPPORTED, f"dtype not supported by lt2c ({name}: {dt})"
            return res
        feed[name] = a
    want = {}
    for vi, v in zip(g.output, case.outputs):
        a = _to_array(v)
        if a is None:
            dt = getattr(v, "dtype", type(v).__name__)
            res.status, res.reason = UNSUPPORTED, f"dtype not supported by lt2c ({vi.name}: {dt})"
            return res
        want[vi.name] = a

    deadline = t0 + timeout
    with tempfile.TemporaryDirectory(prefix="lt2conf_") as td:
        td = Path(td)
        onnx.save(case.model, str(td / "model.onnx"))
        _write_npz(td / "in.npz", feed)
        steps = [
            ("compile", [str(lt2c), str(td / "model.onnx"), "-o", str(td / "model.bin")]),
            ("run", [str(lt2c), "run", str(td / "model.bin"), "--inputs", str(td / "in.npz"),
                     "--outputs", str(td / "out.npz"), "--device", "cpu"]),
        ]
        for step, cmd in steps:
            left = deadline - time.monotonic()
            if left <= 0:
                res.reason = f"timeout ({timeout:g} s) before {step}"
                res.seconds = time.monotonic() - t0
                return res
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=left,
                                   env={**os.environ, "RUST_BACKTRACE": "0"})
            except subprocess.TimeoutExpired:
                res.reason = f"timeout ({timeout:g} s) in lt2c {step}"
                res.seconds = time.monotonic() - t0
                return res
            if p.returncode != 0:
                err = (p.stderr or "") + (p.stdout or "")
                res.detail = _first_lines(err)
                if p.returncode < 0:
                    res.reason = f"lt2c {step} killed by signal {-p.returncode}: {_one_line(err)}"
                elif _PANIC_RE.search(err):
                    m = re.search(r"panicked at .*", err)
                    msg = err[m.start():] if m else err
                    res.reason = f"lt2c {step} panicked: " + " ".join(msg.split())[:240]
                elif _UNSUPPORTED_RE.search(err):
                    res.status = UNSUPPORTED
                    res.reason = f"lt2c {step}: {_one_line(err)}"
                else:
                    res.reason = f"lt2c {step} exit {p.returncode}: {_one_line(err)}"
                res.seconds = time.monotonic() - t0
                return res
        try:
            with np.load(td / "out.npz", allow_pickle=False) as z:
                got = {k: z[k] for k in z.files}
        except Exception as e:  # noqa: BLE001
            res.reason = f"cannot read lt2c outputs: {e}"
            res.seconds = time.monotonic() - t0
            return res

    problems = []
    for name, w in want.items():
        if name not in got:
            problems.append(f"{name}: missing from outputs (got {sorted(got)})")
            continue
        ok, why, e = compare(got[name], w)
        res.errors[name] = e
        if not ok:
            problems.append(f"{name}: {why}")
    res.seconds = time.monotonic() - t0
    if problems:
        res.reason = "; ".join(problems)[:300]
    else:
        res.status = PASSED
    return res


# --------------------------------------------------------------------------------------------
# Driver


def run_all(cases: list[Case], lt2c: Path, jobs: int, timeout: float, progress=None) -> list[Result]:
    results: list[Result] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        futs = {ex.submit(run_case, c, lt2c, timeout): c for c in cases}
        for f in concurrent.futures.as_completed(futs):
            c = futs[f]
            try:
                r = f.result()
            except Exception as e:  # noqa: BLE001  (a harness bug must not hide the others)
                r = Result(c.name, c.op, c.group, FAILED, reason=f"harness error: {e!r}")
            results.append(r)
            if progress:
                progress(len(results), len(cases))
    order = {c.name: i for i, c in enumerate(cases)}
    results.sort(key=lambda r: order[r.name])
    return results


def per_op_counts(results: list[Result]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for r in results:
        d = counts.setdefault(r.group, {PASSED: 0, FAILED: 0, UNSUPPORTED: 0})
        d[r.status] += 1
    return dict(sorted(counts.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lt2.conformance", description=__doc__.split("\n\n")[0])
    ap.add_argument("--lt2c", type=Path, default=Path(os.environ.get("LT2C", DEFAULT_LT2C)),
                    help=f"the lt2c binary (default: $LT2C or {DEFAULT_LT2C})")
    ap.add_argument("--ops", help="comma-separated ops: only tests of these ops (claimed ones)")
    ap.add_argument("--list-failures", action="store_true", help="one line per failed test")
    ap.add_argument("--list-unsupported", action="store_true", help="one line per unsupported test")
    ap.add_argument("--json", type=Path, help="write every result to this JSON file")
    ap.add_argument("--jobs", "-j", type=int, default=min(4, os.cpu_count() or 2))
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per test")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--update-expected", action="store_true",
                   help=f"write the passing tests to {EXPECTED_FILE.relative_to(REPO)}")
    g.add_argument("--check-expected", action="store_true",
                   help="exit 1 when a test listed as passing no longer passes")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)

    lt2c = args.lt2c.resolve()
    if not lt2c.exists():
        print(f"conformance: lt2c binary not found at {lt2c}", file=sys.stderr)
        return 2
    claimed = set(read_list(CLAIMED_FILE))
    if not claimed:
        print(f"conformance: no claimed ops ({CLAIMED_FILE})", file=sys.stderr)
        return 2
    ops = None
    if args.ops:
        ops = {o.strip() for o in args.ops.split(",") if o.strip()}
        if args.update_expected:
            ap.error("--update-expected needs the whole selection (no --ops)")

    t0 = time.monotonic()
    cases = select_cases(collect_cases(), claimed, ops)
    if not args.quiet:
        print(f"conformance: {len(cases)} node tests selected "
              f"({len(claimed)} claimed ops), {args.jobs} jobs", file=sys.stderr)

    def progress(done, total):
        if not args.quiet and sys.stderr.isatty():
            print(f"\r  {done}/{total}", end="" if done < total else "\n", file=sys.stderr)

    results = run_all(cases, lt2c, max(1, args.jobs), args.timeout, progress)
    elapsed = time.monotonic() - t0

    by_status = collections.Counter(r.status for r in results)
    counts = per_op_counts(results)

    if args.list_failures:
        for r in results:
            if r.status == FAILED:
                print(f"FAIL {r.name} [{r.group}]: {r.reason}")
    if args.list_unsupported:
        for r in results:
            if r.status == UNSUPPORTED:
                print(f"UNSUPPORTED {r.name} [{r.group}]: {r.reason}")

    rc = 0
    must_pass = set(read_list(MUST_PASS_FILE))
    broken = sorted({r.group for r in results if r.status == FAILED and r.group in must_pass})
    if broken:
        rc = 1
        for op in broken:
            names = [r.name for r in results if r.group == op and r.status == FAILED]
            print(f"MUST-PASS op {op} has failing tests: {', '.join(names)}")

    passing = sorted(r.name for r in results if r.status == PASSED)
    regressions: list[str] = []
    if args.check_expected:
        expected = read_list(EXPECTED_FILE)
        status_of = {r.name: r for r in results}
        for name in expected:
            r = status_of.get(name)
            if ops is not None and r is None:
                continue  # not in this --ops selection
            if r is None or r.status != PASSED:
                why = "no longer selected (op not claimed or test gone)" if r is None else f"{r.status}: {r.reason}"
                regressions.append(name)
                print(f"REGRESSION {name}: {why}")
        newly = sorted(set(passing) - set(expected))
        if newly:
            print(f"conformance: {len(newly)} tests pass that expected_passing.txt does not list "
                  f"(run with --update-expected): {', '.join(newly[:20])}"
                  + (" ..." if len(newly) > 20 else ""))
        if regressions:
            rc = 1
    if args.update_expected:
        EXPECTED_FILE.parent.mkdir(parents=True, exist_ok=True)
        EXPECTED_FILE.write_text(
            "# ONNX node tests that lt2c passes (python -m lt2.conformance --update-expected).\n"
            "# --check-expected fails when one of these stops passing.\n"
            + "".join(n + "\n" for n in passing))
        print(f"conformance: wrote {len(passing)} test names to {EXPECTED_FILE.relative_to(REPO)}")

    if args.json:
        args.json.write_text(json.dumps({
            "lt2c": str(lt2c),
            "summary": {PASSED: by_status[PASSED], FAILED: by_status[FAILED],
                        UNSUPPORTED: by_status[UNSUPPORTED]},
            "seconds": round(elapsed, 1),
            "per_op": counts,
            "regressions": regressions,
            "results": [asdict(r) for r in results],
        }, indent=1, default=float))

    w = max([len(k) for k in counts] + [2])
    for op, d in counts.items():
        print(f"  {op:<{w}}  {d[PASSED]:4d} passed  {d[FAILED]:4d} failed  {d[UNSUPPORTED]:4d} unsupported")
    if not args.quiet:
        print(f"conformance: {len(results)} tests in {elapsed:.1f} s", file=sys.stderr)
    print(f"conformance: {by_status[PASSED]} passed, {by_status[FAILED]} failed, "
          f"{by_status[UNSUPPORTED]} unsupported")
    return rc


if __name__ == "__main__":
    sys.exit(main())
