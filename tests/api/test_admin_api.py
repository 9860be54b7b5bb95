"""The organization API (/v1/organization/...) and platform keys in use, over FakeEngine with a real
SQLite platform: bootstrap, every admin route, auth failures, rotation, tenant isolation,
last_used_at bookkeeping and logs free of key material."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from hearth.api.app import create_app
from hearth.bootstrap import build_runtime
from hearth.config import Settings
from hearth.engine.backends.fake import FakeEngine
from hearth.platform.keys import hash_secret
from tests.conftest import API_KEY, make_app

ORG = "/v1/organization"
CHAT = "/v1/chat/completions"
ENVELOPE_KEYS = {"message", "type", "param", "code"}
CHAT_BODY: dict[str, Any] = {"model": "fake-model", "messages": [{"role": "user", "content": "hello there"}],
                             "max_tokens": 3}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def error_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == ENVELOPE_KEYS, body
    err: dict[str, Any] = body["error"]
    return err


class Platform:
    """The app, its runtime and an httpx client with no default credentials."""

    def __init__(self, app: Any, client: httpx.AsyncClient, engine: FakeEngine) -> None:
        self.app, self.c, self.engine = app, client, engine
        self.runtime = app.state.runtime
        assert self.runtime.admin_key is not None
        self.admin_key: str = self.runtime.admin_key

    @property
    def store(self) -> Any:
        return self.runtime.container.admin.store

    @property
    def auth(self) -> Any:
        return self.runtime.container.auth

    async def admin(self, method: str, path: str, key: str | None = None, headers: dict[str, str] | None = None,
                    **kw: Any) -> httpx.Response:
        return await self.c.request(method, ORG + path, headers={**bearer(key or self.admin_key), **(headers or {})},
                                    **kw)

    async def ok(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        r = await self.admin(method, path, **kw)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    async def default_project(self) -> str:
        page = await self.ok("GET", "/projects")
        pid: str = page["data"][0]["id"]
        return pid

    async def project(self, name: str) -> str:
        pid: str = (await self.ok("POST", "/projects", json={"name": name}))["id"]
        return pid

    async def key(self, project_id: str, name: str = "k", permissions: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if permissions is not None:
            body["permissions"] = permissions
        return await self.ok("POST", f"/projects/{project_id}/api_keys", json=body)

    async def chat(self, key: str, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
        return await self.c.post(CHAT, json={**CHAT_BODY, **body}, headers={**bearer(key), **(headers or {})})

    async def models(self, key: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.c.get("/v1/models", headers={**bearer(key), **(headers or {})})


@pytest.fixture
async def pf(fake_engine: FakeEngine, tmp_path: Path) -> AsyncIterator[Platform]:
    app = make_app(fake_engine, tmp_path, with_platform=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test") as c:
        yield Platform(app, c, fake_engine)


# ------------------------------------------------------------------------------------- bootstrap


async def test_bootstrap_writes_private_admin_key_file(pf: Platform, tmp_path: Path) -> None:
    path = tmp_path / "admin-key.txt"
    assert pf.runtime.admin_key_file == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().strip() == pf.admin_key
    assert pf.admin_key.startswith("sk-admin-")


async def test_admin_key_sees_exactly_the_default_project(pf: Platform) -> None:
    page = await pf.ok("GET", "/projects")
    assert page["object"] == "list" and page["has_more"] is False
    assert [p["name"] for p in page["data"]] == ["Default project"]
    p = page["data"][0]
    assert p["object"] == "organization.project" and p["id"].startswith("proj_")
    assert p["status"] == "active" and p["archived_at"] is None and isinstance(p["created_at"], int)
    assert page["first_id"] == page["last_id"] == p["id"]


async def test_second_start_keeps_the_first_admin_key(pf: Platform, tmp_path: Path) -> None:
    old = pf.admin_key
    again = build_runtime(Settings(data_dir=tmp_path, api_key=SecretStr(API_KEY)),
                          engines=[FakeEngine("fake-model", context_length=256)], with_platform=True)
    assert again.admin_key is None
    assert (tmp_path / "admin-key.txt").read_text().strip() == old
    app2 = create_app(again.container)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app2), base_url="http://hearth.test") as c:
        r = await c.get(f"{ORG}/projects", headers=bearer(old))
        assert r.status_code == 200, r.text
        assert [p["name"] for p in r.json()["data"]] == ["Default project"]  # same database, one org


# ------------------------------------------------------------------------------------- projects


async def test_project_create_retrieve_update_archive(pf: Platform) -> None:
    created = await pf.ok("POST", "/projects", json={"name": "Research"})
    pid = created["id"]
    assert created["object"] == "organization.project" and pid.startswith("proj_")
    assert created["name"] == "Research" and created["status"] == "active" and created["archived_at"] is None

    assert await pf.ok("GET", f"/projects/{pid}") == created

    renamed = await pf.ok("POST", f"/projects/{pid}", json={"name": "Research 2"})
    assert renamed["id"] == pid and renamed["name"] == "Research 2"
    assert (await pf.ok("GET", f"/projects/{pid}"))["name"] == "Research 2"

    archived = await pf.ok("POST", f"/projects/{pid}/archive")
    assert archived["status"] == "archived" and isinstance(archived["archived_at"], int)
    assert (await pf.ok("POST", f"/projects/{pid}/archive"))["status"] == "archived"  # idempotent

    visible = [p["id"] for p in (await pf.ok("GET", "/projects"))["data"]]
    assert pid not in visible and len(visible) == 1
    everything = await pf.ok("GET", "/projects", params={"include_archived": "true"})
    assert pid in [p["id"] for p in everything["data"]] and len(everything["data"]) == 2
    assert (await pf.ok("GET", f"/projects/{pid}"))["status"] == "archived"  # still retrievable


async def test_archived_project_cannot_change_or_get_keys(pf: Platform) -> None:
    pid = await pf.project("Old")
    await pf.ok("POST", f"/projects/{pid}/archive")
    r = await pf.admin("POST", f"/projects/{pid}", json={"name": "New"})
    assert r.status_code == 400 and error_of(r)["code"] == "project_archived"
    r = await pf.admin("POST", f"/projects/{pid}/api_keys", json={"name": "k"})
    assert r.status_code == 400 and error_of(r)["code"] == "project_archived"
    r = await pf.admin("POST", f"/projects/{pid}/service_accounts", json={"name": "bot"})
    assert r.status_code == 400 and error_of(r)["code"] == "project_archived"


async def test_default_project_cannot_be_archived(pf: Platform) -> None:
    r = await pf.admin("POST", f"/projects/{await pf.default_project()}/archive")
    assert r.status_code == 400
    assert error_of(r)["type"] == "invalid_request_error"


async def test_project_bodies_are_validated(pf: Platform) -> None:
    for body in ({}, {"name": ""}, {"name": "x", "unknown": 1}):
        r = await pf.admin("POST", "/projects", json=body)
        assert r.status_code == 400, (body, r.text)
        assert error_of(r)["type"] == "invalid_request_error"


async def test_cursor_pagination(pf: Platform) -> None:
    for i in range(5):
        await pf.project(f"p{i}")
    full = await pf.ok("GET", "/projects", params={"limit": 100})
    all_ids = [p["id"] for p in full["data"]]
    assert len(all_ids) == 6 and full["has_more"] is False

    seen: list[str] = []
    after: str | None = None
    pages = []
    while True:
        params: dict[str, Any] = {"limit": 2}
        if after is not None:
            params["after"] = after
        page = await pf.ok("GET", "/projects", params=params)
        ids = [p["id"] for p in page["data"]]
        assert page["object"] == "list" and len(ids) == 2
        assert page["first_id"] == ids[0] and page["last_id"] == ids[-1]
        pages.append(page["has_more"])
        seen += ids
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert pages == [True, True, False]
    assert seen == all_ids  # same order, no duplicates, nothing missed


async def test_pagination_arguments_are_validated(pf: Platform) -> None:
    for params in ({"limit": 0}, {"limit": 101}, {"after": "proj_doesnotexist"}):
        r = await pf.admin("GET", "/projects", params=params)
        assert r.status_code == 400, (params, r.text)
        assert error_of(r)["type"] == "invalid_request_error"


async def test_unknown_ids_are_404_in_the_envelope(pf: Platform) -> None:
    pid = await pf.default_project()
    for method, path in [
        ("GET", "/projects/proj_missing"),
        ("POST", "/projects/proj_missing/archive"),
        ("GET", "/projects/proj_missing/api_keys"),
        ("GET", f"/projects/{pid}/api_keys/key_missing"),
        ("DELETE", f"/projects/{pid}/api_keys/key_missing"),
        ("GET", "/projects/proj_missing/service_accounts"),
        ("GET", f"/projects/{pid}/service_accounts/svc_acct_missing"),
        ("DELETE", f"/projects/{pid}/service_accounts/svc_acct_missing"),
        ("GET", "/admin_api_keys/key_missing"),
        ("DELETE", "/admin_api_keys/key_missing"),
    ]:
        r = await pf.admin(method, path)
        assert r.status_code == 404, (method, path, r.text)
        err = error_of(r)
        assert err["type"] == "invalid_request_error" and err["message"], (method, path)
    r = await pf.admin("POST", "/projects/proj_missing", json={"name": "x"})
    assert r.status_code == 404 and error_of(r)


# ------------------------------------------------------------------------------------- project keys


def assert_redacted(redacted: str, secret: str, prefix: str) -> None:
    assert redacted == f"{prefix}...{secret[-4:]}"
    assert secret not in redacted


async def test_project_key_lifecycle(pf: Platform) -> None:
    pid = await pf.default_project()
    created = await pf.key(pid, "ci")
    secret, kid = created["value"], created["id"]
    assert created["object"] == "organization.project.api_key"
    assert kid.startswith("key_") and secret.startswith("sk-proj-")
    assert created["name"] == "ci" and created["last_used_at"] is None
    assert isinstance(created["created_at"], int)
    assert created["owner"]["type"] == "user" and created["owner"]["user"]["id"]
    assert created["permissions"] == "all"
    assert_redacted(created["redacted_value"], secret, "sk-proj-")

    got = await pf.ok("GET", f"/projects/{pid}/api_keys/{kid}")
    assert "value" not in got and secret not in json.dumps(got)
    assert {k: v for k, v in created.items() if k != "value"} == got

    page = await pf.ok("GET", f"/projects/{pid}/api_keys")
    assert page["object"] == "list" and [k["id"] for k in page["data"]] == [kid]
    assert page["first_id"] == page["last_id"] == kid and page["has_more"] is False
    assert "value" not in page["data"][0] and secret not in json.dumps(page)

    deleted = await pf.ok("DELETE", f"/projects/{pid}/api_keys/{kid}")
    assert deleted == {"object": "organization.project.api_key.deleted", "id": kid, "deleted": True}
    assert (await pf.admin("GET", f"/projects/{pid}/api_keys/{kid}")).status_code == 404
    assert (await pf.admin("DELETE", f"/projects/{pid}/api_keys/{kid}")).status_code == 404
    assert (await pf.ok("GET", f"/projects/{pid}/api_keys"))["data"] == []


async def test_project_key_permissions_are_echoed_and_validated(pf: Platform) -> None:
    pid = await pf.default_project()
    assert (await pf.key(pid, permissions="read_only"))["permissions"] == "read_only"
    assert (await pf.key(pid, permissions=["models", "chat"]))["permissions"] == ["chat", "models"]
    for bad in ("everything", ["admin"], [], ["nope"]):
        r = await pf.admin("POST", f"/projects/{pid}/api_keys", json={"name": "k", "permissions": bad})
        assert r.status_code == 400, (bad, r.text)
        assert error_of(r)["type"] == "invalid_request_error"


async def test_project_key_is_invisible_under_another_project(pf: Platform) -> None:
    a, b = await pf.default_project(), await pf.project("B")
    kid = (await pf.key(a))["id"]
    assert (await pf.admin("GET", f"/projects/{b}/api_keys/{kid}")).status_code == 404
    assert (await pf.admin("DELETE", f"/projects/{b}/api_keys/{kid}")).status_code == 404
    assert (await pf.ok("GET", f"/projects/{b}/api_keys"))["data"] == []
    assert (await pf.admin("GET", f"/projects/{a}/api_keys/{kid}")).status_code == 200  # untouched


async def test_project_key_pagination(pf: Platform) -> None:
    pid = await pf.default_project()
    ids = {(await pf.key(pid, f"k{i}"))["id"] for i in range(3)}
    first = await pf.ok("GET", f"/projects/{pid}/api_keys", params={"limit": 2})
    assert len(first["data"]) == 2 and first["has_more"] is True
    rest = await pf.ok("GET", f"/projects/{pid}/api_keys", params={"limit": 2, "after": first["last_id"]})
    assert len(rest["data"]) == 1 and rest["has_more"] is False
    assert {k["id"] for k in first["data"] + rest["data"]} == ids


# ------------------------------------------------------------------------------------- service accounts


async def test_service_account_lifecycle(pf: Platform) -> None:
    pid = await pf.default_project()
    created = await pf.ok("POST", f"/projects/{pid}/service_accounts", json={"name": "deploy-bot"})
    sid = created["id"]
    assert created["object"] == "organization.project.service_account" and sid.startswith("svc_acct_")
    assert created["name"] == "deploy-bot" and created["role"] == "member"
    key = created["api_key"]
    secret = key["value"]
    assert key["object"] == "organization.project.service_account.api_key"
    assert secret.startswith("sk-svcacct-") and key["id"].startswith("key_")

    got = await pf.ok("GET", f"/projects/{pid}/service_accounts/{sid}")
    assert got == {k: v for k, v in created.items() if k != "api_key"}
    page = await pf.ok("GET", f"/projects/{pid}/service_accounts")
    assert page["object"] == "list" and [a["id"] for a in page["data"]] == [sid]
    assert page["first_id"] == page["last_id"] == sid and page["has_more"] is False
    assert secret not in json.dumps(page) and secret not in json.dumps(got)

    # Its key is a project key owned by the account, listed (redacted) with the project's keys.
    keys = await pf.ok("GET", f"/projects/{pid}/api_keys")
    [listed] = [k for k in keys["data"] if k["id"] == key["id"]]
    assert listed["owner"]["type"] == "service_account"
    assert listed["owner"]["service_account"]["id"] == sid
    assert_redacted(listed["redacted_value"], secret, "sk-svcacct-")
    assert secret not in json.dumps(keys)
    assert (await pf.chat(secret)).status_code == 200

    deleted = await pf.ok("DELETE", f"/projects/{pid}/service_accounts/{sid}")
    assert deleted == {"object": "organization.project.service_account.deleted", "id": sid, "deleted": True}
    assert (await pf.admin("GET", f"/projects/{pid}/service_accounts/{sid}")).status_code == 404
    assert (await pf.admin("DELETE", f"/projects/{pid}/service_accounts/{sid}")).status_code == 404
    r = await pf.chat(secret)  # deleting the account revokes its key
    assert r.status_code == 401 and error_of(r)["code"] == "invalid_api_key"


async def test_service_account_is_invisible_under_another_project(pf: Platform) -> None:
    a, b = await pf.default_project(), await pf.project("B")
    sid = (await pf.ok("POST", f"/projects/{a}/service_accounts", json={"name": "bot"}))["id"]
    assert (await pf.admin("GET", f"/projects/{b}/service_accounts/{sid}")).status_code == 404
    assert (await pf.admin("DELETE", f"/projects/{b}/service_accounts/{sid}")).status_code == 404
    assert (await pf.ok("GET", f"/projects/{b}/service_accounts"))["data"] == []


# ------------------------------------------------------------------------------------- admin keys


async def test_admin_key_lifecycle(pf: Platform) -> None:
    before = await pf.ok("GET", "/admin_api_keys")
    assert before["object"] == "list" and len(before["data"]) == 1  # the bootstrap key
    boot = before["data"][0]
    assert boot["object"] == "organization.admin_api_key"
    assert_redacted(boot["redacted_value"], pf.admin_key, "sk-admin-")

    created = await pf.ok("POST", "/admin_api_keys", json={"name": "ops"})
    secret, kid = created["value"], created["id"]
    assert created["object"] == "organization.admin_api_key"
    assert kid.startswith("key_") and secret.startswith("sk-admin-") and created["name"] == "ops"
    assert created["owner"]["type"] == "user" and created["last_used_at"] is None
    assert_redacted(created["redacted_value"], secret, "sk-admin-")

    got = await pf.ok("GET", f"/admin_api_keys/{kid}")
    assert got == {k: v for k, v in created.items() if k != "value"}
    page = await pf.ok("GET", "/admin_api_keys")
    assert {k["id"] for k in page["data"]} == {boot["id"], kid}
    assert page["first_id"] == page["data"][0]["id"] and page["last_id"] == page["data"][-1]["id"]
    assert secret not in json.dumps(page) and pf.admin_key not in json.dumps(page)

    # The new admin key works on the admin API and is refused there once deleted.
    assert (await pf.admin("GET", "/projects", key=secret)).status_code == 200
    deleted = await pf.ok("DELETE", f"/admin_api_keys/{kid}")
    assert deleted == {"object": "organization.admin_api_key.deleted", "id": kid, "deleted": True}
    r = await pf.admin("GET", "/projects", key=secret)
    assert r.status_code == 401 and error_of(r)["code"] == "invalid_api_key"
    assert (await pf.admin("GET", f"/admin_api_keys/{kid}")).status_code == 404


async def test_admin_and_project_key_ids_do_not_cross(pf: Platform) -> None:
    pid = await pf.default_project()
    pkey = (await pf.key(pid))["id"]
    akey = (await pf.ok("POST", "/admin_api_keys", json={"name": "a"}))["id"]
    assert (await pf.admin("GET", f"/admin_api_keys/{pkey}")).status_code == 404
    assert (await pf.admin("DELETE", f"/admin_api_keys/{pkey}")).status_code == 404
    assert (await pf.admin("GET", f"/projects/{pid}/api_keys/{akey}")).status_code == 404
    assert (await pf.admin("DELETE", f"/projects/{pid}/api_keys/{akey}")).status_code == 404


# ------------------------------------------------------------------------------------- keys in use


async def test_project_key_calls_chat_and_models(pf: Platform) -> None:
    secret = (await pf.key(await pf.default_project()))["value"]
    r = await pf.chat(secret)
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "chat.completion"
    r = await pf.models(secret)
    assert r.status_code == 200 and "fake-model" in [m["id"] for m in r.json()["data"]]


async def test_admin_key_cannot_generate(pf: Platform) -> None:
    for r in (await pf.chat(pf.admin_key), await pf.models(pf.admin_key)):
        assert r.status_code == 403
        err = error_of(r)
        assert err["code"] == "insufficient_permissions" and "project key" in err["message"]


async def test_project_key_cannot_reach_admin_api(pf: Platform) -> None:
    a, b = await pf.default_project(), await pf.project("B")
    secret = (await pf.key(a))["value"]
    for method, path in [("GET", "/projects"), ("GET", f"/projects/{a}"), ("GET", f"/projects/{b}/api_keys"),
                         ("GET", f"/projects/{b}/service_accounts"), ("POST", "/projects"),
                         ("GET", "/admin_api_keys"), ("POST", f"/projects/{a}/api_keys")]:
        r = await pf.admin(method, path, key=secret, json={"name": "x"} if method == "POST" else None)
        assert r.status_code == 403, (method, path, r.text)
        err = error_of(r)
        assert err["code"] == "insufficient_permissions" and "admin key" in err["message"]
    assert len((await pf.ok("GET", "/projects"))["data"]) == 2  # nothing was created
    # The static key is a project key too: no admin API.
    assert (await pf.admin("GET", "/projects", key=API_KEY)).status_code == 403


async def test_missing_key_is_401_explaining_how_to_pass_one(pf: Platform) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}, {"Authorization": "sk-x"}):
        r = await pf.c.post(CHAT, json=CHAT_BODY, headers=headers)
        assert r.status_code == 401, headers
        err = error_of(r)
        assert err["type"] == "invalid_request_error"
        assert "Authorization" in err["message"] and "Bearer" in err["message"]
    r = await pf.c.get(f"{ORG}/projects")
    assert r.status_code == 401


async def test_wrong_key_is_401_without_echoing_it(pf: Platform) -> None:
    real = (await pf.key(await pf.default_project()))["value"]
    wrong = real[:-6] + ("A" if real[-6] != "A" else "B") + real[-5:]
    for bad in (wrong, "sk-proj-" + "x" * 64, "not-a-key-at-all-really", "sk-" + "y" * 300):
        for r in (await pf.chat(bad), await pf.admin("GET", "/projects", key=bad)):
            assert r.status_code == 401
            err = error_of(r)
            assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error"
            assert bad not in err["message"] and bad not in r.text


async def test_revoked_key_is_refused_on_the_next_request(pf: Platform) -> None:
    pid = await pf.default_project()
    created = await pf.key(pid)
    assert (await pf.chat(created["value"])).status_code == 200
    await pf.ok("DELETE", f"/projects/{pid}/api_keys/{created['id']}")
    r = await pf.chat(created["value"])
    assert r.status_code == 401 and error_of(r)["code"] == "invalid_api_key"
    assert (await pf.models(created["value"])).status_code == 401


async def test_archived_project_keys_stop_working(pf: Platform) -> None:
    pid = await pf.project("Temp")
    secret = (await pf.key(pid))["value"]
    svc = (await pf.ok("POST", f"/projects/{pid}/service_accounts", json={"name": "bot"}))["api_key"]["value"]
    assert (await pf.chat(secret)).status_code == 200
    await pf.ok("POST", f"/projects/{pid}/archive")
    for key in (secret, svc):
        r = await pf.chat(key)
        assert r.status_code == 401 and error_of(r)["code"] == "invalid_api_key"


async def test_read_only_key(pf: Platform) -> None:
    secret = (await pf.key(await pf.default_project(), permissions="read_only"))["value"]
    assert (await pf.models(secret)).status_code == 200
    assert (await pf.c.get("/v1/models/fake-model", headers=bearer(secret))).status_code == 200
    r = await pf.chat(secret)
    assert r.status_code == 403
    err = error_of(r)
    assert err["code"] == "insufficient_permissions" and "api.chat.write" in err["message"]


async def test_restricted_key_names_the_missing_scope(pf: Platform) -> None:
    secret = (await pf.key(await pf.default_project(), permissions=["models"]))["value"]
    assert (await pf.models(secret)).status_code == 200
    r = await pf.chat(secret)
    assert r.status_code == 403
    err = error_of(r)
    assert err["code"] == "insufficient_permissions" and "Missing scopes: api.chat.write" in err["message"]

    chat_only = (await pf.key(await pf.default_project(), permissions=["chat"]))["value"]
    assert (await pf.chat(chat_only)).status_code == 200
    r = await pf.models(chat_only)
    assert r.status_code == 403 and "api.models.read" in error_of(r)["message"]


async def test_openai_project_header(pf: Platform) -> None:
    a, b = await pf.default_project(), await pf.project("B")
    secret = (await pf.key(a))["value"]
    r = await pf.chat(secret, headers={"OpenAI-Project": b})
    assert r.status_code == 401
    err = error_of(r)
    assert err["code"] == "mismatched_project" and secret not in r.text
    assert (await pf.models(secret, headers={"OpenAI-Project": "proj_nonexistent"})).status_code == 401
    assert (await pf.chat(secret, headers={"OpenAI-Project": a})).status_code == 200
    assert (await pf.models(secret, headers={"OpenAI-Project": a})).status_code == 200


async def test_openai_organization_header(pf: Platform) -> None:
    secret = (await pf.key(await pf.default_project()))["value"]
    org = pf.store.organization().id
    assert org.startswith("org-") and pf.auth.org_id == org
    r = await pf.chat(secret, headers={"OpenAI-Organization": "org-someoneelse"})
    assert r.status_code == 401 and error_of(r)["code"] == "mismatched_organization"
    r = await pf.admin("GET", "/projects", headers={"OpenAI-Organization": "org-someoneelse"})
    assert r.status_code == 401
    assert (await pf.chat(secret, headers={"OpenAI-Organization": org})).status_code == 200
    r = await pf.admin("GET", "/projects", headers={"OpenAI-Organization": org})
    assert r.status_code == 200


async def test_static_key_still_works_with_the_platform(pf: Platform) -> None:
    assert (await pf.chat(API_KEY)).status_code == 200


# ------------------------------------------------------------------------------------- rotation


async def test_rotation_without_overlap(pf: Platform) -> None:
    pid = await pf.default_project()
    created = await pf.key(pid)
    old, kid = created["value"], created["id"]
    new = pf.store.rotate(kid, overlap_seconds=0)
    assert new != old and new.startswith("sk-proj-")
    assert (await pf.chat(new)).status_code == 200
    r = await pf.chat(old)
    assert r.status_code == 401 and error_of(r)["code"] == "invalid_api_key"
    got = await pf.ok("GET", f"/projects/{pid}/api_keys/{kid}")
    assert_redacted(got["redacted_value"], new, "sk-proj-")


async def test_rotation_with_overlap_window(pf: Platform) -> None:
    pid = await pf.default_project()
    created = await pf.key(pid)
    old, kid = created["value"], created["id"]
    t0 = int(time.time())
    pf.auth.clock = lambda: float(t0 + 10)
    new = pf.store.rotate(kid, overlap_seconds=60, now=t0)
    assert (await pf.chat(old)).status_code == 200
    assert (await pf.chat(new)).status_code == 200

    pf.auth.clock = lambda: float(t0 + 60)  # the window is [t0, t0 + 60)
    assert (await pf.chat(old)).status_code == 401
    assert (await pf.chat(new)).status_code == 200

    # Rotating again drops the first secret for good and opens a window for the second.
    pf.auth.clock = lambda: float(t0 + 100)
    newer = pf.store.rotate(kid, overlap_seconds=30, now=t0 + 100)
    assert (await pf.chat(newer)).status_code == 200
    assert (await pf.chat(new)).status_code == 200
    assert (await pf.chat(old)).status_code == 401


async def test_revoking_a_rotated_key_kills_both_secrets(pf: Platform) -> None:
    pid = await pf.default_project()
    created = await pf.key(pid)
    new = pf.store.rotate(created["id"], overlap_seconds=3600)
    assert (await pf.chat(created["value"])).status_code == 200
    await pf.ok("DELETE", f"/projects/{pid}/api_keys/{created['id']}")
    assert (await pf.chat(created["value"])).status_code == 401
    assert (await pf.chat(new)).status_code == 401


# ------------------------------------------------------------------------------------- isolation


async def test_prefix_cache_namespace_is_per_project(pf: Platform) -> None:
    a, b = await pf.default_project(), await pf.project("B")
    a1, a2 = (await pf.key(a, "a1"))["value"], (await pf.key(a, "a2"))["value"]
    a_svc = (await pf.ok("POST", f"/projects/{a}/service_accounts", json={"name": "bot"}))["api_key"]["value"]
    b1 = (await pf.key(b, "b1"))["value"]

    keys = []
    for secret in (a1, a2, a_svc, b1):
        assert (await pf.chat(secret)).status_code == 200
        keys.append(pf.engine.requests[-1].cache_key)
    ka1, ka2, ka_svc, kb1 = keys
    assert ka1 and kb1
    assert ka1 == ka2 == ka_svc
    assert ka1 != kb1
    assert (await pf.chat(API_KEY)).status_code == 200  # the static key has its own namespace
    assert pf.engine.requests[-1].cache_key not in (ka1, kb1)


async def test_stream_uses_the_project_namespace(pf: Platform) -> None:
    a, b = await pf.default_project(), await pf.project("B")
    ka = (await pf.key(a))["value"]
    kb = (await pf.key(b))["value"]
    seen = []
    for secret in (ka, kb):
        r = await pf.chat(secret, stream=True)
        assert r.status_code == 200 and "data: [DONE]" in r.text
        seen.append(pf.engine.requests[-1].cache_key)
    assert seen[0] and seen[1] and seen[0] != seen[1]


# ------------------------------------------------------------------------------------- last_used_at


async def test_last_used_at_is_set_by_the_batched_flush(pf: Platform) -> None:
    pid = await pf.default_project()
    created = await pf.key(pid)
    kid = created["id"]
    assert created["last_used_at"] is None
    await pf.auth.flush_used()  # drop whatever the admin calls so far queued
    for _ in range(3):
        assert (await pf.chat(created["value"])).status_code == 200
    assert (await pf.ok("GET", f"/projects/{pid}/api_keys/{kid}"))["last_used_at"] is None  # not yet flushed
    await pf.auth.flush_used()
    used = (await pf.ok("GET", f"/projects/{pid}/api_keys/{kid}"))["last_used_at"]
    assert isinstance(used, int) and used >= created["created_at"]

    # The admin key's own use is recorded the same way.
    await pf.auth.flush_used()
    admins = (await pf.ok("GET", "/admin_api_keys"))["data"]
    assert isinstance(admins[0]["last_used_at"], int)


async def test_unused_key_keeps_a_null_last_used_at(pf: Platform) -> None:
    pid = await pf.default_project()
    kid = (await pf.key(pid))["id"]
    await pf.c.post(CHAT, json=CHAT_BODY, headers=bearer("sk-proj-" + "z" * 64))  # a failed attempt
    await pf.auth.flush_used()
    assert (await pf.ok("GET", f"/projects/{pid}/api_keys/{kid}"))["last_used_at"] is None


# ------------------------------------------------------------------------------------- logs


async def test_logs_never_contain_key_material(
    fake_engine: FakeEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("hearth", "alembic", "httpx", "uvicorn"):
        caplog.set_level(logging.DEBUG, logger=name)
    # SQL echo too (SQLAlchemy's loggers default to WARNING): statements, never their parameters.
    # (sqlalchemy.engine at DEBUG dumps whole result rows by design; that is a deliberate data dump.)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    app = make_app(fake_engine, tmp_path, with_platform=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test") as c:
        pf = Platform(app, c, fake_engine)
        pid = await pf.default_project()
        project_key = await pf.key(pid)
        svc = await pf.ok("POST", f"/projects/{pid}/service_accounts", json={"name": "bot"})
        admin2 = await pf.ok("POST", "/admin_api_keys", json={"name": "second"})
        bad = "sk-proj-" + "q" * 64
        assert (await pf.chat(project_key["value"])).status_code == 200
        assert (await pf.chat(project_key["value"], stream=True)).status_code == 200
        assert (await pf.chat(bad)).status_code == 401
        assert (await pf.chat(pf.admin_key)).status_code == 403
        assert (await pf.admin("GET", "/projects", key=project_key["value"])).status_code == 403
        rotated = pf.store.rotate(project_key["id"], overlap_seconds=0)
        assert (await pf.chat(rotated)).status_code == 200
        await pf.ok("DELETE", f"/projects/{pid}/api_keys/{project_key['id']}")
        assert (await pf.chat(rotated)).status_code == 401
        await pf.auth.flush_used()

    secrets_ = [pf.admin_key, project_key["value"], svc["api_key"]["value"], admin2["value"], bad, rotated,
                API_KEY]
    server_secret = (tmp_path / "server-secret").read_bytes()
    hashes = [hash_secret(s, server_secret) for s in secrets_]
    assert caplog.records, "expected some log records"
    for rec in caplog.records:
        texts = [rec.getMessage(), caplog.handler.format(rec), repr(rec.args), rec.exc_text or ""]
        blob = "\n".join(texts)
        for s in secrets_:
            assert s not in blob, (rec.name, rec.getMessage()[:200])
            assert s[-12:] not in blob, (rec.name, rec.getMessage()[:200])  # not even a long tail
        for h in hashes:
            assert h not in blob, (rec.name, rec.getMessage()[:200])
        assert "Bearer " not in blob, (rec.name, rec.getMessage()[:200])
    assert not any(s in caplog.text for s in secrets_ + hashes)


async def test_database_errors_during_auth_do_not_log_hashes(
    pf: Platform, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = (await pf.key(await pf.default_project()))["value"]
    with sqlite3.connect(tmp_path / "hearth.db") as db:  # break the lookup: the SELECT by hash fails
        db.execute("ALTER TABLE api_keys RENAME TO api_keys_gone")
    caplog.set_level(logging.DEBUG)
    r = await pf.chat(secret)
    assert r.status_code == 500 and error_of(r)["type"] == "server_error"
    assert secret not in r.text
    digest = hash_secret(secret, (tmp_path / "server-secret").read_bytes())
    assert any(rec.levelno >= logging.ERROR for rec in caplog.records)  # the failure was logged...
    for rec in caplog.records:  # ...without the key or its hash
        blob = "\n".join([rec.getMessage(), caplog.handler.format(rec), rec.exc_text or ""])
        assert secret not in blob and digest not in blob, rec.name
    assert "api_keys" in caplog.text  # the traceback is there, so the check above looked at it
