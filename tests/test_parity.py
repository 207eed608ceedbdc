"""The SQL of every dialect agrees with the other dialects and with the Python that uses it.

- Both stores' queries.sql define the same query names (the shared transaction code runs them by
  name), and every named query in storage/ is used by the package.
- The states a `CHECK (state IN (...))` allows are exactly `states.State`, in every schema.
- Every other list of states in SQL stands for a set the Python rules define (`LEASED_STATES`,
  `FAILED_WORK`, `WAITING_STATES`), and `STATE_LISTS` says which: a new list in SQL must be added
  there, tied to its Python set, so the two can never drift apart. Every single state named in a
  comparison is a state.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mcp_tasks.rules import FAILED_WORK
from mcp_tasks.states import LEASED_STATES, WAITING_STATES, State
from mcp_tasks.stores import sql_files

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mcp_tasks"
DIALECTS = ["sqlite", "postgres"]
ALL = frozenset(State)

# Where SQL lists states, the Python set each list stands for, in the order the lists appear.
STATE_LISTS: dict[str, list[frozenset[State]]] = {
    "schema.sql": [ALL, LEASED_STATES],  # the CHECK on tasks.state; the reaper's index tasks_lease
    "expired_leases": [LEASED_STATES],
    "leases_from_the_future": [LEASED_STATES],
    "blocked_by_failed": [FAILED_WORK, WAITING_STATES],  # the dependency's state; the dependent's
    "pending_outlook": [FAILED_WORK],
}

_IN_LIST = re.compile(r"\bIN\s*\(\s*('[^']*'(?:\s*,\s*'[^']*')*)\s*\)", re.IGNORECASE)
_QUOTED = re.compile(r"'([^']*)'")
_COMPARED = re.compile(r"\b\w*state\s*(?:=|<>|!=)\s*'([^']*)'", re.IGNORECASE)


def without_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def state_lists(sql: str) -> list[frozenset[str]]:
    """Every `IN ('A', 'B', ...)` list of upper-case names (states, not event types) in `sql`."""
    lists = [frozenset(_QUOTED.findall(m.group(1))) for m in _IN_LIST.finditer(without_comments(sql))]
    return [names for names in lists if all(n.isupper() for n in names)]


def sql_sources(dialect: str) -> dict[str, str]:
    """The dialect's SQL by where it comes from: each named query, and the schema."""
    folder = sql_files.storage_dir(dialect)
    out = {"schema.sql": sql_files.schema(dialect)}
    for file in sorted(folder.glob("*.sql")):
        if file.name != "schema.sql":
            out.update(sql_files.queries(dialect, file.name))
    return out


def test_both_dialects_define_the_same_query_names():
    sqlite, postgres = set(sql_files.queries("sqlite")), set(sql_files.queries("postgres"))
    assert sorted(sqlite - postgres) == [] and sorted(postgres - sqlite) == [], (
        f"only in sqlite: {sorted(sqlite - postgres)}; only in postgres: {sorted(postgres - sqlite)}")
    assert len(sqlite) > 50


def test_every_named_query_is_used_by_the_package():
    code = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py"))
    named = {(dialect, file.name, name) for dialect in DIALECTS
             for file in sorted(sql_files.storage_dir(dialect).glob("*.sql"))
             for name in sql_files.queries(dialect, file.name)}
    unused = sorted(f"{d}/{f}: {n}" for d, f, n in named if f'"{n}"' not in code and f"'{n}'" not in code)
    assert unused == [], f"named queries nothing runs: {unused}"
    assert len(named) > 100


@pytest.mark.parametrize("dialect", DIALECTS)
def test_state_checks_allow_exactly_the_states(dialect):
    schema = without_comments(sql_files.schema(dialect))
    checks = re.findall(r"CHECK\s*\(\s*state\s+IN\s*\(([^)]*)\)\s*\)", schema, re.IGNORECASE)
    assert checks, "the tasks table checks its state column"
    for check in checks:
        names = _QUOTED.findall(check)
        assert len(names) == len(set(names)) and set(names) == {s.value for s in State}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_state_lists_in_sql_are_the_sets_the_python_rules_define(dialect):
    found = {where: lists for where, sql in sql_sources(dialect).items() if (lists := state_lists(sql))}
    expected = {where: [frozenset(s.value for s in states) for states in sets] for where, sets in STATE_LISTS.items()}
    assert found == expected, (
        "a list of states in SQL differs from its set in states.py / rules.py, or is new "
        "(tie it to its Python set in STATE_LISTS)")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_state_named_in_sql_is_a_state(dialect):
    named: set[str] = set()
    for sql in sql_sources(dialect).values():
        named |= set(_COMPARED.findall(without_comments(sql)))
        for names in state_lists(sql):
            named |= names
    assert named and named <= {s.value for s in State}, sorted(named - {s.value for s in State})
