"""Read GGUF key/value metadata without loading a model.

Only the header is parsed: magic, version, tensor count, KV count, then the KV pairs. Reading stops
before the tensor infos, so the cost is proportional to the metadata (dominated by the tokenizer
vocabulary), never to the weights. A model may be split into raw byte chunks (one file cut into
consecutive pieces); pass the chunk paths in order and reads continue across chunk boundaries.

Guarantees:
- scalar values come back as Python ``int``/``float``/``bool``/``str``;
- arrays come back as ``list`` (nested arrays as nested lists);
- with ``skip_arrays=True`` arrays are skipped (their bytes are walked, not decoded) and the value
  is an :class:`ArrayInfo` giving the element type and length, which is enough for e.g. vocab size;
- malformed input raises :class:`GGUFFormatError`, never returns a partial dict silently.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeAlias

__all__ = [
    "ArrayInfo",
    "GGUFFormatError",
    "GGUFMetadata",
    "MetaValue",
    "read_gguf_metadata",
]

GGUF_MAGIC = b"GGUF"

# GGUF value type ids (ggml/include/gguf.h).
_UINT8, _INT8, _UINT16, _INT16, _UINT32, _INT32, _FLOAT32, _BOOL, _STRING, _ARRAY = range(10)
_UINT64, _INT64, _FLOAT64 = 10, 11, 12

# Fixed-size scalar types: struct format (little-endian) and byte size.
_SCALARS: dict[int, tuple[str, int]] = {
    _UINT8: ("<B", 1),
    _INT8: ("<b", 1),
    _UINT16: ("<H", 2),
    _INT16: ("<h", 2),
    _UINT32: ("<I", 4),
    _INT32: ("<i", 4),
    _FLOAT32: ("<f", 4),
    _BOOL: ("<?", 1),
    _UINT64: ("<Q", 8),
    _INT64: ("<q", 8),
    _FLOAT64: ("<d", 8),
}

# Guards against garbage lengths turning into multi-GB allocations.
_MAX_STRING = 64 * 1024 * 1024
_MAX_ARRAY = 1 << 28


class GGUFFormatError(ValueError):
    """The bytes are not a GGUF file we understand (bad magic, version, type or truncation)."""


@dataclass(frozen=True, slots=True)
class ArrayInfo:
    """Stand-in for an array value skipped with ``skip_arrays=True``."""

    element_type: int
    length: int


MetaValue: TypeAlias = int | float | bool | str | list["MetaValue"] | ArrayInfo


@dataclass(frozen=True, slots=True)
class GGUFMetadata:
    """The parsed header: format version, tensor count and the KV pairs in file order."""

    version: int
    tensor_count: int
    kv: dict[str, MetaValue]

    @property
    def architecture(self) -> str | None:
        arch = self.kv.get("general.architecture")
        return arch if isinstance(arch, str) else None

    @property
    def name(self) -> str | None:
        name = self.kv.get("general.name")
        return name if isinstance(name, str) else None

    @property
    def chat_template(self) -> str | None:
        tmpl = self.kv.get("tokenizer.chat_template")
        return tmpl if isinstance(tmpl, str) else None

    @property
    def context_length(self) -> int | None:
        """``<arch>.context_length``: the context the model was trained for."""
        arch = self.architecture
        value = self.kv.get(f"{arch}.context_length") if arch else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def token_id(self, which: str) -> int | None:
        """``tokenizer.ggml.<which>_token_id`` for which in bos, eos, unk, pad, ..."""
        value = self.kv.get(f"tokenizer.ggml.{which}_token_id")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def token_text(self, token_id: int | None) -> str | None:
        """The vocabulary entry for ``token_id``, if the vocab was read (not skipped)."""
        tokens = self.kv.get("tokenizer.ggml.tokens")
        if token_id is None or not isinstance(tokens, list) or not 0 <= token_id < len(tokens):
            return None
        text = tokens[token_id]
        return text if isinstance(text, str) else None


class _ChunkedReader:
    """Sequential reader over one or more files treated as one concatenated byte stream."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = list(paths)
        self._index = 0
        self._file: BinaryIO | None = None
        self._open_next()

    def _open_next(self) -> bool:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._index >= len(self._paths):
            return False
        # A large buffer: the vocab is ~150k tiny reads, so syscall count matters.
        self._file = open(self._paths[self._index], "rb", buffering=1 << 20)  # noqa: SIM115
        self._index += 1
        return True

    def read(self, n: int) -> bytes:
        if self._file is None:
            raise GGUFFormatError("unexpected end of GGUF data")
        data = self._file.read(n)
        if len(data) == n:
            return data
        parts = [data]
        missing = n - len(data)
        while missing > 0:
            if not self._open_next():
                raise GGUFFormatError("unexpected end of GGUF data")
            assert self._file is not None
            more = self._file.read(missing)
            parts.append(more)
            missing -= len(more)
        return b"".join(parts)

    def skip(self, n: int) -> None:
        # Skipped spans are small (strings), so reading is simpler than seeking across chunks.
        self.read(n)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _Parser:
    def __init__(self, reader: _ChunkedReader, skip_arrays: bool) -> None:
        self._r = reader
        self._skip_arrays = skip_arrays

    def u32(self) -> int:
        value: int = struct.unpack("<I", self._r.read(4))[0]
        return value

    def u64(self) -> int:
        value: int = struct.unpack("<Q", self._r.read(8))[0]
        return value

    def string(self) -> str:
        length = self.u64()
        if length > _MAX_STRING:
            raise GGUFFormatError(f"implausible string length {length}")
        # Invalid UTF-8 exists in some vocabularies (byte tokens); keep going rather than fail.
        return self._r.read(length).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> MetaValue:
        scalar = _SCALARS.get(vtype)
        if scalar is not None:
            fmt, size = scalar
            result: int | float | bool = struct.unpack(fmt, self._r.read(size))[0]
            return result
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            return self.array()
        raise GGUFFormatError(f"unknown GGUF value type {vtype}")

    def array(self) -> MetaValue:
        etype = self.u32()
        length = self.u64()
        if length > _MAX_ARRAY:
            raise GGUFFormatError(f"implausible array length {length}")
        if self._skip_arrays:
            self._skip_values(etype, length)
            return ArrayInfo(etype, length)
        scalar = _SCALARS.get(etype)
        if scalar is not None:
            # One unpack call for the whole array: token_type/scores have ~150k entries.
            fmt, size = scalar
            values = struct.unpack(f"<{length}{fmt[1]}", self._r.read(size * length))
            return list(values)
        return [self.value(etype) for _ in range(length)]

    def _skip_values(self, etype: int, length: int) -> None:
        scalar = _SCALARS.get(etype)
        if scalar is not None:
            self._r.skip(scalar[1] * length)
        elif etype == _STRING:
            for _ in range(length):
                self._r.skip(self.u64())
        elif etype == _ARRAY:
            for _ in range(length):
                inner = self.u32()
                self._skip_values(inner, self.u64())
        else:
            raise GGUFFormatError(f"unknown GGUF array element type {etype}")


def read_gguf_metadata(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    skip_arrays: bool = False,
) -> GGUFMetadata:
    """Parse the GGUF header of ``source`` (a path, or chunk paths in order) up to the tensor infos."""
    if isinstance(source, (str, os.PathLike)):
        paths = [Path(source)]
    else:
        paths = [Path(p) for p in source]
    if not paths:
        raise ValueError("no GGUF path given")
    reader = _ChunkedReader(paths)
    try:
        if reader.read(4) != GGUF_MAGIC:
            raise GGUFFormatError(f"{paths[0]} is not a GGUF file (bad magic)")
        parser = _Parser(reader, skip_arrays)
        version = parser.u32()
        if version not in (2, 3):
            # v1 used 32-bit lengths; nothing current writes it.
            raise GGUFFormatError(f"unsupported GGUF version {version}")
        tensor_count = parser.u64()
        kv_count = parser.u64()
        kv: dict[str, MetaValue] = {}
        for _ in range(kv_count):
            key = parser.string()
            kv[key] = parser.value(parser.u32())
        return GGUFMetadata(version=version, tensor_count=tensor_count, kv=kv)
    finally:
        reader.close()
