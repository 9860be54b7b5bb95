"""Check a JSON Schema before a grammar is built from it.

`check_schema_shape` is what every schema must pass: a JSON object whose keywords carry values of the right
JSON type and whose `$ref`s resolve inside the document (non-strict schemas then go to a grammar engine that
knows more keywords). `check_strict_schema` adds OpenAI's Structured Outputs subset (`strict: true`) and its
size limits. Checking here lets the API answer 400 naming the place to fix (`SchemaError.path`) instead of
failing inside the engine. Pure functions over plain JSON values; stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

__all__ = ["MAX_ENUM_VALUES", "MAX_OBJECT_DEPTH", "MAX_PROPERTIES", "SchemaError", "check_schema_shape",
           "check_strict_schema", "schema_depth"]

# OpenAI's documented limits for strict schemas.
MAX_OBJECT_DEPTH = 10
MAX_PROPERTIES = 5000
MAX_ENUM_VALUES = 1000
# Not an OpenAI rule: bounds our own walks (and recursion in schema_depth) against hostile input.
MAX_NESTING = 128

TYPE_NAMES = ("string", "number", "integer", "boolean", "object", "array", "null")
STRICT_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"})

# Keyword tables: which JSON type each keyword's value must have.
_SCHEMA = frozenset({"additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
                     "unevaluatedProperties", "unevaluatedItems", "additionalItems"})
_SCHEMA_MAP = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_SCHEMA_LIST = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_COUNTS = frozenset({"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
                     "minContains", "maxContains"})
_NUMBERS = frozenset({"minimum", "maximum", "multipleOf"})
_BOUNDS = frozenset({"exclusiveMinimum", "exclusiveMaximum"})  # draft 4 spelled these as booleans
_STRINGS = frozenset({"pattern", "format", "$ref", "title", "description", "$comment", "$schema", "$id",
                      "$anchor", "$dynamicRef", "$dynamicAnchor", "contentEncoding", "contentMediaType"})
_BOOLS = frozenset({"uniqueItems", "deprecated", "readOnly", "writeOnly"})

_ANNOTATIONS = frozenset({"title", "description", "$comment", "examples", "default", "$schema",
                          "deprecated", "readOnly", "writeOnly"})
_STRING_KW = frozenset({"pattern", "format", "minLength", "maxLength"})
_NUMBER_KW = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"})
_ARRAY_KW = frozenset({"items", "minItems", "maxItems"})
_OBJECT_KW = frozenset({"properties", "required", "additionalProperties"})
_STRICT = (_ANNOTATIONS | _STRING_KW | _NUMBER_KW | _ARRAY_KW | _OBJECT_KW
           | {"type", "enum", "const", "anyOf", "$ref", "$defs", "definitions"})
_KNOWN = (_SCHEMA | _SCHEMA_MAP | _SCHEMA_LIST | _COUNTS | _NUMBERS | _BOUNDS | _STRINGS | _BOOLS | _STRICT
          | {"dependentRequired", "dependencies", "nullable", "$recursiveRef", "$recursiveAnchor",
             "$vocabulary"})
_HINTS = {
    "allOf": "merge the subschemas into one object schema",
    "oneOf": "use 'anyOf' instead",
    **dict.fromkeys(("if", "then", "else"), "describe the cases as alternatives with 'anyOf'"),
    "patternProperties": "name every key under 'properties', or use an array of key/value objects",
    "unevaluatedProperties": "use \"additionalProperties\": false",
    "dependentRequired": "make the fields required and allow null with a type such as [\"string\", \"null\"]",
    "prefixItems": "use an object with one named property per position",
    "nullable": "allow null with a type list such as [\"string\", \"null\"]",
    "$id": "remove it; references resolve within this document only",
}


class SchemaError(ValueError):
    """A schema we will not use. `path` is the dotted place to fix ("" is the root), e.g.
    `properties.address.required`; `message` says what is wrong and what to change."""

    def __init__(self, message: str, path: str = "") -> None:
        self.message = message
        self.path = path
        where = f"at '{path}'" if path else "at the schema root"
        super().__init__(f"Invalid schema {where}: {message}")


def check_schema_shape(schema: object) -> None:
    """Raise SchemaError unless `schema` is a JSON object whose known keywords have values of the right
    type and whose `$ref`s point at schemas inside it. Unknown keywords and non-strict features pass."""
    root = _root_object(schema)
    for node, path, _key in _nodes(root):
        if isinstance(node, dict):  # else a true/false schema: the parent's value check allowed only those
            _check_values(node, path)
            if "$ref" in node:
                _resolve(root, node["$ref"], _join(path, "$ref"))


def check_strict_schema(schema: object) -> None:
    """Raise SchemaError unless `schema` fits OpenAI's strict Structured Outputs subset and limits."""
    check_schema_shape(schema)  # after this the strict rules can trust every value's JSON type
    root = _root_object(schema)
    if "anyOf" in root:
        raise SchemaError("the root schema must not be 'anyOf'; make the root an object and put the "
                          "alternatives in one of its properties", "anyOf")
    if root.get("type") != "object":
        raise SchemaError("the root schema must have \"type\": \"object\" (not a type list or a $ref); "
                          "wrap other values in a property of a root object", "type")
    tally = _Tally()
    for node, path, key in _nodes(root):
        if isinstance(node, dict):
            _check_strict_node(node, path)
            tally.add(node, path)
        elif key != "additionalProperties":  # that one the parent's object rule required to be false
            raise SchemaError("true/false schemas are not supported in strict mode; write the schema out "
                              "with 'type'", path)
    depth = schema_depth(root)
    if depth > MAX_OBJECT_DEPTH:
        raise SchemaError(f"objects nest {depth} levels deep; strict mode allows {MAX_OBJECT_DEPTH}; "
                          "flatten the schema")


