"""How tool calls are checked and answered: one place for refusals, results and argument errors.

`refusal` and `resource_failure` are the one mapping of registry refusals (TaskError) to MCP:
a tool answers with an is_error result whose text is the message and whose structured content
is `{"error": {code, message, task_id, state, allowed, ...}}`; a resource read fails with a
JSON-RPC error. `thin` turns a tool's result into compact structured content and a refusal into
`refusal`; `AgentTool` refuses unknown arguments and turns pydantic's validation report into one
line per argument, answered the same way; `TextKeepingMetadata` keeps text arguments as text.
"""

import functools
import json
import types
from typing import Annotated, Any, Awaitable, Callable, Union, get_args, get_origin

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ValidationError

from ..errors import InvalidInput, TaskError, TaskNotFound
from . import views as V
from .schema import compact


def result(model: BaseModel) -> CallToolResult:
    """A tool result: compact JSON for the model, the same object as structured content."""
    data = V.dump(model)
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def refusal(exc: TaskError, tool: str) -> CallToolResult:
    """A refused tool call: the message for the model, the error's code and data for programs."""
    text = f"Error executing tool {tool}: {exc.message}"
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content={"error": exc.to_dict()},
                          is_error=True)


def refused(answer: Any) -> dict[str, Any] | None:
    """What a tool call's answer (a model, or in wire form) says if it was refused: the error of
    `refusal` (code, message, ...), or for any other refusal its text as the message; else None."""
    if isinstance(answer, CallToolResult):
        if not answer.is_error:
            return None
        content: Any = answer.structured_content
        texts: list[Any] = [c.text for c in answer.content if isinstance(c, TextContent)]
    elif isinstance(answer, dict) and answer.get("isError") is True:
        content = answer.get("structuredContent")
        texts = [c.get("text") for c in answer.get("content") or () if isinstance(c, dict)]
    else:
        return None
    error = content.get("error") if isinstance(content, dict) else None
    if isinstance(error, dict):
        return error
    return {"code": "tool_error", "message": " ".join(t for t in texts if isinstance(t, str))}


def resource_failure(exc: TaskError) -> ResourceError:
    """The JSON-RPC error a failed resource read answers with (unknown and malformed ids: not found)."""
    if isinstance(exc, (TaskNotFound, InvalidInput)):
        return ResourceNotFoundError(exc.message)
    return ResourceError(exc.message)


def thin(fn: Callable[..., Awaitable[BaseModel]]) -> Callable[..., Awaitable[CallToolResult]]:
    """Turn a tool's result model into compact structured content, and a registry refusal into
    `refusal` (a tool may return its own CallToolResult: public SDK API)."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> CallToolResult:
        try:
            return result(await fn(*args, **kwargs))
        except TaskError as exc:
            return refusal(exc, fn.__name__)

    return wrapper


def _admits_str(annotation: Any) -> bool:
    """Whether an argument annotation accepts a plain string (str, Annotated[str, ...], str | None)."""
    if get_origin(annotation) is Annotated:
        return _admits_str(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_admits_str(a) for a in get_args(annotation))
    return annotation is str


class TextKeepingMetadata(FuncMetadata):
    """The SDK's argument handling, except that text arguments stay text.

    The SDK decodes a JSON-looking string for every argument not annotated exactly `str` (for
    clients that send lists as JSON strings), so a note such as '["a"]' or a description holding
    JSON turned into a list or object and was refused as "not a valid string".
    """

    def pre_parse_json(self, data: dict[str, Any]) -> dict[str, Any]:
        """Pre-parse JSON strings only for arguments that cannot be a string."""
        fields = self.arg_model.model_fields
        text = {k for k in data if k in fields and _admits_str(fields[k].annotation)}
        parsed = super().pre_parse_json({k: v for k, v in data.items() if k not in text})
        return {k: (v if k in text else parsed[k]) for k, v in data.items()}


_JSON_TYPES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
               dict: "an object", type(None): "null"}


def _shown(value: Any) -> str:
    """A short, safe description of a rejected value (never the whole of a huge input)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float) or (isinstance(value, int) and abs(value) < 10**24):
        return repr(value)
    if isinstance(value, int):  # str() of a huge int raises; its size is what matters
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, str) and len(value) <= 40:
        return json.dumps(value)  # ASCII escapes: control characters and odd Unicode stay visible
    if isinstance(value, str):
        return f"{json.dumps(value[:20])[:-1]}...\" ({len(value)} characters)"
    if isinstance(value, (list, tuple)):
        return f"an array of {len(value)} items"
    return _JSON_TYPES.get(type(value), "an object")


