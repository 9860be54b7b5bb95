"""Key secrets, hashing, redaction, scopes and the server secret file."""

from __future__ import annotations

import math
import os
import stat
import threading
from collections import Counter
from pathlib import Path

import pytest

from hearth.platform.errors import InvalidArgument
from hearth.platform.keys import (
    OPERATOR,
    KeyOwner,
    Principal,
    dump_scopes,
    generate_secret,
    hash_secret,
    load_or_create_server_secret,
    load_scopes,
    looks_like_secret,
    normalize_scopes,
    redact,
    verify_secret,
)

SERVER = b"s" * 32


@pytest.mark.parametrize(
    ("kind", "prefix"), [("project", "sk-proj-"), ("service_account", "sk-svcacct-"), ("admin", "sk-admin-")]
)
def test_secret_prefix_length_and_alphabet(kind: str, prefix: str) -> None:
    secret = generate_secret(kind)  # type: ignore[arg-type]
    assert secret.startswith(prefix)
    body = secret[len(prefix) :]
    # urlsafe base64: 6 bits per character, at least 256 bits of randomness
    assert len(body) * 6 >= 256
    assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert looks_like_secret(secret)


def test_secrets_are_unique_and_look_random() -> None:
    secrets_ = [generate_secret("project") for _ in range(2000)]
    assert len(set(secrets_)) == len(secrets_)
    # Shannon entropy of the body characters is close to log2(64) = 6 bits per character.
    counts = Counter("".join(s[len("sk-proj-") :] for s in secrets_))
    total = sum(counts.values())
    entropy = -sum(c / total * math.log2(c / total) for c in counts.values())
    assert entropy > 5.9


def test_hash_is_stable_hex_and_depends_on_both_inputs() -> None:
    secret = generate_secret("project")
    h = hash_secret(secret, SERVER)
    assert h == hash_secret(secret, SERVER)
    assert len(h) == 64 and int(h, 16) >= 0
    assert h != hash_secret(secret, b"t" * 32)
    assert h != hash_secret(secret + "x", SERVER)
    assert secret not in h
    assert verify_secret(secret, h, SERVER)
    assert not verify_secret(secret, hash_secret(secret, b"t" * 32), SERVER)


def test_redaction_keeps_only_prefix_and_last_four() -> None:
    secret = "sk-proj-" + "A" * 40 + "wxyz"
    assert redact(secret) == "sk-proj-...wxyz"
    assert redact("sk-svcacct-" + "B" * 40 + "1234") == "sk-svcacct-...1234"
    assert redact("sk-admin-" + "C" * 40 + "9876") == "sk-admin-...9876"
    assert redact("sk-legacykey0123456789") == "sk-...6789"
    assert redact("sk-proj-ab") == "sk-proj-..."  # too short to reveal anything


def test_shape_check_rejects_junk_before_hashing() -> None:
    assert not looks_like_secret("")
    assert not looks_like_secret("Bearer sk-proj-xxxxxxxxxxxxxxxxxxxx")
    assert not looks_like_secret("sk-" + "a" * 1000)
    assert not looks_like_secret("sk-proj-ünïcödé-xxxxxxxxxxxx")


def test_scopes_normalize_and_round_trip() -> None:
    assert normalize_scopes("all") == "all"
    assert normalize_scopes("read_only") == "read_only"
    assert normalize_scopes(["chat", "models", "chat"]) == frozenset({"chat", "models"})
    for scopes in ("all", "read_only", frozenset({"embeddings", "files"})):
        assert load_scopes(dump_scopes(scopes)) == scopes  # type: ignore[arg-type]
    assert dump_scopes(frozenset({"models", "chat"})) == '["chat", "models"]'
    with pytest.raises(InvalidArgument):
        normalize_scopes("everything")
    with pytest.raises(InvalidArgument):
        normalize_scopes(["chat", "images"])
    with pytest.raises(InvalidArgument):
        normalize_scopes([])


def _principal(scopes: object, kind: str = "project") -> Principal:
    return Principal(
        key_id="key_x", kind=kind, project_id=None if kind == "admin" else "proj_x",  # type: ignore[arg-type]
        org_id="org-x", scopes=scopes, owner=OPERATOR,  # type: ignore[arg-type]
    )


def test_principal_allows() -> None:
    full = _principal("all")
    assert full.allows("chat", write=True) and full.allows("models", write=False)
    assert not full.allows("admin", write=False)
    assert not full.allows("images", write=False)  # unknown family

    ro = _principal("read_only")
    assert ro.allows("models", write=False)
    assert not ro.allows("chat", write=True)
    assert not ro.allows("embeddings", write=True)

    restricted = _principal(frozenset({"chat"}))
    assert restricted.allows("chat", write=True)
    assert not restricted.allows("models", write=False)

    admin = _principal("all", kind="admin")
    assert admin.is_admin and admin.allows("admin", write=True)
    assert not admin.allows("chat", write=True)


def test_principal_is_frozen_and_hashable() -> None:
    p = _principal(frozenset({"chat"}))
    with pytest.raises(AttributeError):
        p.key_id = "other"  # type: ignore[misc]
    assert hash(p) == hash(_principal(frozenset({"chat"})))
    assert KeyOwner("user", "u", "n") == KeyOwner("user", "u", "n")


def test_server_secret_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "server_secret"
    old_umask = os.umask(0o022)
    try:
        first = load_or_create_server_secret(path)
    finally:
        os.umask(old_umask)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_server_secret(path) == first
    assert path.read_bytes() == first
    assert [p.name for p in path.parent.iterdir()] == ["server_secret"]  # no temp files left


def test_server_secret_concurrent_creation_agrees(tmp_path: Path) -> None:
    path = tmp_path / "server_secret"
    results: list[bytes] = []
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait()
        results.append(load_or_create_server_secret(path))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert results[0] == path.read_bytes()


def test_server_secret_too_short_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "server_secret"
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="expected at least 32"):
        load_or_create_server_secret(path)


def test_keys_module_does_not_import_sqlalchemy() -> None:
    import subprocess
    import sys

    code = "import sys, hearth.platform.keys; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
