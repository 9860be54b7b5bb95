"""The strict Structured Outputs subset and the shape check every schema must pass."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hearth.rendering.json_schema import (
    MAX_OBJECT_DEPTH,
    SchemaError,
    check_schema_shape,
    check_strict_schema,
    schema_depth,
)

Schema = dict[str, Any]


def _load_corpus() -> ModuleType:
    # tests/ is not a package, so the corpus is loaded from its path. Registering it in sys.modules
    # lets pydantic resolve the corpus models' forward references, and loads it once per session.
    name = "hearth_test_data_schema_corpus"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "data" / "schema_corpus.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


CORPUS: list[tuple[str, Schema]] = _load_corpus().CORPUS
BY_NAME = dict(CORPUS)
STR: Schema = {"type": "string"}


def obj(properties: Schema, **extra: Any) -> Schema:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False, **extra}


def with_prop(schema: object, **extra: Any) -> Schema:
    """A valid root object whose single property `x` is `schema`."""
    return obj({"x": schema}, **extra)


# ---- the corpus --------------------------------------------------------------------------------------


def test_corpus_is_large_and_named_uniquely() -> None:
    names = [name for name, _ in CORPUS]
    assert len(CORPUS) >= 34
    assert len(set(names)) == len(names)
    assert sum(name.startswith("pydantic_") for name in names) >= 6


@pytest.mark.parametrize(("name", "schema"), CORPUS, ids=[name for name, _ in CORPUS])
def test_corpus_schema_is_strict(name: str, schema: Schema) -> None:
    before = copy.deepcopy(schema)
    check_strict_schema(schema)
    check_schema_shape(schema)
    assert schema == before  # checking never rewrites the caller's schema
    assert 1 <= schema_depth(schema) <= MAX_OBJECT_DEPTH


# ---- strict rules: each bad schema names the place and the keyword -----------------------------------

_DEEP: Schema = STR
for _ in range(MAX_OBJECT_DEPTH):
    _DEEP = obj({"child": _DEEP})
_DEF_CHAIN = obj({"a": {"$ref": "#/$defs/a"}}, **{"$defs": {
    "a": obj({"b": {"$ref": "#/$defs/b"}}),
    "b": obj({"c": {"$ref": "#/$defs/c"}}),
    "c": copy.deepcopy(_DEEP["properties"]["child"]["properties"]["child"]),  # 8 levels
}})

BAD: list[tuple[str, object, str, str]] = [
    # (id, schema, expected path, a word the message must contain)
    ("not_a_dict", ["type", "object"], "", "JSON object"),
    ("root_array", {"type": "array", "items": STR}, "type", "object"),
    ("root_nullable_object", {**obj({}), "type": ["object", "null"]}, "type", "object"),
    ("root_anyof", {"anyOf": [obj({}), obj({"a": STR})]}, "anyOf", "anyOf"),
    ("root_ref", {"$ref": "#/$defs/a", "$defs": {"a": obj({})}}, "type", "object"),
    ("missing_additional_properties",
     obj({"address": {"type": "object", "properties": {"city": STR}, "required": ["city"]}}),
     "properties.address.additionalProperties", "additionalProperties"),
    ("additional_properties_true", {**obj({"a": STR}), "additionalProperties": True},
     "additionalProperties", "false"),
    ("additional_properties_schema", {**obj({"a": STR}), "additionalProperties": STR},
     "additionalProperties", "additionalProperties"),
    ("required_missing_key",
     obj({"address": {**obj({"city": STR, "zip": STR}), "required": ["city"]}}),
     "properties.address.required", "zip"),
    ("required_absent", {"type": "object", "properties": {"a": STR}, "additionalProperties": False},
     "required", "required"),
    ("required_unknown_name", {**obj({"a": STR}), "required": ["a", "b"]}, "required", "'b'"),
    ("required_is_string", {**obj({"a": STR}), "required": "a"}, "required", "required"),
    ("allof", with_prop({"allOf": [obj({"a": STR}), obj({"b": STR})]}), "properties.x.allOf", "allOf"),
    ("oneof", with_prop({"oneOf": [STR, {"type": "integer"}]}), "properties.x.oneOf", "anyOf"),
    ("not", with_prop({"type": "string", "not": {"const": "x"}}), "properties.x.not", "not"),
    ("if_then_else", with_prop({"type": "string", "if": STR, "then": STR, "else": STR}),
     "properties.x.if", "if"),
    ("pattern_properties",
     with_prop({"type": "object", "properties": {}, "required": [], "additionalProperties": False,
                "patternProperties": {"^a": STR}}), "properties.x.patternProperties", "patternProperties"),
    ("unevaluated_properties", {**obj({"a": STR}), "unevaluatedProperties": False},
     "unevaluatedProperties", "unevaluatedProperties"),
    ("dependent_required", {**obj({"a": STR, "b": STR}), "dependentRequired": {"a": ["b"]}},
     "dependentRequired", "dependentRequired"),
    ("prefix_items", with_prop({"type": "array", "prefixItems": [STR, STR], "items": STR}),
     "properties.x.prefixItems", "prefixItems"),
    ("unique_items", with_prop({"type": "array", "items": STR, "uniqueItems": True}),
     "properties.x.uniqueItems", "uniqueItems"),
    ("openapi_nullable", with_prop({"type": "string", "nullable": True}), "properties.x.nullable", "null"),
    ("unknown_keyword", with_prop({"type": "string", "colour": "red"}), "properties.x.colour", "colour"),
    ("unknown_type_name", with_prop({"type": "date"}), "properties.x.type", "date"),
    ("type_not_a_string", with_prop({"type": 5}), "properties.x.type", "type"),
    ("no_type", with_prop({"description": "anything"}), "properties.x", "type"),
    ("boolean_subschema", with_prop(True), "properties.x", "true/false"),
    ("ref_unresolved", with_prop({"$ref": "#/$defs/missing"}), "properties.x.$ref", "missing"),
    ("ref_remote", with_prop({"$ref": "https://example.com/address.json"}), "properties.x.$ref", "local"),
    ("ref_anchor", with_prop({"$ref": "#address"}), "properties.x.$ref", "anchor"),
    ("ref_with_siblings", with_prop({"$ref": "#/$defs/a", "minLength": 2}, **{"$defs": {"a": STR}}),
     "properties.x.minLength", "$ref"),
    ("bad_definition", obj({"a": {"$ref": "#/$defs/item"}}, **{"$defs": {"item": {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}),
     "$defs.item.additionalProperties", "additionalProperties"),
    ("array_without_items", with_prop({"type": "array"}), "properties.x.items", "items"),
    ("tuple_items", with_prop({"type": "array", "items": [STR, STR]}), "properties.x.items", "items"),
    ("unsupported_format", with_prop({"type": "string", "format": "uri"}), "properties.x.format", "uri"),
    ("bad_regex", with_prop({"type": "string", "pattern": "^[A-Z"}), "properties.x.pattern", "pattern"),
    ("min_length_negative", with_prop({"type": "string", "minLength": -1}), "properties.x.minLength",
     "minLength"),
    ("max_items_float", with_prop({"type": "array", "items": STR, "maxItems": 2.5}),
     "properties.x.maxItems", "maxItems"),
    ("exclusive_minimum_bool", with_prop({"type": "number", "minimum": 0, "exclusiveMinimum": True}),
     "properties.x.exclusiveMinimum", "number"),
    ("minimum_above_maximum", with_prop({"type": "integer", "minimum": 5, "maximum": 1}),
     "properties.x.minimum", "maximum"),
    ("keyword_for_other_type", with_prop({"type": "string", "minimum": 1}), "properties.x.minimum",
     "string"),
    ("enum_empty", with_prop({"type": "string", "enum": []}), "properties.x.enum", "enum"),
    ("enum_wrong_type", with_prop({"type": "string", "enum": ["a", 1]}), "properties.x.enum", "1"),
    ("enum_bool_for_integer", with_prop({"type": "integer", "enum": [1, True]}), "properties.x.enum", "True"),
    ("const_wrong_type", with_prop({"type": "integer", "const": 1.5}), "properties.x.const", "1.5"),
    ("enum_of_objects", with_prop({"enum": [{"a": 1}]}), "properties.x.enum", "enum"),
    ("anyof_empty", with_prop({"anyOf": []}), "properties.x.anyOf", "anyOf"),
    ("anyof_branch_open_object", with_prop({"anyOf": [{"type": "object", "properties": {"a": STR},
                                                       "required": ["a"]}, {"type": "null"}]}),
     "properties.x.anyOf.0.additionalProperties", "additionalProperties"),
    ("properties_not_object", {**obj({}), "properties": ["a"]}, "properties", "properties"),
    ("too_deep", obj({"child": _DEEP}), "", "levels"),
    ("too_deep_through_refs", _DEF_CHAIN, "", "levels"),
    ("too_many_properties", obj({f"p{i}": STR for i in range(5001)}), "properties", "5000"),
    ("too_many_enum_values", obj({
        "a": {"type": "integer", "enum": list(range(600))},
        "b": {"type": "integer", "enum": list(range(600))},
    }), "properties.b.enum", "1000"),
]


@pytest.mark.parametrize(("schema", "path", "word"), [case[1:] for case in BAD], ids=[c[0] for c in BAD])
def test_bad_schema_is_rejected_at_its_path(schema: object, path: str, word: str) -> None:
    with pytest.raises(SchemaError) as info:
        check_strict_schema(schema)
    assert info.value.path == path, info.value
    assert word in info.value.message
    assert (path or "root") in str(info.value)


def test_bad_table_is_large() -> None:
    assert len(BAD) >= 25


def test_depth_limit_counts_object_levels() -> None:
    assert schema_depth(obj({"child": _DEEP})) == MAX_OBJECT_DEPTH + 1
    check_strict_schema(_DEEP)  # exactly at the limit
    assert schema_depth(BY_NAME["linked_list"]) == 2  # recursion is followed once, not forever
    assert schema_depth(BY_NAME["comment_thread"]) == 1


def test_schema_error_is_a_value_error() -> None:
    err = SchemaError("bad", "properties.a")
    assert isinstance(err, ValueError)
    assert (err.message, err.path) == ("bad", "properties.a")


# ---- the shape check for non-strict schemas ----------------------------------------------------------

NON_STRICT_OK: list[object] = [
    {"type": "object", "properties": {"name": STR, "age": {"type": "integer"}}, "required": ["name"]},
    {"type": "object", "properties": {"tags": {"type": "array", "items": STR, "uniqueItems": True}}},
    {"type": "object", "additionalProperties": True, "patternProperties": {"^x-": STR}},
    {"oneOf": [STR, {"type": "integer"}], "not": {"const": 3}},
    {"allOf": [{"$ref": "#/definitions/base"}], "definitions": {"base": {"type": "object"}}},
    {"type": "string", "format": "uri", "minLength": 1},
    {"type": "number", "minimum": 0, "exclusiveMinimum": True},  # draft-4 spelling
    {"type": "array", "items": [STR, {"type": "integer"}]},  # draft-7 tuple form
    {"properties": {"anything": True, "nothing": False}},
    {"x-vendor-extension": {"whatever": 1}, "type": "object"},
    {},
]


@pytest.mark.parametrize("schema", NON_STRICT_OK)
def test_shape_accepts_non_strict_schemas(schema: object) -> None:
    check_schema_shape(schema)


@pytest.mark.parametrize(("schema", "path"), [
    (None, ""),
    ("{\"type\": \"object\"}", ""),
    ([{"type": "object"}], ""),
    ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, "properties.a.$ref"),
    ({"$ref": "other.json#/$defs/a"}, "$ref"),
    ({"properties": {"a": STR}, "$ref": "#/properties/a/type"}, "$ref"),  # a string, not a schema
    ({"type": "object", "required": "name"}, "required"),
    ({"type": "object", "required": ["a", "a"]}, "required"),
    ({"type": "strin"}, "type"),
    ({"properties": {"a": 3}}, "properties"),
    ({"items": {"type": "array", "items": 7}}, "items.items"),
    ({"anyOf": [STR, "integer"]}, "anyOf"),
    ({"minLength": -1}, "minLength"),
    ({"multipleOf": 0}, "multipleOf"),
    ({"enum": "abc"}, "enum"),
])
def test_shape_rejects_malformed_schemas(schema: object, path: str) -> None:
    with pytest.raises(SchemaError) as info:
        check_schema_shape(schema)
    assert info.value.path == path, info.value


def test_shape_allows_refs_by_json_pointer_and_root() -> None:
    check_schema_shape({"properties": {"a": STR, "b": {"$ref": "#/properties/a"}, "c": {"$ref": "#"},
                                       "d": {"$ref": "#/$defs/with~1slash"}},
                        "$defs": {"with/slash": STR}})


def test_shape_bounds_nesting() -> None:
    schema: Schema = STR
    for _ in range(200):
        schema = {"type": "array", "items": schema}
    with pytest.raises(SchemaError, match="levels deep"):
        check_schema_shape(schema)


# ---- the corpus is well-formed JSON Schema (checked by an independent validator) ---------------------

INVOICE: Schema = {
    "invoice_number": "INV-0042", "issued": "2024-03-01", "vendor": {"name": "ACME", "tax_id": None},
    "line_items": [{"description": "Widget", "quantity": 2, "unit_price": 9.5}],
    "total": 19.0, "currency": "EUR",
}
VALID_INSTANCES: list[tuple[str, object]] = [
    ("calendar_event", {"name": "Science fair", "date": "2024-10-04", "start_time": "09:30:00Z",
                        "participants": ["Alice", "Bob"], "location": None}),
    ("invoice", INVOICE),
    ("linked_list", {"head": {"value": 1, "next": {"value": 2, "next": None}}}),
    ("category_tree", {"root": {"name": "All", "children": [{"name": "Books", "children": None}]}}),
    ("comment_thread", {"author": "ann", "text": "hi", "reply": {"author": "bo", "text": "hey",
                                                                 "reply": None}}),
    ("order_totals", {"order_id": "A1", "subtotal": {"amount": 10, "currency": "USD"},
                      "tax": {"amount": 2, "currency": "USD"}, "total": {"amount": 12, "currency": "USD"}}),
    ("contact_method", {"preferred": {"kind": "phone", "number": "+44 20 7946 0958"}}),
    ("user_record", {"id": "6f1c2d3e-4b5a-4c6d-8e7f-001122334455", "created_at": "2024-01-02T03:04:05Z",
                     "email": "ana@example.com", "active": True}),
    ("survey_answer", {"question_id": 3, "answer": "skip"}),
    ("acknowledgement", {}),
    ("pydantic_order", {"order_id": "o-1", "customer": {"name": "Kim", "address": {
        "street": "1 Main St", "city": "Springfield", "postal_code": "12345"}},
        "shipping_address": None, "express": False}),
    ("pydantic_listnode", {"value": 1, "next": {"value": 2, "next": None}}),
    ("pydantic_task", {"id": "6f1c2d3e-4b5a-4c6d-8e7f-001122334455", "title": "Write tests",
                       "due": None, "estimate": "half a day"}),
]

INVALID_INSTANCES: list[tuple[str, object]] = [
    ("invoice", {**INVOICE, "invoice_number": "inv-42"}),
    ("linked_list", {"head": {"value": 1, "next": {"value": "two", "next": None}}}),
    ("user_record", {"id": "x", "created_at": "2024-01-02T03:04:05Z", "email": "not-an-email",
                     "active": True}),
    ("calendar_event", {"name": "x", "date": "2024-10-04", "start_time": None, "participants": [],
                        "location": None, "extra": 1}),
]


def _validator(schema: Schema) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    # The draft's own FormatChecker: a bare FormatChecker() mixes in draft 3's "time" (no offset).
    validator = jsonschema.Draft202012Validator
    return validator(schema, format_checker=validator.FORMAT_CHECKER)


@pytest.mark.parametrize(("name", "schema"), CORPUS, ids=[name for name, _ in CORPUS])
def test_corpus_schema_is_valid_json_schema(name: str, schema: Schema) -> None:
    _validator(schema).check_schema(schema)


@pytest.mark.parametrize(("name", "instance"), VALID_INSTANCES, ids=[n for n, _ in VALID_INSTANCES])
def test_corpus_accepts_a_hand_written_instance(name: str, instance: object) -> None:
    _validator(BY_NAME[name]).validate(instance)


@pytest.mark.parametrize(("name", "instance"), INVALID_INSTANCES, ids=[n for n, _ in INVALID_INSTANCES])
def test_corpus_rejects_a_wrong_instance(name: str, instance: object) -> None:
    assert not _validator(BY_NAME[name]).is_valid(instance)
