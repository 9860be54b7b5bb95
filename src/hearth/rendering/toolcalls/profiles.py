"""Per-model-family conventions for marking tool calls in generated text."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HERMES", "JSON", "Profile", "get_profile", "profile_for_template"]


@dataclass(frozen=True, slots=True)
class Profile:
    """How one model family writes tool calls.

    `open_tag`/`close_tag` delimit a call block inside free text (Hermes/Qwen2.5 style); a profile
    without tags only recognises a reply that is, apart from whitespace, one bare or fenced JSON value of
    calls. Every profile recognises that whole-reply form too.
    """

    name: str
    open_tag: str = ""
    close_tag: str = ""


HERMES = Profile("hermes", "<tool_call>", "</tool_call>")
JSON = Profile("json")


def get_profile(name: str) -> Profile:
    """The profile called `name`; ValueError for an unknown name (a configuration error, not model output)."""
    for profile in (HERMES, JSON):
        if profile.name == name:
            return profile
    raise ValueError(f"unknown tool-call profile {name!r}; expected 'hermes' or 'json'")


def profile_for_template(template: str | None) -> str:
    """Pick the profile for a chat template: templates that teach `<tool_call>` blocks get "hermes"."""
    if template and HERMES.open_tag in template:
        return HERMES.name
    return JSON.name
