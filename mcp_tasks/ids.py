"""Task ids: short, URL-safe, random enough to be unique across hosts without coordination."""

from __future__ import annotations

import secrets

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # no i, l, o, u: easy to read aloud and type
ID_LENGTH = 10  # 50 random bits; a collision is detected by the store and drawn again


def new_task_id() -> str:
    """A fresh task id such as t-3f9k2m7q1x."""
    return "t-" + "".join(secrets.choice(ALPHABET) for _ in range(ID_LENGTH))
