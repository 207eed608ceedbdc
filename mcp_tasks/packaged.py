"""Locating the data folders that ship with the package: storage/ (SQL) and prompts/."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_folder(name: str, marker: str) -> Path:
    """`name` inside the installed package (wheel) or beside it (source checkout).

    `marker` is a file or folder that must exist inside it, so a stray empty folder is skipped.
    """
    candidates = (_PKG / name, _PKG.parent / name)
    for base in candidates:
        if (base / marker).exists():
            return base
    raise FileNotFoundError(f"{name}/ not found (looked in {', '.join(str(c) for c in candidates)})")
