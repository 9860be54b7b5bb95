"""Object ids with OpenAI's prefixes and 128 bits of randomness (base62, 22 characters)."""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def random_id(prefix: str, nbytes: int = 16) -> str:
    n = int.from_bytes(secrets.token_bytes(nbytes), "big")
    chars = []
    for _ in range(22 if nbytes == 16 else (nbytes * 8 + 5) // 6 + 1):
        n, r = divmod(n, 62)
        chars.append(_ALPHABET[r])
    return prefix + "".join(chars)
