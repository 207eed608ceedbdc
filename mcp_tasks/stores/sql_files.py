"""Finding and parsing the `storage/<dialect>/` files: named queries, migrations, schema."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..packaged import data_folder

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def storage_dir(dialect: str) -> Path:
    """The folder holding `dialect`'s SQL files."""
    return data_folder("storage", f"{dialect}/queries.sql") / dialect


@cache
def queries(dialect: str, file: str = "queries.sql") -> dict[str, str]:
    """Named queries of `dialect` in `file` (the store's queries.sql by default): name -> SQL text."""
    text = (storage_dir(dialect) / file).read_text(encoding="utf-8")
    parts = _NAME.split(text)
    out: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        if name in out:
            raise ValueError(f"query {name!r} defined twice in {dialect}/{file}")
        lines = body.strip().splitlines()
        while lines and lines[-1].lstrip().startswith("--"):  # a comment heading the next section
            lines.pop()
        out[name] = "\n".join(lines).strip().rstrip(";").strip()
    return out


@dataclass(frozen=True)
class Migration:
    """One numbered schema change."""

    version: int
    name: str
    sql: str


@cache
def migrations(dialect: str) -> tuple[Migration, ...]:
    """All migrations of `dialect`, in order; numbers must run 1, 2, 3 ... without gaps."""
    found = []
    for path in sorted((storage_dir(dialect) / "migrations").iterdir()):
        m = _MIGRATION.match(path.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), path.read_text(encoding="utf-8")))
    for i, mig in enumerate(found, start=1):
        if mig.version != i:
            raise ValueError(f"{dialect} migrations must be numbered 0001, 0002, ... without gaps")
    return tuple(found)


def schema(dialect: str) -> str:
    """The current schema, applied whole to a new database."""
    return (storage_dir(dialect) / "schema.sql").read_text(encoding="utf-8")
