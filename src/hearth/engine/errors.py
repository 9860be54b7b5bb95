"""Typed engine failures. They carry no HTTP knowledge; api/errors.py maps them."""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every engine failure."""


class ModelNotFound(EngineError):
    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist or you do not have access to it.")
        self.model = model


class ContextLengthExceeded(EngineError):
    def __init__(self, context_length: int, prompt_tokens: int, max_tokens: int) -> None:
        super().__init__(
            f"This model's maximum context length is {context_length} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
            "completion). Please reduce the length of the messages or completion."
        )
        self.context_length = context_length


class Overloaded(EngineError):
    def __init__(self, retry_after_s: float = 1.0) -> None:
        super().__init__("The engine is currently overloaded with other requests. Please retry shortly.")
        self.retry_after_s = retry_after_s


class EngineDead(EngineError):
    """The backend failed and cannot serve; the request did not complete."""


class GenerationFailed(EngineError):
    """A request failed part-way through generation."""


class InvalidConstraint(EngineError):
    """A grammar or JSON schema the constrained decoder cannot compile. Nothing was generated."""
