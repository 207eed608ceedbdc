"""Task ids and lease tokens: random, URL-safe, unique across hosts without coordination."""

from __future__ import annotations

import hashlib
import secrets

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # no i, l, o, u: easy to read aloud and type
ID_LENGTH = 10  # 50 random bits; a collision is detected by the store and drawn again


def new_task_id() -> str:
    """A fresh task id such as t-3f9k2m7q1x."""
    return "t-" + "".join(secrets.choice(ALPHABET) for _ in range(ID_LENGTH))


def new_lease_token() -> str:
    """A fresh lease token (144 random bits), shown only to the claimer."""
    return secrets.token_urlsafe(18)


def lease_hash(token: str) -> str:
    """What the database keeps of a lease token: a digest, so readers of the file cannot use it."""
    return hashlib.sha256(token.encode()).hexdigest()
