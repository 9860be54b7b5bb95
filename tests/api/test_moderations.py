"""POST /v1/moderations over FakeModerator: shapes, all 13 categories, models, every input error, auth."""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.config import ConfigError, load_settings
from hearth.engine.backends.fake import FakeEngine
from hearth.engine.moderation import CATEGORIES, FakeModerator
from hearth.protocol.moderations import MAX_INPUT_CHARS, MAX_INPUTS
from tests.conftest import API_KEY, make_app

URL = "/v1/moderations"
ID_RE = re.compile(r"^modr-[0-9A-Za-z]{22}$")


@pytest.fixture
def app(fake_engine: FakeEngine, tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_app(fake_engine, tmp_path, moderation={"backend": "fake"})


@pytest.fixture
def fake(app) -> FakeModerator:  # type: ignore[no-untyped-def]
    m = app.state.runtime.container.moderations._moderator
    assert isinstance(m, FakeModerator)
    return m


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test",
                                 headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c


def error_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return dict(body["error"])


def assert_result_shape(res: dict[str, Any]) -> None:
    assert set(res) == {"flagged", "categories", "category_scores", "category_applied_input_types"}
    for key in ("categories", "category_scores", "category_applied_input_types"):
        assert set(res[key]) == set(CATEGORIES), key  # exact wire names: slashes and dashes
    assert all(isinstance(v, bool) for v in res["categories"].values())
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in res["category_scores"].values())
    assert all(v == ["text"] for v in res["category_applied_input_types"].values())
    assert res["flagged"] == any(res["categories"].values())


async def test_string_input(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json={"input": "what a lovely day", "model": "omni-moderation-latest"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "model", "results"}
    assert ID_RE.match(body["id"]) and body["model"] == "fake-moderation"
    [res] = body["results"]
    assert_result_shape(res)
    assert res["flagged"] is False


async def test_ids_are_unique(client: httpx.AsyncClient) -> None:
    ids = {(await client.post(URL, json={"input": "hi"})).json()["id"] for _ in range(5)}
    assert len(ids) == 5


async def test_flags_and_parent_categories(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json={"input": ["you idiot", "a kill-threat", "csam", "fine"]})
    assert r.status_code == 200
    res = r.json()["results"]
    assert [x["flagged"] for x in res] == [True, True, True, False]
    assert res[0]["categories"]["harassment"] and not res[0]["categories"]["harassment/threatening"]
    # a subcategory implies its parent
    assert res[1]["categories"]["harassment/threatening"] and res[1]["categories"]["harassment"]
    assert res[2]["categories"]["sexual/minors"] and res[2]["categories"]["sexual"]
    assert res[1]["category_scores"]["harassment"] >= res[1]["category_scores"]["harassment/threatening"]
    for x in res:
        assert_result_shape(x)


async def test_array_of_strings_keeps_order(client: httpx.AsyncClient, fake: FakeModerator) -> None:
    texts = ["one", "you loser", "three"]
    r = await client.post(URL, json={"input": texts})
    assert r.status_code == 200
    assert [x["flagged"] for x in r.json()["results"]] == [False, True, False]
    assert fake.calls[-1] == texts


async def test_text_parts_are_one_input(client: httpx.AsyncClient, fake: FakeModerator) -> None:
    parts = [{"type": "text", "text": "first part"}, {"type": "text", "text": "then stab"}]
    r = await client.post(URL, json={"input": parts})
    assert r.status_code == 200
    [res] = r.json()["results"]
    assert res["categories"]["violence"] is True
    assert fake.calls[-1] == ["first part\nthen stab"]


@pytest.mark.parametrize("model", [None, "omni-moderation-latest", "omni-moderation-2024-09-26",
                                   "text-moderation-latest", "text-moderation-stable", "fake-moderation"])
async def test_models_that_map_to_the_classifier(client: httpx.AsyncClient, model: str | None) -> None:
    body: dict[str, Any] = {"input": "hello"}
    if model is not None:
        body["model"] = model
    r = await client.post(URL, json=body)
    assert r.status_code == 200 and r.json()["model"] == "fake-moderation"


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json={"input": "hello", "model": "gpt-4o"})
    assert r.status_code == 404
    err = error_of(r)
    assert err["code"] == "model_not_found" and err["param"] == "model" and err["type"] == "invalid_request_error"


@pytest.mark.parametrize("parts", [
    [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}],
    [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
])
async def test_image_parts_are_a_clear_400(client: httpx.AsyncClient, fake: FakeModerator,
                                           parts: list[dict[str, Any]]) -> None:
    r = await client.post(URL, json={"input": parts})
    assert r.status_code == 400
    err = error_of(r)
    assert err["param"] == "input" and err["code"] == "image_input_not_supported"
    assert err["type"] == "invalid_request_error" and "image" in err["message"].lower()
    assert fake.calls == []


