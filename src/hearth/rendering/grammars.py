"""Grammars for structured outputs and forced tool calls, in llguidance's Lark dialect.

The engine enforces them with a token mask (engine/backends/constraints.py); here we only build
and check them, so every schema problem is found before a request is queued (fail closed: a
schema we cannot enforce is a 400, never unconstrained output).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import llguidance

from hearth.engine.types import Constraint

# JSON as the models were trained to write it (", " and ": "), and no free whitespace: a sampled
# run of spaces or newlines could otherwise fill max_tokens without ever closing the object.
_JSON_STYLE: dict[str, Any] = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}


MAX_PARALLEL_CALLS = 16


class GrammarError(ValueError):
    """The grammar engine cannot compile this schema; the message says why."""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    parameters: dict[str, Any]


def _json_atom(schema: dict[str, Any]) -> str:
    # %json takes the schema inline; x-guidance carries the JSON style options.
    return "%json " + json.dumps({**schema, "x-guidance": _JSON_STYLE}, ensure_ascii=False)


def _check(grammar: str) -> Constraint:
    ok, msg = _validate(grammar)
    if not ok:
        raise GrammarError(msg)
    return Constraint(grammar=grammar)


def _validate(grammar: str) -> tuple[bool, str]:
    try:
        err = llguidance.LLMatcher.validate_grammar(grammar, None)
    except Exception as exc:  # noqa: BLE001 - the binding raises plain exceptions for bad input
        return False, str(exc)
    return (not err), err


def json_schema_constraint(schema: dict[str, Any]) -> Constraint:
    """Output is one JSON value valid against `schema`."""
    return _check("start: " + _json_atom(_bounded(schema)) + "\n")


def _bounded(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = bounded_numbers(bounded_recursion(schema))
    return out


MAX_REF_DEPTH = 10  # OpenAI's documented nesting limit for structured outputs


def bounded_recursion(schema: dict[str, Any], max_depth: int = MAX_REF_DEPTH) -> dict[str, Any]:
    """A copy of `schema` whose `$ref`s are followed at most `max_depth` times on any path.

    A recursive schema (a linked list, a comment thread) lets a sampled output nest until
    max_tokens; a small model at temperature 1 does exactly that. Each definition is copied per
    depth level and a reference past the last level becomes `false`, so an optional recursive field
    (`anyOf: [{$ref}, null]`) must close. Outputs nesting deeper than OpenAI's own limit are the
    only ones excluded.
    """
    if '"$ref"' not in json.dumps(schema):
        return schema
    root = {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}
    names: dict[str, Any] = {}
    for key in ("definitions", "$defs"):  # both spellings may be present; refs name their own
        if isinstance(schema.get(key), dict):
            names.update(schema[key])
    if not _recursive(schema, names):
        return schema
    out_defs: dict[str, Any] = dict(names)  # deeper pointers (#/$defs/a/properties/b) still resolve
    for level in range(1, max_depth + 1):
        for name, body in names.items():
            out_defs[f"{name}__{level}"] = _rewrite_refs(body, level, max_depth)
        out_defs[f"__root__{level}"] = _rewrite_refs(root, level, max_depth)
    return {**_rewrite_refs(root, 0, max_depth), "$defs": out_defs}


def _refs_in(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, list):
        for x in node:
            found |= _refs_in(x)
    elif isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and (name := _ref_name(ref)) is not None:
            found.add(name)
        for k, v in node.items():
            if k not in ("enum", "const", "$defs", "definitions"):
                found |= _refs_in(v)
    return found


def _recursive(schema: dict[str, Any], defs: dict[str, Any]) -> bool:
    """Whether following `$ref`s from the root can come back to a schema already on the path."""
    graph = {name: _refs_in(body) for name, body in defs.items()}
    graph["__root"] = _refs_in(schema)

    def cycle(node: str, path: frozenset[str]) -> bool:
        return any(n in path or cycle(n, path | {n}) for n in graph.get(node, ()))

    return cycle("__root", frozenset({"__root"}))


def _rewrite_refs(node: Any, level: int, max_depth: int) -> Any:
    if isinstance(node, list):
        return [_rewrite_refs(x, level, max_depth) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = _ref_name(ref)
        if target is not None:
            if level + 1 > max_depth:
                return False
            return {**{k: v for k, v in node.items() if k != "$ref"},
                    "$ref": f"#/$defs/{target}__{level + 1}"}
    out = {}
    for k, v in node.items():
        # enum / const hold values, not schemas: never rewrite inside them
        out[k] = v if k in ("enum", "const", "default", "examples") else _rewrite_refs(v, level, max_depth)
    return out


def _ref_name(ref: str) -> str | None:
    if ref == "#":
        return "__root"
    for prefix in ("#/$defs/", "#/definitions/"):
        if ref.startswith(prefix) and "/" not in ref[len(prefix):]:
            return ref[len(prefix):]
    return None


# Keywords whose value is a schema, or a list / mapping of schemas (never `enum` or `const` values).
_SUB_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames")
_SUB_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUB_MAP = ("properties", "$defs", "definitions", "patternProperties")
SAFE_INTEGER = 2**53 - 1
MAX_FRACTION = 1e-10  # llguidance takes at most 1e-10 (finer steps lose digits as floats)


def bounded_numbers(schema: Any) -> Any:
    """A copy of `schema` where numbers with no bounds get JSON's safe-integer range, and numbers
    with no `multipleOf` at most 10 decimal places.

    Without a bound, a sampled number can grow digit after digit until max_tokens (seen with
    Qwen 0.5B at temperature 1, in the integer part and in the fraction). Values outside
    +-(2**53 - 1) lose precision in most JSON readers anyway, and 10 decimals is below what a double
    keeps for most values, so the bounds cost little and keep every output closable.
    """
    if isinstance(schema, list):
        return [bounded_numbers(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for k in _SUB_ONE:
        if isinstance(out.get(k), dict):
            out[k] = bounded_numbers(out[k])
    for k in _SUB_LIST:
        if isinstance(out.get(k), list):
            out[k] = [bounded_numbers(x) for x in out[k]]
    for k in _SUB_MAP:
        if isinstance(out.get(k), dict):
            out[k] = {name: bounded_numbers(x) for name, x in out[k].items()}
    types = out.get("type")
    numeric = {"integer", "number"} & set(types if isinstance(types, list) else [types])
    if numeric and "enum" not in out and "const" not in out:
        if "minimum" not in out and "exclusiveMinimum" not in out:
            out["minimum"] = -SAFE_INTEGER
        if "maximum" not in out and "exclusiveMaximum" not in out:
            out["maximum"] = SAFE_INTEGER
        if "number" in numeric and "multipleOf" not in out:
            out["multipleOf"] = MAX_FRACTION  # at most 10 decimals: fraction digits cannot run away either
    return out


def json_object_constraint() -> Constraint:
    """Output is one JSON object (any keys): `response_format: {"type": "json_object"}`."""
    return json_schema_constraint({"type": "object"})


def _call_schema(tool: ToolSpec) -> dict[str, Any]:
    """One call as its own JSON document, so `$ref`s inside the parameters resolve."""
    params = _bounded(tool.parameters)
    defs = params.pop("$defs", None) if isinstance(params, dict) else None
    schema: dict[str, Any] = {
        "type": "object",
        # `name` first: the name is known (and streamed) before the arguments are generated.
        "properties": {"name": {"const": tool.name}, "arguments": params},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }
    if defs:
        schema["$defs"] = defs  # hoisted: refs were rewritten to "#/$defs/..." by _bounded
    return schema


def _calls_rules(tools: Sequence[ToolSpec], profile: str, parallel: bool) -> list[str]:
    """Lark rules whose rule `calls` is one (or, with `parallel`, several) calls of `tools`."""
    if not tools:
        raise GrammarError("no tools to call")
    rules = [f"call_{i}: {_json_atom(_call_schema(t))}" for i, t in enumerate(tools)]
    body = "body: " + " | ".join(f"call_{i}" for i in range(len(tools)))
    if profile == "hermes":
        # A newline may follow the last call (Qwen writes one before ending); then EOS or another
        # call. Capped: a sampled loop of calls must end before max_tokens does.
        more = f' ("\\n" call){{0,{MAX_PARALLEL_CALLS - 1}}}' if parallel else ""
        head = [f'calls: call{more} "\\n"?', 'call: <tool_call> "\\n" body "\\n" </tool_call>']
    else:
        more = f'"[" body (", " body){{0,{MAX_PARALLEL_CALLS - 1}}} "]"'
        head = [f"calls: {more}" if parallel else "calls: body"]
    return [*head, body, *rules]


def tool_calls_constraint(tools: Sequence[ToolSpec], profile: str, parallel: bool) -> Constraint:
    """Output is one (or, with `parallel`, one or more) calls of `tools`, in the profile's format.

    hermes: `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` blocks (Qwen, Hermes).
    json:   a bare `{"name": ..., "arguments": {...}}` object, or a JSON list of them.
    """
    return _check("\n".join(["start: calls", *_calls_rules(tools, profile, parallel)]) + "\n")


def content_or_calls_constraint(schema: dict[str, Any], tools: Sequence[ToolSpec], profile: str,
                                parallel: bool) -> Constraint:
    """`tool_choice: "auto"` with a `response_format`: either an answer in the format or tool calls,
    as OpenAI allows (the model chooses; each branch is enforced)."""
    lines = ["start: content | calls", f"content: {_json_atom(_bounded(schema))}",
             *_calls_rules(tools, profile, parallel)]
    return _check("\n".join(lines) + "\n")


def schema_system_prompt(name: str, description: str | None, schema: dict[str, Any]) -> str:
    """The response format shown to the model, as OpenAI shows it: the model writes better JSON
    (fills the right fields, ends recursive structures) when it can read the schema it must follow."""
    about = f" ({description})" if description else ""
    return (f"Respond only with a JSON value that matches the JSON schema `{name}`{about}:\n"
            + json.dumps(schema, ensure_ascii=False))


def tools_system_prompt(tools: Sequence[dict[str, Any]]) -> str:
    """Tool instructions for a chat template that has no tool support of its own (json profile)."""
    lines = [
        (
            "You can call the following functions. To call one, reply with only a JSON object of "
            'the form {"name": <function name>, "arguments": <arguments object>}, and nothing else.'
        ),
        "",
    ]
    lines += [json.dumps(t, ensure_ascii=False) for t in tools]
    return "\n".join(lines)
