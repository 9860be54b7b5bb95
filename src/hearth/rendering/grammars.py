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
    return _check("start: " + _json_atom(schema) + "\n")


def json_object_constraint() -> Constraint:
    """Output is one JSON object (any keys): `response_format: {"type": "json_object"}`."""
    return json_schema_constraint({"type": "object"})


def _call_schema(tool: ToolSpec) -> dict[str, Any]:
    # `name` first: the name is known (and streamed) before the arguments are generated.
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": tool.parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def tool_calls_constraint(tools: Sequence[ToolSpec], profile: str, parallel: bool) -> Constraint:
    """Output is one (or, with `parallel`, one or more) calls of `tools`, in the profile's format.

    hermes: `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` blocks (Qwen, Hermes).
    json:   a bare `{"name": ..., "arguments": {...}}` object, or a JSON list of them.
    """
    if not tools:
        raise GrammarError("no tools to call")
    calls = [_call_schema(t) for t in tools]
    call_schema: dict[str, Any] = calls[0] if len(calls) == 1 else {"anyOf": calls}
    if profile == "hermes":
        # A newline may follow the last call (Qwen writes one before ending); then EOS or another
        # call. Capped: a sampled loop of calls must end before max_tokens does.
        more = f' ("\\n" call){{0,{MAX_PARALLEL_CALLS - 1}}}' if parallel else ""
        grammar = (
            f'start: call{more} "\\n"?\n'
            'call: <tool_call> "\\n" body "\\n" </tool_call>\n'
            f"body: {_json_atom(call_schema)}\n"
        )
    else:
        schema = {"type": "array", "items": call_schema, "minItems": 1} if parallel else call_schema
        grammar = f"start: {_json_atom(schema)}\n"
    return _check(grammar)


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
