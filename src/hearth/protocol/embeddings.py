"""Embeddings wire types (`POST /v1/embeddings`), mirroring the OpenAI API reference.

`input` is a string, an array of strings, an array of token ids, or an array of token-id arrays;
arrays hold 1..2048 items, strings and token arrays must not be empty. Checks that need the model
(token counts against its maximum, ids against its vocabulary, `dimensions`) are the service's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

MAX_INPUTS = 2048

EmbeddingInput = StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]

_SHAPES = "a string, an array of strings, an array of token ids, or an array of token-id arrays"


def _is_token(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_input(v: Any) -> Any:
    """Clear 400 messages for every malformed `input` (a union's own errors name no culprit).

    Raises ValueError even for wrong types: pydantic turns only ValueError into a validation error.
    """
    if isinstance(v, str):
        if not v:
            raise ValueError("must not be an empty string")
        return v
    if not isinstance(v, list):
        raise ValueError(f"must be {_SHAPES}")  # noqa: TRY004
    if not v:
        raise ValueError("must not be an empty array")
    if len(v) > MAX_INPUTS:
        raise ValueError(f"an array may hold at most {MAX_INPUTS} items, got {len(v)}")
    first = v[0]
    if isinstance(first, str):
        for i, s in enumerate(v):
            if not isinstance(s, str):
                raise ValueError(f"item {i} is not a string; an array of strings must hold only strings")  # noqa: TRY004
            if not s:
                raise ValueError(f"item {i} is an empty string; every input must be non-empty")
    elif _is_token(first):
        _check_tokens(v, "")
    elif isinstance(first, list):
        for i, arr in enumerate(v):
            if not isinstance(arr, list):
                raise ValueError(f"item {i} is not an array; an array of token arrays must hold only arrays")  # noqa: TRY004
            if not arr:
                raise ValueError(f"item {i} is an empty token array; every input must be non-empty")
            _check_tokens(arr, f"item {i}: ")
    else:
        raise ValueError(f"must be {_SHAPES}")
    return v


def _check_tokens(arr: list[Any], where: str) -> None:
    for j, t in enumerate(arr):
        if not _is_token(t):
            raise ValueError(f"{where}token {j} is not an integer; a token array must hold only integers")
        if t < 0:
            raise ValueError(f"{where}token {j} is negative ({t}); token ids are non-negative")


class EmbeddingCreateRequest(BaseModel):
    """The request body (the SDK's `EmbeddingCreateParams`)."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] | None = None  # None: float
    dimensions: StrictInt | None = Field(default=None, ge=1)
    user: StrictStr | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, v: Any) -> Any:
        return _check_input(v)

    def inputs(self) -> list[str] | list[list[int]]:
        """The inputs as a list: strings, or token-id arrays (a flat token array is one input)."""
        v = self.input
        if isinstance(v, str):
            return [v]
        if isinstance(v[0], int):
            return [v]
        return v


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # floats, or base64 of little-endian float32 bytes


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
