"""The exact cache (`[modules.cache]`, issue 10) as the official SDKs see it,
non-stream, both protocols: a repeated request is a hit — the upstream is
not called again, the content is the same and the response says
`x-tollgate-cache: hit` (read through `with_raw_response`) — and a changed
parameter or system prompt misses.

Uses its own tollgate with the cache on; upstream request counts come from
the mock's `GET /__mock/stats` control route.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from conftest import (
    CHAT_MODEL,
    CLAUDE_MODEL,
    MOCK_TEXT,
    launch_tollgate,
    make_anthropic_client,
    make_openai_client,
)

MSGS = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def cached_tollgate(tmp_path_factory, mock_upstream):
    yield from launch_tollgate(
        tmp_path_factory,
        mock_upstream.base_url,
        "tollgate-cache",
        extra="\n[modules.cache]\nenabled = true\n",
    )


def mock_requests(mock) -> int:
    url = urlsplit(mock.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", "/__mock/stats")
        resp = conn.getresponse()
        assert resp.status == 200
        return json.loads(resp.read())["requests"]
    finally:
        conn.close()


def test_openai_repeat_is_a_hit_and_a_changed_parameter_misses(
    cached_tollgate, client_key, mock_upstream
):
    with make_openai_client(cached_tollgate, client_key) as oai:
        ask = oai.chat.completions.with_raw_response.create
        before = mock_requests(mock_upstream)
        first = ask(model=CHAT_MODEL, messages=MSGS, temperature=0.2)
        assert first.headers["x-tollgate-cache"] == "miss"
        assert mock_requests(mock_upstream) == before + 1
        again = ask(model=CHAT_MODEL, messages=MSGS, temperature=0.2)
        assert again.headers["x-tollgate-cache"] == "hit"
        assert mock_requests(mock_upstream) == before + 1, "a hit never reaches the upstream"
        a, b = first.parse(), again.parse()
        assert b.choices[0].message.content == a.choices[0].message.content
        assert MOCK_TEXT in b.choices[0].message.content
        assert b.id == a.id
        assert b.usage == a.usage

        changed = ask(model=CHAT_MODEL, messages=MSGS, temperature=0.9)
        assert changed.headers["x-tollgate-cache"] == "miss"
        assert mock_requests(mock_upstream) == before + 2

        skipped = ask(
            model=CHAT_MODEL,
            messages=MSGS,
            temperature=0.2,
            extra_headers={"x-tollgate-cache": "skip"},
        )
        assert skipped.headers["x-tollgate-cache"] == "skip"
        assert mock_requests(mock_upstream) == before + 3


def test_anthropic_repeat_is_a_hit_and_another_system_prompt_misses(
    cached_tollgate, client_key, mock_upstream
):
    with make_anthropic_client(cached_tollgate, client_key) as ant:
        ask = ant.messages.with_raw_response.create
        before = mock_requests(mock_upstream)
        first = ask(model=CLAUDE_MODEL, max_tokens=32, system="Be brief.", messages=MSGS)
        assert first.headers["x-tollgate-cache"] == "miss"
        again = ask(model=CLAUDE_MODEL, max_tokens=32, system="Be brief.", messages=MSGS)
        assert again.headers["x-tollgate-cache"] == "hit"
        assert mock_requests(mock_upstream) == before + 1, "a hit never reaches the upstream"
        a, b = first.parse(), again.parse()
        assert b.content[0].text == a.content[0].text
        assert MOCK_TEXT in b.content[0].text
        assert b.id == a.id

        other = ask(model=CLAUDE_MODEL, max_tokens=32, system="Be verbose.", messages=MSGS)
        assert other.headers["x-tollgate-cache"] == "miss"
        more = ask(model=CLAUDE_MODEL, max_tokens=64, system="Be brief.", messages=MSGS)
        assert more.headers["x-tollgate-cache"] == "miss"
        assert mock_requests(mock_upstream) == before + 3
