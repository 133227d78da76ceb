"""lt2c's runtime from Python: load a compiled model.bin and generate, without the CLI.

A thin ctypes layer over the C ABI (``capi/include/lt2.h``, ``liblt2_capi.so`` built by
``cargo build --release -p lt2-capi``). The library is found through ``$LT2C_CAPI`` (a path to
the .so), else ``target/release`` of this repository::

    from lt2.runtime import Model
    m = Model("model.bin", device="auto")        # "cpu", "cuda" or "auto"
    s = m.session(max_context=2048)
    logits = s.prefill([[1, 2, 3], [4, 5, 6]])   # [2, vocab]: each prompt's last logits
    logits = s.decode([7, 8])                    # [2, vocab]: one token per sequence
    tokens = m.generate([1, 2, 3], max_new_tokens=16)   # greedy
    outs = m.run({"input_ids": ids})             # the whole graph once, outputs by name

``lt2.inference_session`` wraps this in onnxruntime's ``InferenceSession`` shape.

Prompts of one prefill call may differ in length (those of one length run as one batch).
Errors raise ``Lt2Error`` with the runtime's message.
"""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path

import numpy as np

_ERR = 4096
# Element type codes of lt2_model_run (lt2.h).
_CODES = {np.dtype(np.float32): 0, np.dtype(np.int64): 1, np.dtype(np.bool_): 2}
_DTYPES = {v: k for k, v in _CODES.items()}


class Lt2Error(RuntimeError):
    """An error reported by lt2c's runtime."""


def _library_path() -> Path:
    env = os.environ.get("LT2C_CAPI")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "target" / "release" / "liblt2_capi.so"


_lib = None


