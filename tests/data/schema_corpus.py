"""Realistic JSON schemas that all fit OpenAI's strict Structured Outputs subset.

Shared by the schema-rule tests and the structured-output tests: each one is small enough for a 0.5B
model to fill in a few hundred tokens. The last few are generated from pydantic models the way the
openai SDK does it for `response_format=Model` (`to_strict_json_schema`), computed at import time.
This file is loaded by path (it is not a package); see tests/unit/test_json_schema_rules.py.
"""

import datetime as dt
import enum
import uuid
from typing import Any, Literal

from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

Schema = dict[str, Any]


def obj(properties: Schema, **extra: Any) -> Schema:
    """A strict object: every property required, nothing else allowed."""
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False, **extra}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}


def arr(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def nullable(type_name: str, **extra: Any) -> Schema:
    return {"type": [type_name, "null"], **extra}


# Written out in full once, without helpers, as a user would send it.
CALENDAR_EVENT: Schema = {
    "type": "object",
    "title": "CalendarEvent",
    "properties": {
        "name": {"type": "string", "description": "Short title of the event"},
        "date": {"type": "string", "format": "date"},
        "start_time": {"type": ["string", "null"], "format": "time"},
        "participants": {"type": "array", "items": {"type": "string"}, "maxItems": 6},
        "location": {"type": ["string", "null"]},
    },
    "required": ["name", "date", "start_time", "participants", "location"],
    "additionalProperties": False,
}

_MONEY = obj({"amount": {"type": "number", "minimum": 0},
              "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}})

HAND_WRITTEN: list[tuple[str, Schema]] = [
    ("calendar_event", CALENDAR_EVENT),
    ("person_extraction", obj({
        "name": STR,
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "email": {"type": ["string", "null"], "format": "email"},
        "phone": nullable("string", pattern="^\\+?[0-9 ()-]{7,20}$"),
    })),
    ("sentiment_classification", obj({
        "label": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    })),
    ("invoice", obj({
        "invoice_number": {"type": "string", "pattern": "^INV-[0-9]{4}$"},
        "issued": {"type": "string", "format": "date"},
        "vendor": obj({"name": STR, "tax_id": nullable("string")}),
        "line_items": arr(obj({
            "description": STR,
            "quantity": {"type": "integer", "minimum": 1},
            "unit_price": {"type": "number", "minimum": 0},
        }), minItems=1, maxItems=4),
        "total": {"type": "number", "exclusiveMinimum": 0},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    })),
    ("contact_with_geo", obj({  # four object levels
        "contact": obj({
            "name": STR,
            "address": obj({
                "street": STR, "city": STR, "country_code": {"type": "string", "pattern": "^[A-Z]{2}$"},
                "geo": obj({"lat": {"type": "number", "minimum": -90, "maximum": 90},
                            "lon": {"type": "number", "minimum": -180, "maximum": 180}}),
            }),
        }),
    })),
    ("org_chart", obj({  # five object levels
        "company": obj({"name": STR, "department": obj({"name": STR, "team": obj({
            "name": STR, "lead": obj({"name": STR, "email": {"type": "string", "format": "email"}}),
        })})}),
    })),
    ("support_ticket", obj({
        "title": STR,
        "priority": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
        "status": {"type": "string", "enum": ["open", "pending", "closed"]},
        "assignee": nullable("string"),
    })),
    ("search_hit_or_null", obj({
        "query": STR,
        "best_hit": {"anyOf": [obj({"url": STR, "title": STR, "score": NUM}), {"type": "null"}]},
    })),
    ("measurement", obj({
        "quantity": STR,
        "value": {"anyOf": [{"type": "number"}, {"type": "string"}],
                  "description": "A number, or text such as 'unknown'"},
        "unit": nullable("string"),
    })),
    ("linked_list", obj({"head": {"$ref": "#/$defs/node"}}, **{"$defs": {
        "node": obj({"value": INT, "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}}),
    }})),
    ("category_tree", obj({"root": {"$ref": "#/$defs/category"}}, **{"$defs": {
        "category": obj({"name": STR, "children": {"anyOf": [
            arr({"$ref": "#/$defs/category"}, maxItems=3), {"type": "null"}]}}),
    }})),
    ("comment_thread", obj({  # recursion through the root itself
        "author": STR, "text": STR, "reply": {"anyOf": [{"$ref": "#"}, {"type": "null"}]},
    })),
    ("order_totals", obj({
        "order_id": STR,
        "subtotal": {"$ref": "#/definitions/money"},
        "tax": {"$ref": "#/definitions/money"},
        "total": {"$ref": "#/definitions/money", "description": "subtotal plus tax"},
    }, definitions={"money": _MONEY})),
    ("weather_report", obj({
        "city": STR,
        "temperature": {"type": "number", "minimum": -90, "maximum": 60},
        "unit": {"type": "string", "const": "celsius"},
        "conditions": {"type": "string", "enum": ["sunny", "cloudy", "rain", "snow", "fog"]},
    })),
    ("api_envelope_const", obj({
        "version": {"const": 2},
        "ok": BOOL,
        "message": STR,
    })),
    ("acknowledgement", {"type": "object", "properties": {}, "required": [], "additionalProperties": False}),
    ("yes_no_answer", obj({"answer": BOOL, "reason": {"type": "string", "maxLength": 200}})),
    ("server_inventory", obj({
        "hosts": arr(obj({
            "hostname": {"type": "string", "format": "hostname"},
            "ipv4": {"type": "string", "format": "ipv4"},
            "ipv6": {"type": ["string", "null"], "format": "ipv6"},
        }), maxItems=3),
    })),
    ("user_record", obj({
        "id": {"type": "string", "format": "uuid"},
        "created_at": {"type": "string", "format": "date-time"},
        "email": {"type": "string", "format": "email"},
        "active": BOOL,
    })),
    ("meeting_slot", obj({
        "topic": STR,
        "starts_at": {"type": "string", "format": "date-time"},
        "duration": {"type": "string", "format": "duration", "description": "ISO 8601, e.g. PT30M"},
    })),
    ("keyword_tags", obj({"tags": arr(STR, minItems=1, maxItems=5)})),
    ("product_review", obj({
        "product": STR,
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        "pros": arr(STR, maxItems=3),
        "cons": arr(STR, maxItems=3),
    })),
    ("geo_point", obj({
        "lat": {"type": "number", "exclusiveMinimum": -90, "exclusiveMaximum": 90},
        "lon": {"type": "number", "exclusiveMinimum": -180, "maximum": 180},
    })),
    ("discount", obj({
        "code": {"type": "string", "pattern": "^[A-Z0-9]{4,10}$"},
        "percent": {"type": "integer", "minimum": 5, "maximum": 50, "multipleOf": 5},
        "price_step": {"type": "number", "multipleOf": 0.25},
    })),
    ("profile_nullable", obj({
        "nickname": nullable("string"),
        "age": nullable("integer", minimum=13),
        "verified": nullable("boolean"),
        "score": nullable("number"),
    })),
    ("language_detection", obj({
        "language": {"type": "string", "pattern": "^[a-z]{2}$", "description": "ISO 639-1 code"},
        "script": {"type": "string", "enum": ["Latin", "Cyrillic", "Arabic", "Han", "Other"]},
        "is_reliable": BOOL,
    })),
    ("shipping_label", obj({
        "tracking_number": STR,
        "recipient": obj({"name": STR, "address": obj({"line1": STR, "city": STR,
                                                       "postal_code": STR})}),
        "weight_kg": {"type": "number", "exclusiveMinimum": 0, "maximum": 30},
    })),
    ("math_reasoning", obj({
        "steps": arr(obj({"explanation": STR, "output": STR}), maxItems=4),
        "final_answer": STR,
    })),
    ("flight_booking", obj({
        "origin": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "destination": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "departure": {"type": "string", "format": "date-time"},
        "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
        "cabin": {"type": "string", "enum": ["economy", "premium", "business", "first"]},
    })),
    ("contact_method", obj({
        "preferred": {"anyOf": [
            obj({"kind": {"type": "string", "const": "email"},
                 "address": {"type": "string", "format": "email"}}),
            obj({"kind": {"type": "string", "const": "phone"}, "number": STR}),
        ]},
    })),
    ("survey_answer", obj({
        "question_id": INT,
        "answer": {"enum": [1, 2, 3, 4, 5, "skip"], "description": "1-5, or 'skip'"},
    })),
    ("todo_list", obj({
        "items": arr(obj({"task": STR, "done": BOOL, "due": nullable("string", format="date")}), maxItems=5),
    })),
    ("named_entities", obj({
        "entities": arr(obj({
            "text": STR,
            "type": {"type": "string", "enum": ["PERSON", "ORG", "LOC", "DATE"]},
            "start": {"type": "integer", "minimum": 0},
        }), maxItems=5),
    })),
    ("color_palette", obj({
        "name": STR,
        "colors": arr({"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"}, minItems=2, maxItems=4),
    })),
    ("signup_form", obj({
        "username": {"type": "string", "minLength": 3, "maxLength": 20, "pattern": "^[a-z0-9_]+$"},
        "bio": {"type": "string", "maxLength": 160},
        "newsletter": BOOL,
    })),
]


# ---- pydantic models, converted the way the openai SDK converts `response_format=Model` ----------


class PydCalendarEvent(BaseModel):
    name: str
    date: dt.date
    participants: list[str]


class Currency(str, enum.Enum):
    USD = "USD"
    EUR = "EUR"
    GBP = "GBP"


class PydLineItem(BaseModel):
    description: str
    quantity: int = Field(ge=1)
    unit_price: float = Field(ge=0)


class PydInvoice(BaseModel):
    number: str = Field(description="Invoice number as printed")
    currency: Currency
    items: list[PydLineItem] = Field(max_length=4)
    notes: str | None


class PydSentiment(BaseModel):
    label: Literal["positive", "negative", "neutral"]
    confidence: float = Field(ge=0, le=1)


class PydListNode(BaseModel):
    value: int
    next: "PydListNode | None"


class PydTask(BaseModel):
    id: uuid.UUID
    title: str
    due: dt.datetime | None
    estimate: int | str = Field(description="Minutes, or a phrase like 'half a day'")


class PydAddress(BaseModel):
    street: str
    city: str
    postal_code: str = Field(pattern="^[0-9]{5}$")


class PydCustomer(BaseModel):
    name: str
    address: PydAddress


class PydOrder(BaseModel):
    order_id: str
    customer: PydCustomer
    shipping_address: PydAddress | None
    express: bool


class PydMovie(BaseModel):
    title: str
    year: int = Field(ge=1888, le=2100)
    genres: list[Literal["drama", "comedy", "action", "documentary"]]
    rating: float | None = Field(ge=0, le=10)


PYDANTIC_MODELS: list[type[BaseModel]] = [
    PydCalendarEvent, PydInvoice, PydSentiment, PydListNode, PydTask, PydOrder, PydMovie,
]

FROM_PYDANTIC: list[tuple[str, Schema]] = [
    (f"pydantic_{model.__name__.removeprefix('Pyd').lower()}", to_strict_json_schema(model))
    for model in PYDANTIC_MODELS
]

CORPUS: list[tuple[str, Schema]] = HAND_WRITTEN + FROM_PYDANTIC