def schema_depth(schema: Mapping[str, Any]) -> int:
    """How many object schemas nest inside one another, following local `$ref`s. A reference back into
    its own chain (recursion) is not followed again: the instance, not the schema, bounds it.
    Expects a schema that passed `check_schema_shape`."""
    memo: dict[str, int] = {}

    def depth(node: object, active: frozenset[str], level: int) -> int:
        if not isinstance(node, Mapping):
            return 0
        if level > MAX_NESTING:
            raise SchemaError(f"subschemas nest more than {MAX_NESTING} levels deep")
        below = 0
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in active:
            if ref not in memo:
                memo[ref] = depth(_resolve(schema, ref, "$ref"), active | {ref}, level + 1)
            below = memo[ref]
        for child, _path, key in _subschemas(node, ""):
            if key not in ("$defs", "definitions"):  # definitions count where they are used
                below = max(below, depth(child, active, level + 1))
        return below + (1 if _is_object(node) else 0)

    deepest = depth(schema, frozenset({"#"}), 0)
    for key in ("$defs", "definitions"):
        for name, sub in schema.get(key, {}).items():  # an unused definition still becomes grammar
            deepest = max(deepest, depth(sub, frozenset({f"#/{key}/{name}"}), 1))
    return deepest


# ---- walking ---------------------------------------------------------------------------------------


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _root_object(schema: object) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise SchemaError(f"a schema must be a JSON object, not {type(schema).__name__}")
    return schema


def _nodes(root: dict[str, Any]) -> Iterator[tuple[object, str, str]]:
    """Every subschema, parent before children, in document order, as (node, path, holding keyword).
    Children are listed only when the walk resumes, so a caller that checks a node's values before
    asking for the next one never makes `_subschemas` read an unchecked value. Iterative, so a deep
    schema cannot exhaust the Python stack."""
    stack: list[tuple[object, str, str, int]] = [(root, "", "", 0)]
    while stack:
        node, path, key, level = stack.pop()
        if level > MAX_NESTING:
            raise SchemaError(f"subschemas nest more than {MAX_NESTING} levels deep", path)
        yield node, path, key
        if isinstance(node, dict):
            children = [(c, p, k, level + 1) for c, p, k in _subschemas(node, path)]
            stack.extend(reversed(children))


def _subschemas(node: Mapping[str, Any], path: str) -> Iterator[tuple[object, str, str]]:
    for key, value in node.items():
        if key in _SCHEMA or (key == "items" and not isinstance(value, list)):
            yield value, _join(path, key), key
        elif key in _SCHEMA_MAP:
            for name, sub in value.items():
                yield sub, _join(path, key, name), key
        elif key in _SCHEMA_LIST or key == "items":
            for i, sub in enumerate(value):
                yield sub, _join(path, key, str(i)), key


