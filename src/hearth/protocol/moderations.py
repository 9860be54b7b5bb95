"""/v1/moderations wire types, mirroring the OpenAI API reference and the openai SDK's `Moderation`.

Request limits (OpenAI documents none; these are ours): at most `MAX_INPUTS` strings or content
parts per request, each text at most `MAX_INPUT_CHARS` characters. Every shape error is a 400
`invalid_request_error` with `param: "input"`, never a 422.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_INPUTS = 32
MAX_INPUT_CHARS = 32_768

# ---------------------------------------------------------------- request


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModerationTextPart(_Strict):
    type: Literal["text"]
    text: str


class ModerationImageURL(BaseModel):
    url: str


class ModerationImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ModerationImageURL


ModerationPart = Annotated[ModerationTextPart | ModerationImagePart, Field(discriminator="type")]

_SHAPE = "must be a string, an array of strings, or an array of content parts ({'type': 'text', 'text': ...})"


def _check_text(text: str, where: str) -> None:
    # The envelope already names `input`; only an item inside it needs naming.
    subject = "" if where == "input" else f"{where} "
    if not text:
        raise ValueError(f"{subject}must not be empty")
    if len(text) > MAX_INPUT_CHARS:
        raise ValueError(f"{subject}must be at most {MAX_INPUT_CHARS} characters long (got {len(text)})")


def _check_part(part: dict[str, Any], i: int) -> None:
    kind = part.get("type")
    if kind == "text":
        if set(part) - {"type", "text"} or not isinstance(part.get("text"), str):
            raise ValueError(f"input[{i}] must be {{'type': 'text', 'text': <string>}}")
        _check_text(part["text"], f"input[{i}].text")
    elif kind == "image_url":
        url = part.get("image_url")
        if set(part) - {"type", "image_url"} or not isinstance(url, dict) or not isinstance(url.get("url"), str):
            raise ValueError(f"input[{i}] must be {{'type': 'image_url', 'image_url': {{'url': <string>}}}}")
    else:
        raise ValueError(f"input[{i}].type must be 'text' or 'image_url'")


class ModerationCreateRequest(_Strict):
    input: str | list[str] | list[ModerationPart]
    model: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _shape(cls, v: Any) -> Any:
        # Checked here, whole, so that every mistake reads as one clear message about `input`
        # instead of a union's per-member errors.
        if isinstance(v, str):
            _check_text(v, "input")
            return v
        if not isinstance(v, list):
            raise ValueError(_SHAPE)  # noqa: TRY004 - pydantic turns only ValueError into a 400
        if not v:
            raise ValueError("must not be an empty array")
        if len(v) > MAX_INPUTS:
            raise ValueError(f"has {len(v)} items, over the limit of {MAX_INPUTS} per request")
        if all(isinstance(x, str) for x in v):
            for i, x in enumerate(v):
                _check_text(x, f"input[{i}]")
            return v
        if all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                _check_part(x, i)
            return v
        raise ValueError(f"{_SHAPE}, not a mix of these")


# ---------------------------------------------------------------- response
# Field names are Python's; the wire names (aliases) are OpenAI's, slashes and dashes included.
# Serialise with `by_alias=True`.


class _ByAlias(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class Categories(_ByAlias):
    harassment: bool
    harassment_threatening: bool = Field(alias="harassment/threatening")
    hate: bool
    hate_threatening: bool = Field(alias="hate/threatening")
    illicit: bool
    illicit_violent: bool = Field(alias="illicit/violent")
    self_harm: bool = Field(alias="self-harm")
    self_harm_instructions: bool = Field(alias="self-harm/instructions")
    self_harm_intent: bool = Field(alias="self-harm/intent")
    sexual: bool
    sexual_minors: bool = Field(alias="sexual/minors")
    violence: bool
    violence_graphic: bool = Field(alias="violence/graphic")


class CategoryScores(_ByAlias):
    harassment: float
    harassment_threatening: float = Field(alias="harassment/threatening")
    hate: float
    hate_threatening: float = Field(alias="hate/threatening")
    illicit: float
    illicit_violent: float = Field(alias="illicit/violent")
    self_harm: float = Field(alias="self-harm")
    self_harm_instructions: float = Field(alias="self-harm/instructions")
    self_harm_intent: float = Field(alias="self-harm/intent")
    sexual: float
    sexual_minors: float = Field(alias="sexual/minors")
    violence: float
    violence_graphic: float = Field(alias="violence/graphic")


InputType = Literal["text", "image"]


class CategoryAppliedInputTypes(_ByAlias):
    harassment: list[InputType]
    harassment_threatening: list[InputType] = Field(alias="harassment/threatening")
    hate: list[InputType]
    hate_threatening: list[InputType] = Field(alias="hate/threatening")
    illicit: list[InputType]
    illicit_violent: list[InputType] = Field(alias="illicit/violent")
    self_harm: list[InputType] = Field(alias="self-harm")
    self_harm_instructions: list[InputType] = Field(alias="self-harm/instructions")
    self_harm_intent: list[InputType] = Field(alias="self-harm/intent")
    sexual: list[InputType]
    sexual_minors: list[InputType] = Field(alias="sexual/minors")
    violence: list[InputType]
    violence_graphic: list[InputType] = Field(alias="violence/graphic")


class Moderation(BaseModel):
    flagged: bool
    categories: Categories
    category_scores: CategoryScores
    category_applied_input_types: CategoryAppliedInputTypes


class ModerationCreateResponse(BaseModel):
    id: str
    model: str
    results: list[Moderation]


def wire_categories() -> tuple[str, ...]:
    """The 13 category names as they appear on the wire."""
    return tuple(f.alias or name for name, f in Categories.model_fields.items())
