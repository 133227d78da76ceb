"""onnxruntime's ``InferenceSession`` shape over lt2c, so a pipeline written for onnxruntime
runs on lt2c by changing one import::

    from lt2.inference_session import InferenceSession     # was: from onnxruntime import ...
    sess = InferenceSession("model.onnx", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    [i.name for i in sess.get_inputs()]                      # NodeArg: name, type, shape
    logits, = sess.run(["logits"], {"input_ids": ids})

A path ending in ``.onnx`` (or the model's bytes) is compiled with the ``lt2c`` binary once and
the model.bin kept in a cache (``$LT2C_CACHE_DIR``, else ``~/.cache/lt2c``), keyed by the ONNX
bytes, the external data files it names, the lt2c binary and the compile arguments; any other
path is read as a compiled model.bin. ``lt2c`` is ``$LT2C``, else this repository's
``target/release/lt2c``, else the one on ``PATH``.

Providers map to lt2c's devices as onnxruntime orders them: CUDA (or TensorRT) listed → "auto"
(the GPU when usable, else the CPU, as onnxruntime falls back); only the CPU → "cpu"; none given
→ "auto". ``get_providers()`` says what runs. ``run`` checks names and dtypes as onnxruntime does
(float32, int64 and bool inputs) and returns numpy arrays.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .runtime import Lt2Error, Model

_GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
_TYPES = {"float32": "tensor(float)", "int64": "tensor(int64)", "bool": "tensor(bool)", "float16": "tensor(float16)", "bfloat16": "tensor(bfloat16)"}


@dataclass(frozen=True)
class NodeArg:
    """An input or output, as onnxruntime's ``NodeArg`` describes it."""

    name: str
    type: str
    shape: list


def _lt2c() -> str:
    env = os.environ.get("LT2C")
    if env:
        return env
    local = Path(__file__).resolve().parents[2] / "target" / "release" / "lt2c"
    if local.exists():
        return str(local)
    found = shutil.which("lt2c")
    if not found:
        raise Lt2Error("the lt2c binary was not found: set $LT2C, build it (cargo build --release) or put it on PATH")
    return found


def _cache_key(onnx: bytes, folder: Path | None, lt2c: str, args: list[str]) -> str:
    h = hashlib.sha256(onnx)
    st = os.stat(lt2c)
    h.update(f"lt2c {os.path.realpath(lt2c)} {st.st_size} {st.st_mtime_ns} {args}".encode())
    # External data files are named in the ONNX bytes: their size and time join the key.
    if folder is not None:
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix != ".onnx" and f.name.encode() in onnx:
                fs = f.stat()
                h.update(f"{f.name} {fs.st_size} {fs.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def compile_onnx(model, compile_args=(), cache_dir=None) -> Path:
    """model.bin for an ONNX path or bytes, compiled once per content (see the module doc)."""
    lt2c = _lt2c()
    args = [str(a) for a in compile_args]
    if isinstance(model, (bytes, bytearray)):
        data, folder, src = bytes(model), None, None
    else:
        src = Path(model)
        data, folder = src.read_bytes(), src.resolve().parent
    cache = Path(cache_dir or os.environ.get("LT2C_CACHE_DIR") or Path.home() / ".cache" / "lt2c")
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"{_cache_key(data, folder, lt2c, args)}.bin"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        if src is None:
            src = Path(tmp) / "model.onnx"
            src.write_bytes(data)
        part = Path(tmp) / "model.bin"
        r = subprocess.run([lt2c, str(src), "-o", str(part), *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise Lt2Error(f"lt2c could not compile {src}: {r.stderr.strip()}")
        os.replace(part, out)  # atomic: a concurrent reader sees the whole file or none
    return out


class InferenceSession:
    """Runs a model as ``onnxruntime.InferenceSession`` does, on lt2c's runtime."""

    def __init__(self, path_or_bytes, sess_options=None, providers=None, provider_options=None, *, compile_args=(), cache_dir=None, **kwargs):
        names = [p[0] if isinstance(p, tuple) else p for p in (providers or [])]
        unknown = [p for p in names if p not in _GPU_PROVIDERS and p != "CPUExecutionProvider"]
        if unknown:
            raise ValueError(f"unknown providers {unknown}: lt2c runs CUDAExecutionProvider, TensorrtExecutionProvider (both: its CUDA backend) and CPUExecutionProvider")
        device = "auto" if not names or any(p in _GPU_PROVIDERS for p in names) else "cpu"
        is_onnx = isinstance(path_or_bytes, (bytes, bytearray)) or str(path_or_bytes).endswith(".onnx")
        self._path = compile_onnx(path_or_bytes, compile_args, cache_dir) if is_onnx else Path(path_or_bytes)
        self._model = Model(self._path, device)
        sig = self._model.signature
        self._inputs = [self._node_arg(x) for x in sig["inputs"]]
        self._outputs = [self._node_arg(x) for x in sig["outputs"]]
        self._dtypes = {x["name"]: x["dtype"] for x in sig["inputs"]}

    @staticmethod
    def _node_arg(x) -> NodeArg:
        return NodeArg(x["name"], _TYPES.get(x["dtype"], f"tensor({x['dtype']})"), list(x["dims"]))

    @property
    def model_path(self) -> Path:
        """The compiled model.bin this session runs."""
        return self._path

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        """What runs the model: the CUDA backend (then the CPU for nothing), or the CPU."""
        return ["CUDAExecutionProvider", "CPUExecutionProvider"] if self._model.device.startswith("cuda") else ["CPUExecutionProvider"]

    def run(self, output_names, input_feed, run_options=None) -> list[np.ndarray]:
        feed = {}
        for name, value in input_feed.items():
            if name not in self._dtypes:
                raise ValueError(f"invalid input name `{name}`; the model's inputs are {list(self._dtypes)}")
            a = np.asarray(value)
            got, want = a.dtype, np.dtype(self._dtypes[name])
            # A float16 export's inputs arrive as float16; lt2c computes them in float32.
            if got == np.float16 and want == np.float32:
                a = a.astype(np.float32)
            elif got != want:
                raise TypeError(f"input `{name}` has dtype {got}, the model takes {want}")
            feed[name] = a
        outs = self._model.run(feed)
        names = output_names or [o.name for o in self._outputs]
        missing = [n for n in names if n not in outs]
        if missing:
            raise ValueError(f"invalid output names {missing}; the model's outputs are {list(outs)}")
        return [outs[n] for n in names]
