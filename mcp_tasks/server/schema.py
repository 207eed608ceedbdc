"""Compact JSON Schemas for tools/list: same meaning, fewer bytes in every agent's context.

- generated `title`s go, and so do falsy defaults (`null`, `[]`, `0`, `false`, ...);
- an optional property is advertised as its type alone: callers may omit it, and results omit
  fields that have no value, so `anyOf [X, null]` says nothing more than `X` does;
- output schemas (read by programs, not models) also drop descriptions.

Validation is untouched: the SDK validates arguments with the pydantic models, not these dicts.
"""

from __future__ import annotations

from typing import Any

_MAPS = ("$defs", "definitions", "patternProperties")


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options and len(options) == 2:
        other = next(o for o in options if o != {"type": "null"})
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return {**other, **rest}
    t = schema.get("type")
    if isinstance(t, list) and "null" in t:
        kept = [x for x in t if x != "null"]
        return {**schema, "type": kept[0] if len(kept) == 1 else kept}
    return schema


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace `$ref`s to local `$defs` by the definitions (tool schemas here are not recursive)."""
    defs = schema.get("$defs", {})

    def walk(node: Any, depth: int = 0) -> Any:
        if depth > 20:
            raise ValueError("schema too deep or recursive to inline")
        if isinstance(node, list):
            return [walk(n, depth + 1) for n in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = walk(defs[ref[len("#/$defs/"):]], depth + 1)
            return {**target, **{k: walk(v, depth + 1) for k, v in node.items() if k != "$ref"}}
        return {k: walk(v, depth + 1) for k, v in node.items() if k != "$defs"}

    return walk(schema)


def compact(schema: Any, *, output: bool = False) -> Any:
    """A smaller, equivalent JSON Schema (`output=True` for result schemas)."""
    if isinstance(schema, dict) and "$defs" in schema:
        schema = inline_refs(schema)
    if isinstance(schema, list):
        return [compact(s, output=output) for s in schema]
    if not isinstance(schema, dict):
        return schema
    required = set(schema.get("required", []))
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" or (key == "description" and output and isinstance(value, str)):
            continue
        if key == "default" and not value and value is not True:
            continue  # falsy defaults (null, [], {}, "", 0, false) are what omitting means
        if key == "properties" and isinstance(value, dict):
            out[key] = {
                name: compact(sub if name in required else _not_null(sub), output=output)
                for name, sub in value.items()
            }
        elif key in _MAPS and isinstance(value, dict):
            # a model's docstring says nothing the property names do not
            out[key] = {name: compact({k: v for k, v in sub.items() if k != "description"}, output=output)
                        for name, sub in value.items()}
        else:
            out[key] = compact(value, output=output)
    return out
