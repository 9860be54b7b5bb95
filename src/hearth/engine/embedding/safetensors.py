"""A minimal reader of the safetensors format into numpy (no torch, no extra package).

The format: an 8-byte little-endian header length, a JSON header mapping each tensor name to
its dtype, shape and byte range, then the raw little-endian data.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt

_DTYPES: dict[str, str] = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U8": "u1", "BOOL": "?",
}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """The file is not a readable safetensors file."""


def read_safetensors(path: str | Path) -> dict[str, npt.NDArray[np.generic]]:
    """Every tensor of the file, as numpy arrays (BF16 widened to float32). The file is
    memory-mapped; arrays are read-only views until the caller copies them."""
    p = Path(path)
    raw = np.memmap(p, dtype=np.uint8, mode="r")
    if raw.size < 8:
        raise SafetensorsError(f"{p}: too short to be a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8].tobytes())
    if n > _MAX_HEADER or 8 + n > raw.size:
        raise SafetensorsError(f"{p}: bad header length {n}")
    try:
        header = json.loads(raw[8:8 + n].tobytes())
    except ValueError as exc:
        raise SafetensorsError(f"{p}: header is not JSON") from exc
    base = 8 + n
    out: dict[str, npt.NDArray[np.generic]] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (begin, end) = meta["dtype"], tuple(meta["shape"]), meta["data_offsets"]
        data = raw[base + begin:base + end]
        if dtype == "BF16":
            wide = data.view("<u2").astype(np.uint32) << 16
            out[name] = wide.view(np.float32).reshape(shape)
            continue
        if dtype not in _DTYPES:
            raise SafetensorsError(f"{p}: tensor {name} has unsupported dtype {dtype}")
        out[name] = data.view(_DTYPES[dtype]).reshape(shape)
    return out
