"""The exact cache (`[modules.cache]`, issue 10) as the official SDKs see it,
both protocols: a repeated request is a hit — the upstream is not called
again, the content is the same and the response says `x-tollgate-cache: hit`
(read through `with_raw_response`) — and a changed parameter or system
prompt misses. A stream request is served from a non-stream answer (replayed
as a stream the SDKs parse) and a non-stream request from a streamed answer.

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


def test_openai_stream_and_non_stream_serve_each_other(cached_tollgate, client_key, mock_upstream):
    msgs = [{"role": "user", "content": "Stream me a cached answer."}]
    with make_openai_client(cached_tollgate, client_key) as oai:
        before = mock_requests(mock_upstream)
        stored = oai.chat.completions.create(model=CHAT_MODEL, messages=msgs, seed=7)
        assert mock_requests(mock_upstream) == before + 1
        # Replayed: the SDK's stream helper parses it into the same message.
        with oai.chat.completions.stream(
            model=CHAT_MODEL, messages=msgs, seed=7, stream_options={"include_usage": True}
        ) as stream:
            final = stream.get_final_completion()
        assert final.choices[0].message.content == stored.choices[0].message.content
        assert final.choices[0].finish_reason == stored.choices[0].finish_reason
        assert final.usage.completion_tokens == stored.usage.completion_tokens
        raw = oai.chat.completions.with_raw_response.create(
            model=CHAT_MODEL, messages=msgs, seed=7, stream=True
        )
        assert raw.headers["x-tollgate-cache"] == "hit"
        chunks = list(raw.parse())
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
            stored.choices[0].message.content
        )
        assert all(c.usage is None for c in chunks), "no usage chunk unless asked"
        assert mock_requests(mock_upstream) == before + 1, "both stream requests were hits"

        # The other way round: a streamed answer serves a non-stream request.
        other = [{"role": "user", "content": "Stream first, then ask plainly."}]
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in oai.chat.completions.create(model=CHAT_MODEL, messages=other, stream=True)
            if c.choices
        )
        plain = oai.chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=other)
        assert plain.headers["x-tollgate-cache"] == "hit"
        assert plain.parse().choices[0].message.content == streamed
        assert mock_requests(mock_upstream) == before + 2


def test_anthropic_stream_and_non_stream_serve_each_other(cached_tollgate, client_key, mock_upstream):
    msgs = [{"role": "user", "content": "A cached answer, streamed."}]
    with make_anthropic_client(cached_tollgate, client_key) as ant:
        before = mock_requests(mock_upstream)
        stored = ant.messages.create(model=CLAUDE_MODEL, max_tokens=48, messages=msgs)
        with ant.messages.stream(model=CLAUDE_MODEL, max_tokens=48, messages=msgs) as stream:
            final = stream.get_final_message()
        assert final.content[0].text == stored.content[0].text
        assert final.stop_reason == stored.stop_reason
        assert final.usage.output_tokens == stored.usage.output_tokens
        assert mock_requests(mock_upstream) == before + 1, "the stream was a hit"

        other = [{"role": "user", "content": "Streamed first, then plain."}]
        with ant.messages.stream(model=CLAUDE_MODEL, max_tokens=48, messages=other) as stream:
            streamed = stream.get_final_message()
        plain = ant.messages.with_raw_response.create(model=CLAUDE_MODEL, max_tokens=48, messages=other)
        assert plain.headers["x-tollgate-cache"] == "hit"
        assert plain.parse().content[0].text == streamed.content[0].text
        assert mock_requests(mock_upstream) == before + 2
