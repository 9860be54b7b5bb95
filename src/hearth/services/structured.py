"""Tools, tool_choice and response_format: from the wire request to a plan the chat service runs.

Everything that can be wrong with them is found here, before a request is queued, as a 400 whose
`param` points at the offending field. Forced calls and JSON outputs become a grammar the engine
enforces token by token (fail closed: never unconstrained output under a schema).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hearth.engine.types import Constraint
from hearth.protocol import chat as wire
from hearth.protocol.errors import InvalidRequest, UnsupportedParameter
from hearth.rendering.grammars import (
    GrammarError,
    ToolSpec,
    content_or_calls_constraint,
    json_object_constraint,
    json_schema_constraint,
    schema_system_prompt,
    tool_calls_constraint,
    tools_system_prompt,
)
from hearth.rendering.json_schema import SchemaError, check_schema_shape, check_strict_schema
from hearth.rendering.toolcalls import profile_for_template

# Omitted `parameters` means an empty parameter list; valid as a strict schema too.
_EMPTY_PARAMS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass(frozen=True, slots=True)
class StructuredPlan:
    """How one chat request treats tools and output formats."""

    template_tools: list[dict[str, Any]] | None = None  # handed to the chat template
    system_addendum: str | None = None  # tool instructions for templates with no tool support
    names: frozenset[str] = field(default_factory=frozenset)  # tool names parsed out of the output
    profile: str = "json"  # the output format of tool calls (rendering/toolcalls.py)
    parallel: bool = True
    legacy: bool = False  # deprecated `functions` API: answer with `function_call`
    constraint: Constraint | None = None


def _schema_param(where: str, exc: SchemaError) -> str:
    return f"{where}.{exc.path}" if exc.path else where


def _checked_schema(schema: dict[str, Any] | None, strict: bool, where: str, what: str) -> dict[str, Any]:
    schema = _EMPTY_PARAMS if schema is None else schema
    try:
        if strict:
            check_strict_schema(schema)
        else:
            check_schema_shape(schema)
    except SchemaError as exc:
        raise InvalidRequest(f"Invalid schema for {what}: {exc.message}", param=_schema_param(where, exc),
                             code="invalid_json_schema") from None
    return schema


def _compiled(build: Any, where: str, what: str) -> Constraint:
    try:
        c: Constraint = build()
    except GrammarError as exc:
        raise InvalidRequest(f"The schema for {what} cannot be enforced by this server: {exc}",
                             param=where, code="invalid_json_schema") from None
    return c


def _tool_list(req: wire.ChatCompletionRequest) -> tuple[list[wire.FunctionDefinition], str, bool]:
    """The request's functions (tools, or deprecated functions), the wire name used, and legacy."""
    if req.tools and req.functions:
        raise InvalidRequest("Send either `tools` or the deprecated `functions`, not both.", param="functions", code="invalid_value")
    if req.functions or (req.function_call is not None and not req.tools):
        # `function_call` alone is checked against the (missing) `functions`, not silently dropped.
        return list(req.functions or []), "functions", True
    fns: list[wire.FunctionDefinition] = []
    for i, t in enumerate(req.tools or []):
        if isinstance(t, wire.CustomTool):
            raise UnsupportedParameter(f"tools[{i}].type", "Custom tools are not supported; use function tools.")
        fns.append(t.function)
    seen: set[str] = set()
    for i, f in enumerate(fns):
        if f.name in seen:
            raise InvalidRequest(f"Duplicate function name `{f.name}` in tools.", param=f"tools[{i}].function.name", code="invalid_value")
        seen.add(f.name)
    return fns, "tools", False


def _choice(req: wire.ChatCompletionRequest, names: list[str], legacy: bool) -> tuple[str, list[str]]:
    """(mode, selected names): mode is none | auto | required; required names are the ones allowed."""
    param = "function_call" if legacy else "tool_choice"
    raw: Any = req.function_call if legacy else req.tool_choice
    if raw is not None and raw != "none" and not names:
        raise InvalidRequest(f"Invalid value for '{param}': '{param}' is only allowed when "
                             f"'{'functions' if legacy else 'tools'}' are specified.", param=param, code="invalid_value")
    if raw is None:
        return ("auto" if names else "none"), names
    if isinstance(raw, str):
        return raw, names
    if isinstance(raw, wire.CustomToolChoice):
        raise UnsupportedParameter("tool_choice.type", "Custom tools are not supported.")
    if isinstance(raw, wire.AllowedToolsChoice):
        picked: list[str] = []
        for j, t in enumerate(raw.allowed_tools.tools):
            fn = t.get("function") if isinstance(t.get("function"), dict) else t
            name = fn.get("name") if isinstance(fn, dict) else None
            if t.get("type") != "function" or not isinstance(name, str):
                raise InvalidRequest("Each allowed tool must be {\"type\": \"function\", \"function\": "
                                     "{\"name\": ...}}.", param=f"tool_choice.allowed_tools.tools[{j}]", code="invalid_value")
            if name not in names:
                raise InvalidRequest(f"Invalid value for 'tool_choice': function '{name}' is not in 'tools'.",
                                     param=f"tool_choice.allowed_tools.tools[{j}]", code="invalid_value")
            picked.append(name)
        return raw.allowed_tools.mode, picked
    name = raw.function.name if isinstance(raw, wire.NamedToolChoice) else raw.name
    if name not in names:
        where = f"{param}.function.name" if not legacy else f"{param}.name"
        raise InvalidRequest(f"Invalid value for '{param}': no function named '{name}' was given in "
                             f"'{'functions' if legacy else 'tools'}'.", param=where, code="invalid_value")
    return "required", [name]


