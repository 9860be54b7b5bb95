"""The official `openai` SDK with keys made through the organization API: project and service
account keys generate, admin keys are refused with PermissionDeniedError, revoked or mismatched keys
with AuthenticationError."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

MSGS: list[Any] = [{"role": "user", "content": "hello there"}]
BASE = "http://hearth.test"


@asynccontextmanager
async def sdk_with(app: Any, api_key: str, **kw: Any) -> AsyncIterator[AsyncOpenAI]:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    async with AsyncOpenAI(base_url=f"{BASE}/v1", api_key=api_key, http_client=http, max_retries=0, **kw) as c:
        yield c


class Admin:
    """The organization API over httpx with the bootstrap admin key (the SDK has no admin client)."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app, self.c = app, client
        self.key: str = app.state.runtime.admin_key

    async def call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        r = await self.c.request(method, f"/v1/organization{path}", headers={"Authorization": f"Bearer {self.key}"},
                                 **kw)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    async def default_project(self) -> str:
        pid: str = (await self.call("GET", "/projects"))["data"][0]["id"]
        return pid

    async def project_key(self, project_id: str | None = None, **body: Any) -> dict[str, Any]:
        pid = project_id or await self.default_project()
        return await self.call("POST", f"/projects/{pid}/api_keys", json={"name": "sdk", **body})


@pytest.fixture
async def admin(app: Any) -> AsyncIterator[Admin]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        yield Admin(app, c)


async def test_project_key_runs_chat_and_models(app: Any, admin: Admin) -> None:
    key = (await admin.project_key())["value"]
    assert key.startswith("sk-proj-")
    async with sdk_with(app, key) as sdk:
        r = await sdk.chat.completions.create(model="fake-model", messages=MSGS, max_tokens=4)
        assert isinstance(r, ChatCompletion) and r.object == "chat.completion"
        assert r.choices[0].message.content and r.usage is not None and r.usage.completion_tokens == 4

        stream = await sdk.chat.completions.create(model="fake-model", messages=MSGS, max_tokens=4, stream=True,
                                                   stream_options={"include_usage": True})
        chunks = [c async for c in stream]
        assert chunks and all(isinstance(c, ChatCompletionChunk) for c in chunks)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4

        page = await sdk.models.list()
        assert page.data and all(isinstance(m, Model) for m in page.data)
        assert "fake-model" in [m.id for m in page.data]
        assert (await sdk.models.retrieve("fake-model")).id == "fake-model"


async def test_service_account_key_runs_chat(app: Any, admin: Admin) -> None:
    pid = await admin.default_project()
    acct = await admin.call("POST", f"/projects/{pid}/service_accounts", json={"name": "bot"})
    async with sdk_with(app, acct["api_key"]["value"]) as sdk:
        r = await sdk.chat.completions.create(model="fake-model", messages=MSGS, max_tokens=2)
        assert r.choices[0].finish_reason == "length"


async def test_project_and_organization_options_must_match(app: Any, admin: Admin) -> None:
    pid = await admin.default_project()
    other = (await admin.call("POST", "/projects", json={"name": "Other"}))["id"]
    key = (await admin.project_key(pid))["value"]
    org = app.state.runtime.container.admin.store.organization().id

    async with sdk_with(app, key, project=pid, organization=org) as sdk:
        assert (await sdk.chat.completions.create(model="fake-model", messages=MSGS, max_tokens=1)).choices

    async with sdk_with(app, key, project=other) as sdk:
        with pytest.raises(openai.AuthenticationError) as exc:
            await sdk.chat.completions.create(model="fake-model", messages=MSGS, max_tokens=1)
        assert exc.value.status_code == 401 and exc.value.code == "mismatched_project"

    async with sdk_with(app, key, organization="org-elsewhere") as sdk:
        with pytest.raises(openai.AuthenticationError) as exc:
            await sdk.models.list()
        assert exc.value.code == "mismatched_organization"


async def test_admin_key_is_permission_denied(app: Any, admin: Admin) -> None:
    async with sdk_with(app, admin.key) as sdk:
        with pytest.raises(openai.PermissionDeniedError) as exc:
            await sdk.chat.completions.create(model="fake-model", messages=MSGS, max_tokens=1)
        assert exc.value.status_code == 403 and exc.value.code == "insufficient_permissions"
        assert exc.value.type == "invalid_request_error"
        with pytest.raises(openai.PermissionDeniedError):
            await sdk.models.list()
        with pytest.raises(openai.PermissionDeniedError):
            stream = await sdk.chat.completions.create(model="fake-model", messages=MSGS, stream=True)
            async for _ in stream:
                pass


async def test_revoked_key_is_an_authentication_error(app: Any, admin: Admin) -> None:
    pid = await admin.default_project()
    created = await admin.project_key(pid)
    async with sdk_with(app, created["value"]) as sdk:
        assert (await sdk.models.list()).data
        deleted = await admin.call("DELETE", f"/projects/{pid}/api_keys/{created['id']}")
        assert deleted["deleted"] is True
        with pytest.raises(openai.AuthenticationError) as exc:
            await sdk.chat.completions.create(model="fake-model", messages=MSGS, max_tokens=1)
        assert exc.value.status_code == 401 and exc.value.code == "invalid_api_key"
        assert created["value"] not in str(exc.value)
        with pytest.raises(openai.AuthenticationError):
            await sdk.models.list()


async def test_unknown_key_is_an_authentication_error(app: Any) -> None:
    async with sdk_with(app, "sk-proj-" + "n" * 64) as sdk:
        with pytest.raises(openai.AuthenticationError) as exc:
            await sdk.models.list()
        assert exc.value.code == "invalid_api_key"


async def test_restricted_keys_are_permission_denied_outside_their_scopes(app: Any, admin: Admin) -> None:
    read_only = (await admin.project_key(permissions="read_only"))["value"]
    models_only = (await admin.project_key(permissions=["models"]))["value"]
    for key in (read_only, models_only):
        async with sdk_with(app, key) as sdk:
            assert (await sdk.models.list()).data
            with pytest.raises(openai.PermissionDeniedError) as exc:
                await sdk.chat.completions.create(model="fake-model", messages=MSGS, max_tokens=1)
            assert "api.chat.write" in exc.value.message


async def test_conftest_sdk_fixture_uses_a_project_key(sdk: AsyncOpenAI, project_key: str) -> None:
    assert project_key.startswith("sk-proj-") and sdk.api_key == project_key
    assert (await sdk.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_tokens=1)).choices
