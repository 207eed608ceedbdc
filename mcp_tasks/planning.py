"""The planners' operations as transaction scripts: creating batches, scheduling, editing and
rewiring dependencies, with unknown ids and cycles refused by the offending path."""

from __future__ import annotations

from typing import Any

from .errors import DependencyError, InvalidInput, InvalidTransition
from .models import SCHEMA_VERSION, Created, NewTask, Task, Usage
from .states import DEPENDENCY_EDIT_STATES, State
from .stores.base import WriteTx
from .transactions import Tx, check_version


def create_tasks(t: Tx, specs: list[NewTask], ids: list[str], ready: bool) -> Created:
    """Insert a batch; depends_on items are keys of this batch or existing task ids."""
    by_key = {s.key: ids[i] for i, s in enumerate(specs) if s.key is not None}
    resolved: list[list[str]] = []
    external: set[str] = set()
    for i, spec in enumerate(specs):
        deps: list[str] = []
        for ref in spec.depends_on:
            dep = by_key.get(ref, ref)
            if dep not in deps:
                deps.append(dep)
            if ref not in by_key:
                external.add(ref)
        resolved.append(deps)
    states = t.tx.states_of(sorted(external)) if external else {}
    unknown = sorted(external - set(states))
    if unknown:
        raise DependencyError(
            f"depends_on names unknown tasks or keys: {', '.join(unknown)}; use ids of existing tasks "
            "or keys of tasks in this batch",
            unknown=unknown,
        )
    cancelled = sorted(d for d, s in states.items() if s == State.CANCELLED)
    if cancelled:
        raise DependencyError(
            f"depends_on names cancelled tasks that will never be done: {', '.join(cancelled)}",
            cancelled=cancelled,
        )
    _refuse_batch_cycles(specs, ids, resolved)
    initial = State.PENDING if ready else State.BACKLOG
    for spec, tid, deps in zip(specs, ids, resolved):
        unmet = sum(1 for d in deps if states.get(d) != State.DONE)
        task = Task(
            id=tid, title=spec.title, description=spec.description, type=spec.type,
            priority=spec.priority, tags=list(spec.tags), state=initial, created_at=t.now,
            depends_on=sorted(deps), max_retries=spec.max_retries, version=1,
            schema_version=SCHEMA_VERSION, created_by=t.actor, requires_review=spec.requires_review,
            unmet_deps=unmet, usage=Usage(), updated_at=t.now,
        )
        t.tx.insert_task(task)
        fields = task.model_dump(mode="json", exclude={"blocks"}, exclude_defaults=True)
        info = {"key": spec.key} if spec.key is not None else None
        t.append(tid, "created", None, initial, {"set": fields, **(info or {})})
    for tid, deps in zip(ids, resolved):
        for dep in deps:
            t.tx.add_dep(tid, dep)
    return Created(ids=list(ids), by_key={k: v for k, v in by_key.items()})


def _refuse_batch_cycles(specs: list[NewTask], ids: list[str], resolved: list[list[str]]) -> None:
    """New tasks can only form cycles among themselves; name the first one found by key or id."""
    index = {tid: i for i, tid in enumerate(ids)}
    label = [s.key or ids[i] for i, s in enumerate(specs)]
    color = [0] * len(ids)  # 0 new, 1 on the stack, 2 done
    for root in range(len(ids)):
        if color[root]:
            continue
        stack: list[tuple[int, int]] = [(root, 0)]
        path = [root]
        color[root] = 1
        while stack:
            node, pos = stack[-1]
            local = [index[d] for d in resolved[node] if d in index]
            if pos < len(local):
                stack[-1] = (node, pos + 1)
                nxt = local[pos]
                if color[nxt] == 1:
                    cycle = path[path.index(nxt):] + [nxt]
                    chain = " -> ".join(label[c] for c in cycle)
                    raise DependencyError(f"dependency cycle: {chain}", path=[label[c] for c in cycle])
                if color[nxt] == 0:
                    color[nxt] = 1
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                color[node] = 2
                stack.pop()
                path.pop()


def schedule(t: Tx, ids: list[str]) -> list[Task]:
    """Move BACKLOG tasks to PENDING (all or none)."""
    out = []
    for tid in ids:
        task = t.load(tid)
        t.require(task, "schedule")
        out.append(t.change(task, State.PENDING, "scheduled", {}))
    return out


def update(
    t: Tx,
    task_id: str,
    expected_version: int | None,
    fields: dict[str, Any],
    add_deps: list[str],
    remove_deps: list[str],
) -> Task:
    """Edit fields and rewire dependencies; cycles and unknown ids are refused."""
    task = t.load(task_id)
    check_version(task, expected_version)
    t.require(task, "update_task")
    changes = {k: v for k, v in fields.items() if getattr(task, k) != v}
    deps = list(task.depends_on)
    unmet = task.unmet_deps
    if add_deps or remove_deps:
        # an id named twice is one edit (as in create_tasks), not a second insert or delete
        add_deps, remove_deps = list(dict.fromkeys(add_deps)), list(dict.fromkeys(remove_deps))
        if task.state not in DEPENDENCY_EDIT_STATES:
            allowed = ", ".join(s.value for s in sorted(DEPENDENCY_EDIT_STATES, key=list(State).index))
            raise InvalidTransition(
                f"dependencies of {task.id} can change only while it is {allowed}", task_id=task.id, state=task.state
            )
        missing = [d for d in remove_deps if d not in deps]
        if missing:
            raise InvalidInput(f"{task.id} does not depend on {', '.join(missing)}; its depends_on is {deps}")
        new = [d for d in add_deps if d not in deps and d not in remove_deps]
        if new:  # two concurrent edits must not each miss the cycle the other one closes
            t.tx.lock_dependency_graph()
        if task.id in new:
            raise DependencyError(f"dependency cycle: {task.id} -> {task.id}", path=[task.id, task.id])
        states = t.tx.states_of(sorted(set(new) | set(remove_deps)))
        unknown = [d for d in new if d not in states]
        if unknown:
            raise DependencyError(f"add_depends_on names unknown tasks: {', '.join(unknown)}", unknown=unknown)
        dead = [d for d in new if states[d] == State.CANCELLED]
        if dead:
            raise DependencyError(f"add_depends_on names cancelled tasks that will never be done: {', '.join(dead)}")
        for dep in new:
            path = _path(t.tx, dep, task.id)
            if path is not None:
                chain = [task.id, *path]
                raise DependencyError(f"dependency cycle: {' -> '.join(chain)}", path=chain)
        for dep in remove_deps:
            t.tx.remove_dep(task.id, dep)
            deps.remove(dep)
            unmet -= states[dep] != State.DONE
        for dep in new:
            t.tx.add_dep(task.id, dep)
            deps.append(dep)
            unmet += states[dep] != State.DONE
        changes["depends_on"] = sorted(deps)
        changes["unmet_deps"] = unmet
    if not changes:
        return task
    return t.change(task, None, "updated", changes)


def _path(tx: WriteTx, start: str, goal: str) -> list[str] | None:
    """A depends_on chain from `start` to `goal`, if one exists (breadth-first, one query a level)."""
    parent: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        if goal in parent:
            break
        edges = tx.depends_on_many(frontier)
        nxt = []
        for src in frontier:
            for dst in edges.get(src, []):
                if dst not in parent:
                    parent[dst] = src
                    nxt.append(dst)
        frontier = nxt
    if goal not in parent:
        return None
    chain: list[str] = []
    node: str | None = goal
    while node is not None:
        chain.append(node)
        node = parent[node]
    return chain[::-1]