@pytest.mark.parametrize("value", [
    "", [], [""], ["ok", ""], 5, None, True, {"text": "x"}, [1, 2], ["a", {"type": "text", "text": "b"}],
    [{"type": "audio"}], [{"type": "text"}], [{"type": "text", "text": 3}],
    [{"type": "text", "text": "x", "extra": 1}], [{"type": "image_url", "image_url": "not-an-object"}],
    ["x"] * (MAX_INPUTS + 1), "x" * (MAX_INPUT_CHARS + 1), [{"type": "text", "text": ""}],
])
async def test_bad_input_is_400_on_input(client: httpx.AsyncClient, fake: FakeModerator, value: Any) -> None:
    r = await client.post(URL, json={"input": value})
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["param"] == "input" and err["type"] == "invalid_request_error", err
    assert fake.calls == []


async def test_the_limits_themselves_are_accepted(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json={"input": ["x"] * MAX_INPUTS})
    assert r.status_code == 200 and len(r.json()["results"]) == MAX_INPUTS
    r = await client.post(URL, json={"input": "x" * MAX_INPUT_CHARS})
    assert r.status_code == 200


async def test_missing_input_and_unknown_parameter(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json={"model": "omni-moderation-latest"})
    assert r.status_code == 400
    err = error_of(r)
    assert err["param"] == "input" and err["code"] == "missing_required_parameter"
    r = await client.post(URL, json={"input": "x", "temperature": 1})
    assert r.status_code == 400 and error_of(r)["code"] == "unknown_parameter"
    r = await client.post(URL, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and error_of(r)["type"] == "invalid_request_error"
    r = await client.post(URL, json={"input": "x", "model": 7})
    assert r.status_code == 400 and error_of(r)["param"] == "model"


async def test_classifier_failure_is_a_500_envelope(client: httpx.AsyncClient, fake: FakeModerator) -> None:
    fake.fail = True
    r = await client.post(URL, json={"input": "x"})
    assert r.status_code == 500
    assert error_of(r)["type"] == "server_error"
    assert (await client.post(URL, json={"input": "x"})).status_code == 200  # it recovers


async def test_classification_runs_off_the_event_loop(app, client: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []

    class Recording(FakeModerator):
        def classify(self, texts: list[str]):  # type: ignore[no-untyped-def]
            seen.append(threading.current_thread().name)
            return super().classify(texts)

    app.state.runtime.container.moderations._moderator = Recording()
    assert (await client.post(URL, json={"input": "x"})).status_code == 200
    assert seen and seen[0].startswith("moderation") and seen[0] != threading.current_thread().name


async def test_auth_is_required(app) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test") as c:
        r = await c.post(URL, json={"input": "x"})
        assert r.status_code == 401
        r = await c.post(URL, json={"input": "x"}, headers={"Authorization": "Bearer sk-wrong-0000000000000000"})
        assert r.status_code == 401


async def test_key_scopes(fake_engine: FakeEngine, tmp_path: Path) -> None:
    app = make_app(fake_engine, tmp_path, with_platform=True, moderation={"backend": "fake"})
    store = app.state.runtime.container.admin.store
    pid = store.organization().default_project_id
    allowed = store.create_project_key(pid, "mod", scopes=["moderations"]).secret
    denied = store.create_project_key(pid, "chat", scopes=["chat"]).secret
    read_only = store.create_project_key(pid, "ro", scopes="read_only").secret
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test") as c:
        def post(key: str):  # type: ignore[no-untyped-def]
            return c.post(URL, json={"input": "x"}, headers={"Authorization": f"Bearer {key}"})

        assert (await post(allowed)).status_code == 200
        for key in (denied, read_only):
            r = await post(key)
            assert r.status_code == 403
            err = error_of(r)
            assert err["code"] == "insufficient_permissions" and "api.moderations.write" in err["message"]


async def test_disabled_moderation_is_404(fake_engine: FakeEngine, tmp_path: Path) -> None:
    app = make_app(fake_engine, tmp_path, moderation={"enabled": False})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test",
                                 headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        r = await c.post(URL, json={"input": "x"})
    assert r.status_code == 404 and error_of(r)["code"] == "model_not_found"


def test_thresholds_setting_is_validated(tmp_path: Path) -> None:
    ok = load_settings(None, data_dir=tmp_path, moderation={"thresholds": {"violence": 0.7}})
    assert ok.moderation.thresholds == {"violence": 0.7}
    with pytest.raises(ConfigError, match="unknown moderation category"):
        load_settings(None, data_dir=tmp_path, moderation={"thresholds": {"violent": 0.7}})
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        load_settings(None, data_dir=tmp_path, moderation={"thresholds": {"violence": 1.5}})


def test_configured_thresholds_reach_the_classifier(fake_engine: FakeEngine, tmp_path: Path) -> None:
    app = make_app(fake_engine, tmp_path, moderation={"thresholds": {"hate": 0.9}})
    m = app.state.runtime.container.moderations._moderator
    assert m.thresholds()["hate"] == 0.9  # the real classifier, not loaded: only its weights file is read