def _resolve(root: Mapping[str, Any], ref: str, where: str) -> object:
    """Follow a local JSON pointer such as '#/$defs/Item'; remote documents are never fetched."""
    if not ref.startswith("#"):
        raise SchemaError(f"'$ref' {ref!r} points outside this schema; only local references such as "
                          "'#/$defs/Name' are supported", where)
    pointer = unquote(ref[1:])
    if pointer and not pointer.startswith("/"):
        raise SchemaError(f"'$ref' {ref!r} uses an anchor; refer to '#/$defs/Name' instead", where)
    target: object = root
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(target, Mapping) and token in target:
            target = target[token]
        elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
            target = target[int(token)]
        else:
            raise SchemaError(f"'$ref' {ref!r} does not resolve: nothing at {token!r}; define the target "
                              "under '$defs'", where)
    if not isinstance(target, (dict, bool)):
        raise SchemaError(f"'$ref' {ref!r} points at a {type(target).__name__}, not a schema", where)
    return target


# ---- value types (every schema) ---------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_schema(value: object) -> bool:
    return isinstance(value, (dict, bool))


def _check_values(node: Mapping[str, Any], path: str) -> None:
    for key, value in node.items():
        problem = _value_problem(key, value)
        if problem:
            raise SchemaError(f"'{key}' {problem}", _join(path, key))


def _value_problem(key: str, value: object) -> str | None:
    if key == "type":
        return _type_problem(value)
    if key in _SCHEMA or (key == "items" and not isinstance(value, list)):
        return None if _is_schema(value) else "must be a schema (a JSON object)"
    if key in _SCHEMA_MAP:
        ok = isinstance(value, dict) and all(_is_schema(v) for v in value.values())
        return None if ok else "must be a JSON object mapping names to schemas"
    if key in _SCHEMA_LIST or key == "items":
        ok = isinstance(value, list) and bool(value) and all(_is_schema(v) for v in value)
        return None if ok else "must be a non-empty array of schemas"
    if key in _COUNTS:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return None if ok else "must be a non-negative integer"
    if key in _NUMBERS or key in _BOUNDS:
        if key in _BOUNDS and isinstance(value, bool):
            return None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return "must be a number"
        return "must be greater than 0" if key == "multipleOf" and value <= 0 else None
    if key in _STRINGS:
        return None if isinstance(value, str) else "must be a string"
    if key in _BOOLS:
        return None if isinstance(value, bool) else "must be true or false"
    if key == "required":
        names = value if isinstance(value, list) else [None]  # a non-list fails the str test below
        ok = all(isinstance(v, str) for v in names) and len(set(names)) == len(names)
        return None if ok else "must be an array of distinct property names"
    if key == "enum":
        return None if isinstance(value, list) and value else "must be a non-empty array of values"
    if key == "examples":
        return None if isinstance(value, list) else "must be an array"
    return None


def _type_problem(value: object) -> str | None:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return "must be a type name or a non-empty array of type names"
    for name in names:
        if name not in TYPE_NAMES:
            return f"names unknown type {name!r}; use one of {', '.join(TYPE_NAMES)}"
    return None if len(set(names)) == len(names) else "lists a type twice"


# ---- strict subset ----------------------------------------------------------------------------------


def _types(node: Mapping[str, Any]) -> list[str]:
    value = node.get("type", [])
    return [value] if isinstance(value, str) else list(value)


def _is_object(node: Mapping[str, Any]) -> bool:
    return "object" in _types(node) or any(k in node for k in _OBJECT_KW)


def _check_strict_node(node: Mapping[str, Any], path: str) -> None:
    for key in node:
        if key not in _STRICT:
            what = "is not supported in strict mode" if key in _KNOWN else "is not a JSON Schema keyword"
            hint = _HINTS.get(key, "remove it, or send the schema with \"strict\": false")
            raise SchemaError(f"'{key}' {what}; {hint}", _join(path, key))
    if not any(k in node for k in ("type", "enum", "const", "anyOf", "$ref")):
        raise SchemaError("a schema must say what it accepts with 'type', 'enum', 'const', 'anyOf' or "
                          "'$ref'", path)
    if "$ref" in node:
        extra = sorted(set(node) - _ANNOTATIONS - {"$ref", "$defs", "definitions"})
        if extra:
            raise SchemaError(f"'$ref' cannot be combined with '{extra[0]}'; move it into the referenced "
                              "definition", _join(path, extra[0]))
    types = _types(node)
    for family, needs in ((_STRING_KW, ("string",)), (_NUMBER_KW, ("number", "integer")),
                          (_ARRAY_KW, ("array",)), (_OBJECT_KW, ("object",))):
        used = sorted(k for k in node if k in family)
        if used and types and not any(t in types for t in needs):
            raise SchemaError(f"'{used[0]}' applies to {' or '.join(needs)} values, but the type here "
                              f"is {types}; fix 'type' or remove '{used[0]}'", _join(path, used[0]))
    if _is_object(node):
        _check_strict_object(node, path)
    if "array" in types and not isinstance(node.get("items"), dict):
        raise SchemaError("an array must say what it holds with one schema in 'items'; for fixed positions "
                          "use an object with named properties", _join(path, "items"))
    _check_strict_values(node, path, types)