def plan(req: wire.ChatCompletionRequest, template_source: str | None) -> StructuredPlan:
    fns, list_param, legacy = _tool_list(req)
    mode, selected = _choice(req, [f.name for f in fns], legacy)
    specs: dict[str, ToolSpec] = {}
    for i, f in enumerate(fns):
        where = f"{list_param}[{i}].parameters" if legacy else f"tools[{i}].function.parameters"
        specs[f.name] = ToolSpec(f.name, _checked_schema(f.parameters, bool(f.strict), where,
                                                         f"function '{f.name}'"))
    parallel = req.parallel_tool_calls is not False and not legacy
    constraint = _response_constraint(req)
    format_note = _format_prompt(req)
    if mode == "none" or not fns:
        return StructuredPlan(constraint=constraint, legacy=legacy, system_addendum=format_note)
    native = bool(template_source) and "tools" in (template_source or "")
    profile = profile_for_template(template_source) if native else "json"
    defs = [{"type": "function", "function": f.model_dump(exclude_none=True)} for f in fns]
    tools = [specs[n] for n in selected]
    if mode == "required":
        constraint = _compiled(lambda: tool_calls_constraint(tools, profile, parallel), list_param,
                               "the tool call arguments")
    elif constraint is not None:
        # "auto" with a response_format: the model may answer in the format or call tools (as on
        # OpenAI); whichever it starts, that branch is enforced to the end.
        answer = _format_schema(req)
        constraint = _compiled(lambda: content_or_calls_constraint(answer, tools, profile, parallel),
                               "response_format", "response_format")
    return StructuredPlan(
        template_tools=defs if native else None,
        system_addendum=_join(None if native else tools_system_prompt(defs), format_note),
        names=frozenset(selected),
        profile=profile,
        parallel=parallel,
        legacy=legacy,
        constraint=constraint,
    )


def _format_schema(req: wire.ChatCompletionRequest) -> dict[str, Any]:
    """The JSON schema a json_object / json_schema response_format stands for (already checked)."""
    rf = req.response_format
    if rf is not None and rf.json_schema is not None and rf.json_schema.schema_ is not None:
        return rf.json_schema.schema_
    return {"type": "object"}


def _join(*parts: str | None) -> str | None:
    text = "\n\n".join(p for p in parts if p)
    return text or None


def _format_prompt(req: wire.ChatCompletionRequest) -> str | None:
    rf = req.response_format
    if rf is None or rf.type != "json_schema" or rf.json_schema is None or rf.json_schema.schema_ is None:
        return None
    js = rf.json_schema
    return schema_system_prompt(js.name, js.description, js.schema_)


def _response_constraint(req: wire.ChatCompletionRequest) -> Constraint | None:
    rf = req.response_format
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        _require_json_mention(req)
        return _compiled(json_object_constraint, "response_format", "response_format")
    assert rf.json_schema is not None
    js = rf.json_schema
    where = "response_format.json_schema.schema"
    what = f"response_format '{js.name}'"
    if js.schema_ is None:
        if js.strict:
            raise InvalidRequest(f"Invalid schema for {what}: a strict schema is required.", param=where, code="invalid_value")
        return _compiled(json_object_constraint, where, what)
    schema = _checked_schema(js.schema_, bool(js.strict), where, what)
    return _compiled(lambda: json_schema_constraint(schema), where, what)


def _require_json_mention(req: wire.ChatCompletionRequest) -> None:
    # OpenAI's rule for JSON mode: without an instruction to write JSON, models ramble in whitespace.
    for m in req.messages:
        c = m.content
        text = c if isinstance(c, str) else " ".join(getattr(p, "text", "") for p in (c or []))
        if "json" in text.lower():
            return
    raise InvalidRequest("'messages' must contain the word 'json' in some form, to use 'response_format' of "
                         "type 'json_object'.", param="messages", code="invalid_value")
