"""hearth.engine.assets: chunked (`parts:`), `package:` and plain-path model sources."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from hearth.engine import assets
from hearth.engine.assets import Asset, AssetError

GGUF_BYTES = b"GGUF" + bytes(range(256)) * 41 + b"tail"


@pytest.fixture
def pkgroot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def make_chunk_packages(root: Path, data: bytes, n: int) -> str:
    """n packages `<prefix>1..n`, each with get_part_path() -> its slice of `data`."""
    prefix = f"hearth_test_chunks_{uuid.uuid4().hex[:8]}_part"
    size = -(-len(data) // n)
    for i in range(1, n + 1):
        pkg = root / f"{prefix}{i}"
        pkg.mkdir()
        (pkg / "chunk.bin").write_bytes(data[(i - 1) * size:i * size])
        (pkg / "__init__.py").write_text(
            "from pathlib import Path\n\n"
            "def get_part_path():\n"
            "    return str(Path(__file__).with_name('chunk.bin'))\n"
        )
    return prefix


def make_data_package(root: Path, files: dict[str, bytes]) -> str:
    name = f"hearth_test_pkg_{uuid.uuid4().hex[:8]}"
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for rel, data in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_bytes(data)
    return name


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ parts:


def test_parts_assembled_and_verified(pkgroot: Path, tmp_path: Path) -> None:
    prefix = make_chunk_packages(pkgroot, GGUF_BYTES, 3)
    asset = Asset("chunky", f"parts:{prefix}{{1..3}}", sha256=sha(GGUF_BYTES), size=len(GGUF_BYTES))
    models = tmp_path / "models"
    assert not assets.is_prepared(asset, models)
    seen: list[tuple[int, int]] = []
    path = assets.prepare(asset, models, progress=lambda d, t: seen.append((d, t)))
    assert path == models / "chunky.gguf"
    assert path.read_bytes() == GGUF_BYTES
    assert sorted(p.name for p in models.iterdir()) == ["chunky.gguf"]  # no .partial left
    assert seen and seen[-1] == (len(GGUF_BYTES), len(GGUF_BYTES))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert assets.is_prepared(asset, models)
    assert assets.verify(asset, models) == sha(GGUF_BYTES)


def test_part_paths_in_order(pkgroot: Path) -> None:
    prefix = make_chunk_packages(pkgroot, GGUF_BYTES, 4)
    paths = assets.part_paths(Asset("m", f"parts:{prefix}{{1..4}}"))
    assert len(paths) == 4
    assert b"".join(p.read_bytes() for p in paths) == GGUF_BYTES
    assert [p.parent.name for p in paths] == [f"{prefix}{i}" for i in range(1, 5)]


def test_parts_prepared_once(pkgroot: Path, tmp_path: Path) -> None:
    prefix = make_chunk_packages(pkgroot, GGUF_BYTES, 2)
    asset = Asset("once", f"parts:{prefix}{{1..2}}", sha256=sha(GGUF_BYTES), size=len(GGUF_BYTES))
    models = tmp_path / "models"
    first = assets.prepare(asset, models)
    mtime = first.stat().st_mtime_ns
    calls: list[int] = []
    again = assets.prepare(asset, models, progress=lambda d, t: calls.append(d))
    assert again == first and first.stat().st_mtime_ns == mtime
    assert calls == []  # not re-assembled


def test_parts_wrong_sha256(pkgroot: Path, tmp_path: Path) -> None:
    prefix = make_chunk_packages(pkgroot, GGUF_BYTES, 3)
    asset = Asset("bad", f"parts:{prefix}{{1..3}}", sha256="0" * 64, size=len(GGUF_BYTES))
    models = tmp_path / "models"
    with pytest.raises(AssetError) as ei:
        assets.prepare(asset, models)
    msg = str(ei.value)
    assert "bad" in msg and "sha256" in msg and sha(GGUF_BYTES) in msg
    assert list(models.iterdir()) == []  # neither the target nor a .partial
    assert not assets.is_prepared(asset, models)


def test_parts_wrong_size(pkgroot: Path, tmp_path: Path) -> None:
    prefix = make_chunk_packages(pkgroot, GGUF_BYTES, 2)
    asset = Asset("short", f"parts:{prefix}{{1..2}}", size=len(GGUF_BYTES) + 1)
    models = tmp_path / "models"
    with pytest.raises(AssetError, match=str(len(GGUF_BYTES))):
        assets.prepare(asset, models)
    assert not models.exists() or list(models.iterdir()) == []


def test_parts_missing_package(pkgroot: Path, tmp_path: Path) -> None:
    prefix = make_chunk_packages(pkgroot, GGUF_BYTES, 2)  # packages 1..2 exist, 3 does not
    asset = Asset("gappy", f"parts:{prefix}{{1..3}}")
    with pytest.raises(AssetError) as ei:
        assets.prepare(asset, tmp_path / "models")
    msg = str(ei.value)
    assert f"{prefix}3" in msg and "gappy" in msg and "not installed" in msg
    assert not (tmp_path / "models" / "gappy.gguf").exists()
    assert not assets.is_prepared(asset, tmp_path / "models")


def test_parts_package_without_chunk_file(pkgroot: Path, tmp_path: Path) -> None:
    prefix = make_chunk_packages(pkgroot, GGUF_BYTES, 2)
    (pkgroot / f"{prefix}2" / "chunk.bin").unlink()
    with pytest.raises(AssetError, match=f"{prefix}2"):
        assets.prepare(Asset("m", f"parts:{prefix}{{1..2}}"), tmp_path / "models")


def test_parts_not_gguf_rejected(pkgroot: Path, tmp_path: Path) -> None:
    data = b"NOPE" + b"x" * 100
    prefix = make_chunk_packages(pkgroot, data, 2)
    asset = Asset("junk", f"parts:{prefix}{{1..2}}")  # no sha256 pinned
    models = tmp_path / "models"
    with pytest.raises(AssetError, match="not a GGUF"):
        assets.prepare(asset, models)
    assert list(models.iterdir()) == []


def test_not_a_parts_source() -> None:
    with pytest.raises(AssetError):
        assets.part_paths(Asset("m", "parts:bad-name{1..2}"))


def test_verify_detects_corruption(pkgroot: Path, tmp_path: Path) -> None:
    prefix = make_chunk_packages(pkgroot, GGUF_BYTES, 2)
    asset = Asset("v", f"parts:{prefix}{{1..2}}", sha256=sha(GGUF_BYTES), size=len(GGUF_BYTES))
    models = tmp_path / "models"
    path = assets.prepare(asset, models)
    path.write_bytes(GGUF_BYTES[:-1] + b"X")
    with pytest.raises(AssetError, match="corrupt"):
        assets.verify(asset, models)
    path.unlink()
    with pytest.raises(AssetError, match="not prepared"):
        assets.verify(asset, models)


# ------------------------------------------------------------------ package:


def test_package_source_used_in_place(pkgroot: Path, tmp_path: Path) -> None:
    name = make_data_package(pkgroot, {"weights/model.gguf": GGUF_BYTES})
    asset = Asset("pkg", f"package:{name}/weights/model.gguf")
    models = tmp_path / "models"
    path = assets.prepare(asset, models)
    assert path == pkgroot / name / "weights" / "model.gguf"
    assert assets.is_prepared(asset, models)
    assert not models.exists()  # nothing copied


def test_package_source_missing_package(tmp_path: Path) -> None:
    asset = Asset("pkg", "package:hearth_no_such_package_xyz/model.gguf")
    assert not assets.is_prepared(asset, tmp_path)
    with pytest.raises(AssetError, match="hearth_no_such_package_xyz.*not installed"):
        assets.prepare(asset, tmp_path)


def test_package_source_missing_file(pkgroot: Path, tmp_path: Path) -> None:
    name = make_data_package(pkgroot, {"other.gguf": GGUF_BYTES})
    with pytest.raises(AssetError, match="not found"):
        assets.prepare(Asset("pkg", f"package:{name}/model.gguf"), tmp_path)


def test_package_source_not_gguf(pkgroot: Path, tmp_path: Path) -> None:
    name = make_data_package(pkgroot, {"model.gguf": b"<html>not a model</html>"})
    with pytest.raises(AssetError, match="not a GGUF"):
        assets.prepare(Asset("pkg", f"package:{name}/model.gguf"), tmp_path)


# ------------------------------------------------------------------ plain paths


def test_plain_path(tmp_path: Path) -> None:
    p = tmp_path / "mine.gguf"
    p.write_bytes(GGUF_BYTES)
    assert assets.prepare(Asset("mine", str(p)), tmp_path / "models") == p


def test_plain_path_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m.gguf").write_bytes(GGUF_BYTES)
    assert assets.prepare(Asset("m", "~/m.gguf"), tmp_path / "models") == tmp_path / "m.gguf"


def test_plain_path_missing(tmp_path: Path) -> None:
    asset = Asset("gone", str(tmp_path / "gone.gguf"))
    assert not assets.is_prepared(asset, tmp_path)
    with pytest.raises(AssetError, match="not found"):
        assets.prepare(asset, tmp_path)


@pytest.mark.parametrize("data", [b"", b"GGU", b"ggufxxxx", b"\x00" * 64])
def test_plain_path_not_gguf(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "fake.gguf"
    p.write_bytes(data)
    with pytest.raises(AssetError, match="not a GGUF"):
        assets.prepare(Asset("fake", str(p)), tmp_path / "models")
    assert p.exists()  # a user's file is never deleted


def test_target_paths(tmp_path: Path) -> None:
    assert assets.target_path(Asset("a", "parts:x{1..2}"), tmp_path) == tmp_path / "a.gguf"
    assert assets.target_path(Asset("b", "/abs/b.gguf"), tmp_path) == Path("/abs/b.gguf")
    assert assets.target_path(Asset("c", "rel/c.gguf"), tmp_path) == Path("rel/c.gguf")
    assert os.fspath(assets.target_path(Asset("d", "~/d.gguf"), tmp_path)).startswith(os.path.expanduser("~"))
