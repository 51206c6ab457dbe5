"""What tollgate sends upstream: the provider key, never the client's key.

mock-upstream rejects a wrong x-api-key / bearer token, but it does not look at
headers it does not use (the anthropic SDK, for one, sends its key as
`Authorization: Bearer`, which the Anthropic route ignores). So this module
puts a recording relay between its own tollgate instance and the mock and
checks every header and body that went upstream.
"""

from __future__ import annotations

import pytest

from conftest import (
    CHAT_MODEL,
    CLAUDE_MODEL,
    CLIENT_KEY,
    EMBED_MODEL,
    MOCK_TEXT,
    UPSTREAM_KEY,
    UpstreamRelay,
    launch_tollgate,
    make_anthropic_client,
    make_openai_client,
)

MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def relay(mock_upstream):
    r = UpstreamRelay(mock_upstream.base_url)
    yield r
    r.close()


@pytest.fixture(scope="module")
def relayed_tollgate(tmp_path_factory, relay):
    yield from launch_tollgate(tmp_path_factory, relay.base_url, "tollgate-relayed")


def test_client_key_never_reaches_upstream(relayed_tollgate, relay, client_key):
    assert client_key == CLIENT_KEY
    oai = make_openai_client(relayed_tollgate, client_key)
    ant = make_anthropic_client(relayed_tollgate, client_key)
    with oai, ant:
        r = oai.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
        assert r.choices[0].message.content == MOCK_TEXT
        with oai.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, stream=True) as s:
            assert "".join(c.choices[0].delta.content or "" for c in s if c.choices) == MOCK_TEXT
        e = oai.embeddings.create(model=EMBED_MODEL, input="x")
        assert len(e.data[0].embedding) > 0
        m = ant.messages.create(model=CLAUDE_MODEL, max_tokens=64, messages=MESSAGES)
        assert m.content[0].text == MOCK_TEXT
        with ant.messages.stream(model=CLAUDE_MODEL, max_tokens=64, messages=MESSAGES) as s:
            assert "".join(s.text_stream) == MOCK_TEXT

    posts = [r for r in relay.seen if r.method == "POST"]
    assert sorted(r.path for r in posts) == [
        "/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/messages",
        "/v1/messages",
    ], [(r.method, r.path) for r in relay.seen]

    for req in relay.seen:
        for name, value in req.headers:
            assert client_key not in value, (
                f"client key forwarded upstream in header {name!r} of {req.method} {req.path}"
            )
        assert client_key.encode() not in req.body, f"client key in body of {req.path}"

        if req.path.startswith("/v1/messages"):
            assert req.header("x-api-key") == [UPSTREAM_KEY], req.headers
            assert req.header("anthropic-version"), "anthropic-version not forwarded"
        else:
            assert req.header("authorization") == [f"Bearer {UPSTREAM_KEY}"], req.headers
