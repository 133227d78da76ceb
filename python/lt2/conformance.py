"""ONNX node-test conformance runner for lt2c.

Takes every node test case that the installed ``onnx`` package generates in memory
(``onnx.backend.test.case.node.collect_testcases``), keeps those whose every node (subgraphs
included) is a default-domain op listed in ``tests/conformance/claimed_ops.txt``, and for each
one compiles the test model with ``lt2c M.onnx -o M.bin`` and runs it with
``lt2c run M.bin --inputs in.npz --outputs out.npz --device cpu``, then compares every output
with the expected one.

Outcome of a test:
  * passed       every output has the expected shape and matches: float ‖out−ref‖/‖ref‖ < 1e-5
                 (float16 2e-3, bfloat16 1e-2: lt2c computes half tests in float32, the
                 reference in the half type; absolute ‖out−ref‖ < 1e-5 when ref is all zeros;
                 NaN/±inf positions must agree), ints and bools exactly;
  * unsupported  an input/output uses a dtype lt2c does not take (strings, uint8, sequences,
                 ...), or lt2c refused the model with an error that says so
                 ("not supported", "unsupported");
  * failed       anything else: wrong numbers or shapes, a missing output, a panic, a crash,
                 a timeout (30 s per test), any other error.
A test that fails to compile because a shape/axes/starts/k input is not a compile-time constant
(the node tests feed those as graph inputs) is compiled again with its integer and 0-d inputs as
initializers; it still counts as failed, but its reason ends with the outcome of that retry
("[with int/scalar inputs as initializers: passed]"), telling "needs a constant" from "wrong".
Per-op counts group tests by the op under test; function-expanded tests
(``*_expanded``) are grouped as "Op (expanded)".

Usage (from the repository root):

    .venv/bin/python -m lt2.conformance [--lt2c PATH] [--ops Add,MatMul] [--list-failures]
        [--json OUT] [--update-expected | --check-expected] [--jobs N] [--timeout S]

(``python/`` must be on ``sys.path``: ``PYTHONPATH=python`` or ``pip install -e python``.)
The last line printed is ``conformance: N passed, N failed, N unsupported``.
Exit status: 1 when a test of an op listed in ``tests/conformance/must_pass.txt`` fails, or,
with ``--check-expected``, when a test listed in ``tests/conformance/expected_passing.txt``
no longer passes (a regression); 2 when lt2c or the claimed list is missing; 0 otherwise.
``--update-expected`` rewrites expected_passing.txt; ``--sync-claimed`` rewrites
claimed_ops.txt from the importer's ``lookup`` functions (frontend/src/ops/*.rs).
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
import signal
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
# Half-precision tests: lt2c computes them in float32 (half inputs read exactly), the reference
# in the half type, so their distance is the reference's own rounding: about 2^-11 (float16)
# and 2^-8 (bfloat16) per element, compounded through the op.
HALF_REL_TOL = {"float16": 2e-3, "bfloat16": 1e-2}
DEFAULT_TIMEOUT = 30.0

PASSED, FAILED, UNSUPPORTED = "passed", "failed", "unsupported"

# lt2c reads float32/float64 as f32, int64/int32 as i64, and bool.
_SUPPORTED_NP_KINDS = {np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), np.dtype(np.int64),
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


_OPS_DIR = REPO / "frontend" / "src" / "ops"
_ARM_RE = re.compile(r'^\s*("[^"]+"(?:\s*\|\s*"[^"]+")*)\s*=>', re.MULTILINE)
_PAIR_RE = re.compile(r'\(\s*"([^"]*)"\s*,\s*"([^"]+)"\s*\)')


def registered_ops(ops_dir: Path = _OPS_DIR) -> dict[str, list[tuple[str, str]]]:
    """(domain, op_type) pairs that the importer's ``lookup`` functions register, per source
    file: ``match op { "Add" => ... }`` behind ``if !domain.is_empty() { return None }`` (the
    default domain), or ``match (domain, op) { ("", "Attention") => ... }``."""
    out: dict[str, list[tuple[str, str]]] = {}
    for f in sorted(ops_dir.glob("*.rs")):
        text = f.read_text()
        m = re.search(r"fn lookup\s*\(.*?\n\}", text, re.DOTALL)
        if not m or f.name == "mod.rs":
            continue
        body = m.group(0)
        pairs: list[tuple[str, str]] = []
        if "match (domain, op" in body:
            pairs = [(d, o) for d, o in _PAIR_RE.findall(body)]
        elif "!domain.is_empty()" in body:
            for arm in _ARM_RE.findall(body):
                pairs += [("", o) for o in re.findall(r'"([^"]+)"', arm)]
        if pairs:
            out[f"frontend/src/ops/{f.name}"] = list(dict.fromkeys(pairs))
    return out


def claimed_ops_text(ops_dir: Path = _OPS_DIR) -> str:
    """The text of claimed_ops.txt for the importer as it is now (default domain only)."""
    lines = [
        "# Default-domain (\"\" / ai.onnx) ops that lt2c's importer registers: the (domain, op_type)",
        "# pairs of the `lookup` functions in frontend/src/ops/*.rs. python -m lt2.conformance runs",
        "# the onnx node tests whose every node (subgraphs included) is one of these.",
        "# Regenerate with: python -m lt2.conformance --sync-claimed",
        "# (python/tests/test_conformance.py fails when this file and the importer disagree).",
    ]
    for path, pairs in registered_ops(ops_dir).items():
        ops = [o for d, o in pairs if d == ""]
        if ops:
            lines += ["", f"# {path}"] + ops
    return "\n".join(lines) + "\n"


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
    const_inputs: str = ""    # outcome with int/0-d inputs baked as initializers (see run_case)
    seconds: float = 0.0


def _to_array(v):
    """A test value as a numpy array, or None when it is not a plain tensor lt2c can read."""
    import onnx
    from onnx import numpy_helper

    if isinstance(v, onnx.TensorProto):
        if v.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE,
                               onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                               onnx.TensorProto.INT64, onnx.TensorProto.INT32,
                               onnx.TensorProto.BOOL):
            return None
        v = numpy_helper.to_array(v)
    if not isinstance(v, np.ndarray):
        if isinstance(v, (np.generic, int, float, bool)):
            v = np.asarray(v)
        else:
            return None  # sequences, optionals, maps
    if v.dtype.name == "bfloat16":
        return v  # (ml_dtypes) fed as float32, compared in float64
    if v.dtype not in _SUPPORTED_NP_KINDS:
        return None
    return v


def _value_info_dtype_ok(vi) -> tuple[bool, str]:
    import onnx

    t = vi.type
    if t.WhichOneof("value") != "tensor_type":
        return False, f"{vi.name}: {t.WhichOneof('value')} type"
    et = t.tensor_type.elem_type
    ok = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
          onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.BOOL}
    if et not in ok:
        return False, f"{vi.name}: {onnx.TensorProto.DataType.Name(et)}"
    return True, ""


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            data = io.BytesIO()
            # (not np.ascontiguousarray: it turns a 0-d array into shape [1])
            np.lib.format.write_array(data, np.asarray(arr), allow_pickle=False)
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
    half_tol = HALF_REL_TOL.get(want.dtype.name)
    if want.dtype.kind in "f" or half_tol:
        g = got.astype(np.float64)
        w = want.astype(np.float64)
        wn, gn = np.isnan(w), np.isnan(g)
        if (wn != gn).any():
            return False, f"NaN at {int((wn != gn).sum())} positions differ", float("nan")
        wi, gi = np.isinf(w), np.isinf(g)
        if (wi != gi).any() or (w[wi] != g[wi]).any():
            return False, "infinities differ", float("nan")
        fin = np.isfinite(w)
        d = np.linalg.norm(g[fin] - w[fin])
        r = np.linalg.norm(w[fin])
        if r == 0.0:
            ok = d < ABS_TOL
            return ok, ("" if ok else f"abs err {d:.3g} (ref all zeros)"), float(d)
        e = float(d / r)
        tol = half_tol or REL_TOL
        return e < tol, ("" if e < tol else f"rel err {e:.3g}"), e
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


_COMPILE_TIME_RE = re.compile(r"known at compile time|computable at compile time|must be a constant",
                              re.IGNORECASE)


def _run_with_timeout(cmd: list[str], timeout: float):
    """subprocess.run in its own process group, killed as a group on timeout (None then)."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, env={**os.environ, "RUST_BACKTRACE": "0"}) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return None
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _run_lt2c(model, feed: dict, want: dict, lt2c: Path, deadline: float, timeout: float):
    """Compile and run one model; (status, reason, detail, errors, step-of-failure)."""
    import onnx

    errors: dict = {}
    with tempfile.TemporaryDirectory(prefix="lt2conf_") as td:
        td = Path(td)
        onnx.save(model, str(td / "model.onnx"))
        # bfloat16 (no .npy type) as the float32 values it holds exactly; float16 as it is
        _write_npz(td / "in.npz", {k: v.astype(np.float32) if v.dtype.name == "bfloat16" else v for k, v in feed.items()})
        steps = [
            ("compile", [str(lt2c), str(td / "model.onnx"), "-o", str(td / "model.bin")]),
            ("run", [str(lt2c), "run", str(td / "model.bin"), "--inputs", str(td / "in.npz"),
                     "--outputs", str(td / "out.npz"), "--device", "cpu"]),
        ]
        for step, cmd in steps:
            left = deadline - time.monotonic()
            if left <= 0:
                return FAILED, f"timeout ({timeout:g} s) before lt2c {step}", "", errors, step
            p = _run_with_timeout(cmd, left)
            if p is None:
                return FAILED, f"timeout ({timeout:g} s) in lt2c {step}", "", errors, step
            if p.returncode != 0:
                err = (p.stderr or "") + (p.stdout or "")
                # drop the temp dir from messages so they are the same from run to run
                err = err.replace(str(td) + os.sep, "")
                detail = _first_lines(err)
                if p.returncode < 0:
                    return (FAILED, f"lt2c {step} killed by signal {-p.returncode}: {_one_line(err)}",
                            detail, errors, step)
                if _PANIC_RE.search(err):
                    m = re.search(r"panicked at .*", err, re.DOTALL)
                    msg = err[m.start():] if m else err
                    msg = msg.split("note: run with")[0]
                    return FAILED, f"lt2c {step} panicked: " + " ".join(msg.split())[:240], detail, errors, step
                if _UNSUPPORTED_RE.search(err):
                    return UNSUPPORTED, f"lt2c {step}: {_one_line(err)}", detail, errors, step
                return FAILED, f"lt2c {step} exit {p.returncode}: {_one_line(err)}", detail, errors, step
        try:
            with np.load(td / "out.npz", allow_pickle=False) as z:
                got = {k: z[k] for k in z.files}
        except Exception as e:  # noqa: BLE001
            return FAILED, f"cannot read lt2c outputs: {e}", "", errors, "outputs"

    problems = []
    for name, w in want.items():
        if name not in got:
            problems.append(f"{name}: missing from outputs (got {sorted(got)})")
            continue
        ok, why, e = compare(got[name], w)
        errors[name] = e
        if not ok:
            problems.append(f"{name}: {why}")
    if problems:
        return FAILED, "wrong output: " + "; ".join(problems)[:300], "", errors, "compare"
    return PASSED, "", "", errors, ""


