"""Object ids with OpenAI's prefixes (``org-``, ``proj_``, ``svc_acct_``, ``key_``) and 128 bits of
randomness, base62-encoded in 22 characters."""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

ORG_PREFIX = "org-"
PROJECT_PREFIX = "proj_"
SERVICE_ACCOUNT_PREFIX = "svc_acct_"
KEY_PREFIX = "key_"


def new_id(prefix: str) -> str:
    n = int.from_bytes(secrets.token_bytes(16), "big")
    chars = []
    for _ in range(22):  # 62**22 > 2**128
        n, r = divmod(n, 62)
        chars.append(_ALPHABET[r])
    return prefix + "".join(chars)
