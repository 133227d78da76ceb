"""Helpers for writing test fixtures byte-for-byte reproducibly."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest timestamp; numpy.savez stamps "now"


def save_npz(path, **arrays) -> None:
    """Write an ``.npz`` that ``numpy.load`` reads, with fixed timestamps and key order
    (as given), so the same arrays always give the same bytes (``numpy.savez`` does not)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            data = io.BytesIO()
            np.lib.format.write_array(data, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, data.getvalue())
    Path(path).write_bytes(buf.getvalue())


def load_npz(path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` as a plain dict."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