def _name(key: Any) -> str:
    """An argument or field name as a message shows it: plain if it looks like one, else quoted and escaped."""
    return key if isinstance(key, str) and key.isidentifier() and len(key) <= 40 else _shown(key)


def _schema_at(schema: dict[str, Any], loc: tuple[Any, ...]) -> dict[str, Any]:
    """The (compacted, ref-free) sub-schema that describes the value at `loc`."""
    for part in loc:
        node = schema.get("items") if isinstance(part, int) else schema.get("properties", {}).get(part)
        if not isinstance(node, dict):
            return {}
        schema = next((o for o in node.get("anyOf", []) if o.get("type") != "null"), node)
    return schema


def argument_problems(exc: ValidationError, schema: dict[str, Any], limit: int = 5) -> str:
    """pydantic's report cut down to `argument: problem (got value)` lines an agent can act on."""
    parts = []
    errors = exc.errors(include_url=False)
    for err in errors[:limit]:
        loc = tuple(err["loc"])
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{_name(p)}" for p in loc).lstrip(".") or "arguments"
        if err["type"] == "missing":
            parts.append(f"{where} is required")
        elif err["type"] == "extra_forbidden":
            allowed = ", ".join(_schema_at(schema, loc[:-1]).get("properties", {}))
            parts.append(f"{where} is not a known field; fields: {allowed}")
        else:
            msg = err["msg"][0].lower() + err["msg"][1:]
            parts.append(f"{where}: {msg} (got {_shown(err.get('input'))})")
    more = f"; and {len(errors) - limit} more" if len(errors) > limit else ""
    return "invalid arguments: " + "; ".join(parts) + more


class AgentTool(Tool):
    """A tool whose argument refusals read as instructions.

    Unknown arguments are refused (a misspelt `titel` must not look like a successful edit), and
    pydantic's validation report (type codes, echoed input, documentation URLs) becomes one line
    per argument naming what was wrong.
    """

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        """Check the argument names, run the tool as the SDK does, and answer argument errors as `refusal`."""
        known = self.parameters.get("properties", {})
        unknown = [k for k in arguments if k not in known]
        if unknown:
            problem = f"unknown argument {', '.join(map(_shown, unknown))}; {self.name} takes: {', '.join(known)}"
            return refusal(InvalidInput(problem), self.name)
        try:
            return await super().run(arguments, context, convert_result)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):  # the arguments did not fit the schema
                return refusal(InvalidInput(argument_problems(cause, self.parameters)), self.name)
            raise


def make_tool(fn: Callable[..., Any], annotations: Any) -> Tool:
    """A registered tool with compact schemas and agent-readable argument errors.

    No public option of the SDK (2.3) does any of this: `Tool.from_function` takes no argument
    parser or error formatter, and `FuncMetadata.pre_parse_json` cannot be turned off. Each
    override is checked through a real client by tests/test_sdk_overrides.py.
    """
    tool = AgentTool.from_function(fn, annotations=annotations)
    tool.fn_metadata = TextKeepingMetadata(**dict(tool.fn_metadata))
    tool.parameters = compact(tool.parameters)
    tool.fn_metadata.output_schema = compact(tool.fn_metadata.output_schema, output=True)
    return tool
