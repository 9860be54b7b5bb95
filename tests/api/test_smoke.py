from __future__ import annotations

import httpx


async def test_chat_completion_basic(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json={
        "model": "fake-model", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-") and len(body["id"]) == len("chatcmpl-") + 22
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    assert r.headers["x-request-id"].startswith("req_")
    assert "openai-processing-ms" in r.headers