def _bake_inputs(model, feed: dict):
    """A copy of the model whose integer, bool and 0-d inputs are initializers instead (what
    a static-shape compiler needs for shapes, axes, starts, trip counts), and the rest of the
    feed; None when there is nothing to bake."""
    import onnx
    from onnx import numpy_helper

    bake = {k: v for k, v in feed.items() if v.dtype.kind in "iub" or v.ndim == 0}
    if not bake:
        return None
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = [vi for vi in m.graph.input if vi.name not in bake]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    for k, v in bake.items():
        m.graph.initializer.append(numpy_helper.from_array(v, k))
    if m.ir_version < 4:
        m.ir_version = 4
    return m, {k: v for k, v in feed.items() if k not in bake}


def run_case(case: Case, lt2c: Path, timeout: float = DEFAULT_TIMEOUT, retry_const: bool = True) -> Result:
    t0 = time.monotonic()
    res = Result(case.name, case.op, case.group, FAILED)
    g = case.model.graph

    # dtype screen: declared types first, then the values themselves
    for vi in list(g.input) + list(g.output):
        ok, why = _value_info_dtype_ok(vi)
        if not ok:
            res.status, res.reason = UNSUPPORTED, f"dtype not supported by lt2c ({why})"
            return res
    init_names = {i.name for i in g.initializer}
    graph_inputs = [vi.name for vi in g.input if vi.name not in init_names]
    if len(graph_inputs) != len(case.inputs) or len(g.output) != len(case.outputs):
        res.reason = (f"harness: {len(graph_inputs)} inputs / {len(g.output)} outputs in the graph, "
                      f"{len(case.inputs)} / {len(case.outputs)} values")
        return res
    feed, want = {}, {}
    for names, values, dst in ((graph_inputs, case.inputs, feed),
                               ([vi.name for vi in g.output], case.outputs, want)):
        for name, v in zip(names, values):
            a = _to_array(v)
            if a is None:
                dt = getattr(v, "dtype", type(v).__name__)
                res.status, res.reason = UNSUPPORTED, f"dtype not supported by lt2c ({name}: {dt})"
                return res
            dst[name] = a

    deadline = t0 + timeout
    status, reason, detail, errors, step = _run_lt2c(case.model, feed, want, lt2c, deadline, timeout)
    res.status, res.reason, res.detail, res.errors = status, reason, detail, errors
    # A static-shape compiler needs shapes/axes/starts as constants, while the node tests feed
    # them as graph inputs. Still count the test as failed, but say whether lt2c gets the
    # op right once those inputs are initializers: that tells "needs a constant" from "wrong".
    if (retry_const and status == FAILED and step == "compile"
            and _COMPILE_TIME_RE.search(detail or reason)):
        baked = _bake_inputs(case.model, feed)
        if baked is not None:
            s2, r2, _, e2, _ = _run_lt2c(baked[0], baked[1], want, lt2c, deadline, timeout)
            res.const_inputs = s2 if s2 != FAILED else f"failed: {r2}"
            res.reason += f" [with int/scalar inputs as initializers: {s2}{': ' + r2 if r2 else ''}]"
    res.seconds = time.monotonic() - t0
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
    ap.add_argument("--sync-claimed", action="store_true",
                    help="rewrite the claimed ops list from frontend/src/ops/*.rs and exit")
    ap.add_argument("--claimed", type=Path, default=CLAIMED_FILE, help="claimed ops list (default: %(default)s)")
    ap.add_argument("--must-pass", type=Path, default=MUST_PASS_FILE, help="must-pass ops list (default: %(default)s)")
    ap.add_argument("--expected", type=Path, default=EXPECTED_FILE, help="expected-passing list (default: %(default)s)")
    args = ap.parse_args(argv)

    if args.sync_claimed:
        args.claimed.parent.mkdir(parents=True, exist_ok=True)
        args.claimed.write_text(claimed_ops_text())
        print(f"conformance: wrote {len(read_list(args.claimed))} claimed ops to {args.claimed}")
        return 0
    lt2c = args.lt2c.resolve()
    if not lt2c.exists():
        print(f"conformance: lt2c binary not found at {lt2c}", file=sys.stderr)
        return 2
    claimed = set(read_list(args.claimed))
    if not claimed:
        print(f"conformance: no claimed ops ({args.claimed})", file=sys.stderr)
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
    must_pass = set(read_list(args.must_pass))
    broken = sorted({r.group for r in results if r.status == FAILED and r.group in must_pass})
    if broken:
        rc = 1
        for op in broken:
            names = [r.name for r in results if r.group == op and r.status == FAILED]
            print(f"MUST-PASS op {op} has failing tests: {', '.join(names)}")

    passing = sorted(r.name for r in results if r.status == PASSED)
    regressions: list[str] = []
    if args.check_expected:
        expected = read_list(args.expected)
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
        args.expected.parent.mkdir(parents=True, exist_ok=True)
        args.expected.write_text("".join(n + "\n" for n in passing))
        print(f"conformance: wrote {len(passing)} test names to {args.expected}")

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