def _load():
    global _lib
    if _lib is not None:
        return _lib
    path = _library_path()
    if not path.exists():
        raise Lt2Error(f"{path} not found: build it with `cargo build --release -p lt2-capi` or set LT2C_CAPI")
    lib = ctypes.CDLL(str(path))
    c_err = ctypes.c_char_p
    lib.lt2_model_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, c_err, ctypes.c_size_t]
    lib.lt2_model_open.restype = ctypes.c_void_p
    lib.lt2_model_free.argtypes = [ctypes.c_void_p]
    lib.lt2_model_device.argtypes = [ctypes.c_void_p]
    lib.lt2_model_device.restype = ctypes.c_char_p
    lib.lt2_model_vocab.argtypes = [ctypes.c_void_p]
    lib.lt2_model_vocab.restype = ctypes.c_size_t
    lib.lt2_session_new.argtypes = [ctypes.c_void_p, ctypes.c_size_t, c_err, ctypes.c_size_t]
    lib.lt2_session_new.restype = ctypes.c_void_p
    lib.lt2_session_new_with_exit.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_float, c_err, ctypes.c_size_t]
    lib.lt2_session_new_with_exit.restype = ctypes.c_void_p
    u64p = ctypes.POINTER(ctypes.c_uint64)
    lib.lt2_session_loop_iterations.argtypes = [ctypes.c_void_p, u64p, u64p]
    lib.lt2_session_free.argtypes = [ctypes.c_void_p]
    i64p, f32p = ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_float)
    lib.lt2_session_prefill.argtypes = [ctypes.c_void_p, i64p, ctypes.c_size_t, ctypes.c_size_t, f32p, c_err, ctypes.c_size_t]
    lib.lt2_session_decode.argtypes = [ctypes.c_void_p, i64p, ctypes.c_size_t, f32p, c_err, ctypes.c_size_t]
    lib.lt2_session_prefill_ragged.argtypes = [ctypes.c_void_p, i64p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_size_t, f32p, c_err, ctypes.c_size_t]
    lib.lt2_session_decode_recorded.argtypes = [ctypes.c_void_p]
    lib.lt2_model_signature.argtypes = [ctypes.c_void_p]
    lib.lt2_model_signature.restype = ctypes.c_char_p
    lib.lt2_model_run.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_int),
        ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(i64p), ctypes.POINTER(ctypes.c_void_p), c_err, ctypes.c_size_t,
    ]
    lib.lt2_model_run.restype = ctypes.c_void_p
    for name, res in [("count", ctypes.c_size_t), ("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("rank", ctypes.c_size_t),
                      ("dims", i64p), ("data", ctypes.c_void_p)]:
        fn = getattr(lib, f"lt2_outputs_{name}")
        fn.argtypes = [ctypes.c_void_p] if name == "count" else [ctypes.c_void_p, ctypes.c_size_t]
        fn.restype = res
    lib.lt2_outputs_free.argtypes = [ctypes.c_void_p]
    lib.lt2_sampler_new.argtypes = [ctypes.c_float, ctypes.c_size_t, ctypes.c_float, ctypes.c_uint64]
    lib.lt2_sampler_new.restype = ctypes.c_void_p
    lib.lt2_sampler_pick.argtypes = [ctypes.c_void_p, f32p, ctypes.c_size_t]
    lib.lt2_sampler_pick.restype = ctypes.c_int64
    lib.lt2_sampler_free.argtypes = [ctypes.c_void_p]
    _lib = lib
    return lib


def _err_buf():
    return ctypes.create_string_buffer(_ERR)


class Model:
    """A compiled model.bin loaded on a device."""

    def __init__(self, path, device: str = "auto"):
        lib = _load()
        err = _err_buf()
        self._ptr = lib.lt2_model_open(str(path).encode(), device.encode(), err, _ERR)
        if not self._ptr:
            raise Lt2Error(err.value.decode(errors="replace"))
        self._lib = lib

    @property
    def device(self) -> str:
        """The backend that runs the model, and why it was chosen."""
        return self._lib.lt2_model_device(self._ptr).decode()

    @property
    def vocab(self) -> int:
        return int(self._lib.lt2_model_vocab(self._ptr))

    @property
    def signature(self) -> dict:
        """The inputs and outputs: ``{"inputs": [{"name", "dtype", "dims"}], "outputs": [...]}``,
        dims as numbers or symbolic names."""
        return json.loads(self._lib.lt2_model_signature(self._ptr).decode())

    def run(self, inputs: dict) -> dict:
        """Runs the whole graph once (no session, no caches) on named numpy arrays (float32,
        int64 or bool); returns every output by name, in the model's output order."""
        arrays = {}
        for name, value in inputs.items():
            a = np.asarray(value)
            if a.dtype not in _CODES:
                raise Lt2Error(f"input `{name}` has dtype {a.dtype}; lt2c takes float32, int64 or bool")
            arrays[name] = np.ascontiguousarray(a)
        n = len(arrays)
        names = (ctypes.c_char_p * n)(*[k.encode() for k in arrays])
        codes = (ctypes.c_int * n)(*[_CODES[a.dtype] for a in arrays.values()])
        ranks = (ctypes.c_size_t * n)(*[a.ndim for a in arrays.values()])
        shapes = [np.ascontiguousarray(np.asarray(a.shape, dtype=np.int64)) for a in arrays.values()]
        i64p = ctypes.POINTER(ctypes.c_int64)
        dims = (i64p * n)(*[sh.ctypes.data_as(i64p) for sh in shapes])
        data = (ctypes.c_void_p * n)(*[a.ctypes.data for a in arrays.values()])
        err = _err_buf()
        res = self._lib.lt2_model_run(self._ptr, n, names, codes, ranks, dims, data, err, _ERR)
        if not res:
            raise Lt2Error(err.value.decode(errors="replace"))
        try:
            out = {}
            for i in range(self._lib.lt2_outputs_count(res)):
                dtype = _DTYPES[self._lib.lt2_outputs_dtype(res, i)]
                rank = self._lib.lt2_outputs_rank(res, i)
                shape = tuple(self._lib.lt2_outputs_dims(res, i)[k] for k in range(rank))
                count = int(np.prod(shape, dtype=np.int64))
                if count:
                    buf = (ctypes.c_char * (count * dtype.itemsize)).from_address(self._lib.lt2_outputs_data(res, i))
                    array = np.frombuffer(buf, dtype=dtype).reshape(shape).copy()
                else:
                    array = np.empty(shape, dtype)
                out[self._lib.lt2_outputs_name(res, i).decode()] = array
            return out
        finally:
            self._lib.lt2_outputs_free(res)

    def session(self, max_context: int = 4096, exit_threshold: float = 1.0) -> "Session":
        """A decode session: caches for up to `max_context` tokens per sequence; with
        `exit_threshold` < 1, Ouro's early exit (a token stops looping once its cumulative exit
        probability reaches it)."""
        return Session(self, max_context, exit_threshold)

    def generate(self, prompt, max_new_tokens: int, max_context: int | None = None, exit_threshold: float = 1.0,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> list[int]:
        """`max_new_tokens` tokens after `prompt` (one sequence): greedy at temperature 0, else
        sampled with top-k / top-p from a generator seeded with `seed`, as `lt2c generate`
        samples (the same arguments give the same tokens)."""
        s = self.session(max_context or len(prompt) + max_new_tokens, exit_threshold)
        sampler = self._lib.lt2_sampler_new(temperature, top_k, top_p, seed)
        try:
            logits = s.prefill([list(prompt)])[0]
            out = []
            f32p = ctypes.POINTER(ctypes.c_float)
            for i in range(max_new_tokens):
                row = np.ascontiguousarray(logits, dtype=np.float32)
                out.append(int(self._lib.lt2_sampler_pick(sampler, row.ctypes.data_as(f32p), row.size)))
                if i + 1 < max_new_tokens:
                    logits = s.decode([out[-1]])[0]
            return out
        finally:
            self._lib.lt2_sampler_free(sampler)

    def close(self):
        if getattr(self, "_ptr", None):
            self._lib.lt2_model_free(self._ptr)
            self._ptr = None

    def __del__(self):
        self.close()


class Session:
    """Prefill and decode over one model's caches (keeps the model alive)."""

    def __init__(self, model: Model, max_context: int, exit_threshold: float = 1.0):
        self._model = model  # the C session borrows the model
        self._lib = model._lib
        err = _err_buf()
        self._ptr = self._lib.lt2_session_new_with_exit(model._ptr, max_context, exit_threshold, err, _ERR)
        if not self._ptr:
            raise Lt2Error(err.value.decode(errors="replace"))

    @property
    def loop_iterations(self) -> tuple[int, int]:
        """(run, skipped by early exit) loop iterations so far."""
        run, skipped = ctypes.c_uint64(0), ctypes.c_uint64(0)
        self._lib.lt2_session_loop_iterations(self._ptr, ctypes.byref(run), ctypes.byref(skipped))
        return run.value, skipped.value

    @property
    def decode_recorded(self) -> bool:
        """Whether decode steps replay a recorded CUDA graph."""
        return bool(self._lib.lt2_session_decode_recorded(self._ptr))

    def prefill(self, prompts) -> np.ndarray:
        """Starts one sequence per prompt (lengths may differ: prompts of one length run as one
        batch); returns their last logits [len(prompts), vocab]."""
        prompts = [np.asarray(p, dtype=np.int64).reshape(-1) for p in prompts]
        if not prompts or any(p.size == 0 for p in prompts):
            raise Lt2Error("prefill needs at least one prompt, none of them empty")
        out = np.empty((len(prompts), self._model.vocab), np.float32)
        if len({p.size for p in prompts}) == 1:
            ids = np.ascontiguousarray(np.stack(prompts))
            self._call(self._lib.lt2_session_prefill, ids, ids.shape[0], ids.shape[1], out)
        else:
            ids = np.ascontiguousarray(np.concatenate(prompts))
            lens = (ctypes.c_size_t * len(prompts))(*[p.size for p in prompts])
            self._call(self._lib.lt2_session_prefill_ragged, ids, lens, len(prompts), out)
        return out

    def decode(self, tokens) -> np.ndarray:
        """Feeds one token per sequence; returns their logits."""
        ids = np.ascontiguousarray(np.asarray(tokens, dtype=np.int64).reshape(-1))
        out = np.empty((ids.shape[0], self._model.vocab), np.float32)
        self._call(self._lib.lt2_session_decode, ids, ids.shape[0], out)
        return out

    def _call(self, fn, ids, *rest):
        err = _err_buf()
        *sizes, out = rest
        i64p = ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
        f32p = out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        if fn(self._ptr, i64p, *sizes, f32p, err, _ERR) != 0:
            raise Lt2Error(err.value.decode(errors="replace"))

    def close(self):
        if getattr(self, "_ptr", None):
            self._lib.lt2_session_free(self._ptr)
            self._ptr = None

    def __del__(self):
        self.close()
