"""Render chat templates the way Hugging Face transformers does.

A model's ``tokenizer.chat_template`` is a Jinja2 program written against the environment that
``transformers`` builds in ``apply_chat_template``. To produce byte-identical prompts we rebuild that
environment: an immutable sandbox with ``trim_blocks``/``lstrip_blocks``, the ``loopcontrols``
extension, a no-op ``{% generation %}`` block, the ``tojson`` filter with HF's (not Jinja's)
semantics, and the globals ``raise_exception`` and ``strftime_now``.

Guarantees:
- a template is compiled once per :class:`ChatTemplate`; :meth:`ChatTemplate.render` is thread-safe
  and never mutates the caller's messages or tools;
- every failure while compiling or rendering surfaces as :class:`TemplateError` (the message of a
  template's own ``raise_exception`` is preserved verbatim);
- a model without a template is reported by :func:`load_chat_template` as
  :class:`MissingChatTemplate`, never silently replaced by a guessed format.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hearth.rendering.gguf_meta import GGUFMetadata

__all__ = [
    "ChatTemplate",
    "MissingChatTemplate",
    "TemplateError",
    "chat_template_from_metadata",
    "load_chat_template",
]


class TemplateError(Exception):
    """A chat template could not be compiled or rendered, or rejected the conversation itself."""


class MissingChatTemplate(Exception):
    """The model ships no chat template, so chat requests cannot be turned into a prompt."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        super().__init__(
            f"model {model_id!r} has no chat template: its GGUF metadata has no "
            "'tokenizer.chat_template'. Use a chat (instruct) model, or pass a chat template file "
            "for this model."
        )


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # HF's tojson, not Jinja's: no HTML escaping, no key sorting, non-ASCII kept as is. Templates
    # put tool schemas in the prompt with it, so any difference changes the tokens the model sees.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _raise_exception(message: str) -> NoReturn:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    # Templates (Llama 3.x) stamp "Today Date" into the system prompt with this.
    return datetime.now().strftime(fmt)


class _GenerationBlock(Extension):
    """``{% generation %}...{% endgeneration %}``: HF marks assistant spans with it; render the body."""

    tags = {"generation"}  # noqa: RUF012 -- jinja2 declares it as a plain set attribute

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _make_environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.loopcontrols", _GenerationBlock],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def _normalize_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Deep-copy messages, decoding JSON-string tool-call arguments into objects.

    OpenAI sends ``function.arguments`` as a JSON string, but templates written for transformers
    expect a dict: Qwen2.5 does ``arguments | tojson``, which would otherwise double-encode it.
    Arguments that are not a JSON object are left as they came.
    """
    result = [copy.deepcopy(dict(m)) for m in messages]
    for message in result:
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                try:
                    decoded = json.loads(function["arguments"])
                except ValueError:
                    continue
                if isinstance(decoded, dict):
                    function["arguments"] = decoded
    return result


class ChatTemplate:
    """One compiled chat template plus the special tokens it may refer to."""

    def __init__(self, template: str, bos_token: str, eos_token: str) -> None:
        self.source = template
        self.bos_token = bos_token
        self.eos_token = eos_token
        try:
            self._template = _make_environment().from_string(template)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"chat template syntax error (line {exc.lineno}): {exc.message}") from exc

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        **extra: Any,
    ) -> str:
        """Render the prompt text for ``messages`` (contents already flattened to strings).

        ``tools`` are OpenAI tool definitions (``{"type": "function", "function": {...}}``), passed
        to the template as is; ``None`` and ``[]`` both mean no tools, as in transformers.
        ``extra`` reaches the template as variables (e.g. ``enable_thinking``, ``documents``).
        """
        context: dict[str, Any] = {
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            **extra,
            "messages": _normalize_messages(messages),
            "tools": copy.deepcopy([dict(t) for t in tools]) if tools else None,
            "add_generation_prompt": add_generation_prompt,
        }
        try:
            return self._template.render(context)
        except TemplateError:
            raise
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError) as exc:
            # Mostly a conversation shape the template does not handle (e.g. content=None added
            # to a string); the caller reports it as a bad request, not a server fault.
            raise TemplateError(f"chat template failed to render: {exc}") from exc


def load_chat_template(template: str | None, bos_token: str, eos_token: str, model_id: str) -> ChatTemplate:
    """Compile ``template`` for ``model_id``; raise :class:`MissingChatTemplate` if there is none."""
    if template is None or not template.strip():
        raise MissingChatTemplate(model_id)
    return ChatTemplate(template, bos_token, eos_token)


def chat_template_from_metadata(meta: GGUFMetadata, model_id: str) -> ChatTemplate:
    """Build the template from GGUF metadata read with the vocabulary (``skip_arrays=False``).

    The bos/eos token texts come from the vocabulary; a missing one becomes ``""`` rather than an
    error because most templates never mention them.
    """
    bos = meta.token_text(meta.token_id("bos")) or ""
    eos = meta.token_text(meta.token_id("eos")) or ""
    return load_chat_template(meta.chat_template, bos, eos, model_id)