def _check_strict_object(node: Mapping[str, Any], path: str) -> None:
    if node.get("additionalProperties") is not False:
        raise SchemaError("'additionalProperties' is required to be supplied and to be false; add "
                          "\"additionalProperties\": false to this object",
                          _join(path, "additionalProperties"))
    props: Mapping[str, Any] = node.get("properties", {})
    required: list[str] = node.get("required", [])
    missing = [name for name in props if name not in required]
    if missing:
        raise SchemaError(f"'required' must list every key in 'properties'; add {missing}. To make a field "
                          "optional, keep it required and let it be null, e.g. "
                          "\"type\": [\"string\", \"null\"]",
                          _join(path, "required"))
    unknown = [name for name in required if name not in props]
    if unknown:
        raise SchemaError(f"'required' lists {unknown}, which 'properties' does not define",
                          _join(path, "required"))


def _check_strict_values(node: Mapping[str, Any], path: str, types: list[str]) -> None:
    if "format" in node and node["format"] not in STRICT_FORMATS:
        raise SchemaError(f"'format' {node['format']!r} is not supported; use one of "
                          f"{', '.join(sorted(STRICT_FORMATS))}, or a 'pattern'", _join(path, "format"))
    if "pattern" in node:
        try:
            re.compile(node["pattern"])
        except re.error as exc:
            raise SchemaError(f"'pattern' is not a valid regular expression: {exc}",
                              _join(path, "pattern")) from None
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if isinstance(node.get(key), bool):
            raise SchemaError(f"'{key}' must be the bound itself (a number), not a boolean", _join(path, key))
    for low, high in (("minLength", "maxLength"), ("minItems", "maxItems"), ("minimum", "maximum")):
        if low in node and high in node and node[low] > node[high]:
            raise SchemaError(f"'{low}' is greater than '{high}', so no value can match", _join(path, low))
    values = [("enum", v) for v in node.get("enum", [])]
    if "const" in node:
        values.append(("const", node["const"]))
    for key, value in values:
        if not (value is None or isinstance(value, (str, bool)) or _is_number(value)):
            raise SchemaError(f"'{key}' values must be strings, numbers, booleans or null", _join(path, key))
        if types and not any(_matches(value, t) for t in types):
            raise SchemaError(f"'{key}' value {value!r} does not have the declared type {types}",
                              _join(path, key))


_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "null": (type(None),), "boolean": (bool,), "string": (str,), "number": (int, float)}


def _matches(value: object, type_name: str) -> bool:
    if isinstance(value, bool) != (type_name == "boolean"):  # Python's bool is an int; JSON's is not
        return False
    if type_name == "integer":
        return isinstance(value, (int, float)) and float(value).is_integer()
    return isinstance(value, _PYTHON_TYPES.get(type_name, ()))


@dataclass
class _Tally:
    """Running totals for OpenAI's whole-schema limits; raises as soon as one is passed."""

    properties: int = 0
    enum_values: int = 0

    def add(self, node: Mapping[str, Any], path: str) -> None:
        self.properties += len(node.get("properties", {}))
        if self.properties > MAX_PROPERTIES:
            raise SchemaError(f"the schema has more than {MAX_PROPERTIES} properties in total; split it",
                              _join(path, "properties"))
        self.enum_values += len(node.get("enum", []))
        if self.enum_values > MAX_ENUM_VALUES:
            raise SchemaError(f"the schema has more than {MAX_ENUM_VALUES} enum values in total",
                              _join(path, "enum"))
