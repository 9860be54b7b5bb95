"""The official `openai` SDK's `client.moderations.create` against the app (FakeModerator): every
response parses into `ModerationCreateResponse`, with every category under its SDK field name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI
from openai.types import Moderation, ModerationCreateResponse

from hearth.engine.backends.fake import FakeEngine
from hearth.engine.moderation import CATEGORIES
from tests.conftest import make_app

# SDK attribute for each wire category ("self-harm/intent" -> self_harm_intent)
FIELDS = {c: c.replace("/", "_").replace("-", "_") for c in CATEGORIES}


@pytest.fixture
def app(fake_engine: FakeEngine, tmp_path: Path):  # type: ignore[no-untyped-def]
    """As the suite's app (real platform and project key), with the keyword classifier."""
    return make_app(fake_engine, tmp_path, with_platform=True, moderation={"backend": "fake"})


def check(m: Moderation) -> None:
    assert isinstance(m, Moderation)
    for field in FIELDS.values():
        assert isinstance(getattr(m.categories, field), bool), field
        assert isinstance(getattr(m.category_scores, field), float), field
        assert getattr(m.category_applied_input_types, field) == ["text"], field
    # The SDK's lenient parser also keeps aliased keys among its extras; any other key there would
    # be a name it does not know.
    for part in (m.categories, m.category_scores, m.category_applied_input_types):
        assert set(part.model_extra or {}) <= set(CATEGORIES), part.model_extra
    assert m.flagged == any(getattr(m.categories, f) for f in FIELDS.values())


async def test_string(sdk: AsyncOpenAI) -> None:
    r = await sdk.moderations.create(input="have a nice day", model="omni-moderation-latest")
    assert isinstance(r, ModerationCreateResponse)
    assert r.id.startswith("modr-") and r.model == "fake-moderation"
    [m] = r.results
    check(m)
    assert m.flagged is False


async def test_list_of_strings(sdk: AsyncOpenAI) -> None:
    r = await sdk.moderations.create(input=["fine", "you idiot", "a kill-threat"], model="text-moderation-latest")
    assert [m.flagged for m in r.results] == [False, True, True]
    for m in r.results:
        check(m)
    assert r.results[1].categories.harassment and not r.results[1].categories.harassment_threatening
    assert r.results[2].categories.harassment_threatening and r.results[2].categories.harassment


async def test_text_parts(sdk: AsyncOpenAI) -> None:
    parts: Any = [{"type": "text", "text": "hello"}, {"type": "text", "text": "then gore"}]
    r = await sdk.moderations.create(input=parts)
    [m] = r.results
    check(m)
    assert m.categories.violence_graphic and m.categories.violence
    assert m.category_scores.violence_graphic > 0.5


async def test_errors_raise_the_sdk_exceptions(sdk: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        await sdk.moderations.create(input="x", model="no-such-moderation-model")
    assert nf.value.code == "model_not_found"
    image: Any = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(openai.BadRequestError) as br:
        await sdk.moderations.create(input=image)
    assert br.value.param == "input"
    with pytest.raises(openai.BadRequestError) as br:
        await sdk.moderations.create(input=[])
    assert br.value.param == "input"
