"""The official `openai` Python SDK, pointed at tollgate, against mock-upstream."""

from __future__ import annotations

import base64
import struct

import openai
import pytest

from conftest import ALIAS, CHAT_MODEL, CLIENT_KEY, EMBED_MODEL, MOCK_EMBED_DIM, MOCK_TEXT

MESSAGES = [{"role": "user", "content": "Say hello."}]


def _collect(stream) -> list:
    with stream:
        return list(stream)


def _text_of(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_chat_non_stream(openai_client):
    resp = openai_client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)

    assert resp.object == "chat.completion"
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == MOCK_TEXT
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert isinstance(resp.usage.prompt_tokens, int) and resp.usage.prompt_tokens > 0
    assert isinstance(resp.usage.completion_tokens, int) and resp.usage.completion_tokens > 0


def test_chat_usage_override_passes_through(openai_client):
    resp = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        messages=MESSAGES,
        extra_headers={"x-mock-usage": "prompt=12,completion=5", "x-mock-words": "3"},
    )
    assert len(resp.choices[0].message.content.split()) == 3
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (12, 5)
    assert resp.usage.total_tokens == 17


def test_client_key_is_not_what_upstream_accepts(mock_upstream, openai_client):
    """Premise of every passing test here: upstream rejects the client's key, so a
    success through tollgate means tollgate swapped in the provider key."""
    direct = openai.OpenAI(
        base_url=f"{mock_upstream.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30
    )
    with direct, pytest.raises(openai.AuthenticationError) as err:
        direct.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    assert err.value.status_code == 401

    resp = openai_client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    assert resp.choices[0].message.content == MOCK_TEXT


def test_alias_resolves_and_reports_upstream_model(openai_client, mock_openai):
    via_alias = openai_client.chat.completions.create(model=ALIAS, messages=MESSAGES)
    upstream = mock_openai.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)

    assert via_alias.choices[0].message.content == MOCK_TEXT
    # The model field is whatever the upstream reported for the resolved model,
    # not the alias the client asked for.
    assert via_alias.model == upstream.model
    assert via_alias.model != ALIAS


def test_chat_stream_without_usage(openai_client):
    chunks = _collect(
        openai_client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, stream=True)
    )

    assert len(chunks) > 1, "expected the reply to arrive in several chunks"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert _text_of(chunks) == MOCK_TEXT
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    # tollgate may ask upstream for usage to keep its books, but the client did not
    # ask for it and must not see the usage chunk.
    assert [c for c in chunks if c.usage is not None] == []
    assert all(c.choices for c in chunks), "a chunk with empty choices leaked through"


def test_chat_stream_many_words(openai_client):
    chunks = _collect(
        openai_client.chat.completions.create(
            model=CHAT_MODEL,
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-mock-words": "40"},
        )
    )
    assert len(_text_of(chunks).split()) == 40
    assert [c for c in chunks if c.usage is not None] == []


def test_chat_stream_with_include_usage(openai_client):
    chunks = _collect(
        openai_client.chat.completions.create(
            model=CHAT_MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-mock-usage": "prompt=12,completion=5"},
        )
    )

    assert _text_of(chunks) == MOCK_TEXT
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (12, 5)
    assert last.usage.total_tokens == 17
    assert [c for c in chunks[:-1] if c.usage is not None] == []


def test_embeddings_default_base64(openai_client, mock_openai):
    raw = openai_client.embeddings.with_raw_response.create(
        model=EMBED_MODEL, input=["first text", "second text"]
    )
    wire = raw.http_response.json()
    # The SDK asks for base64 by default; tollgate must hand back what was asked for.
    assert all(isinstance(item["embedding"], str) for item in wire["data"])

    resp = raw.parse()
    upstream = mock_openai.embeddings.create(
        model=EMBED_MODEL, input=["first text", "second text"], encoding_format="float"
    )
    assert [d.index for d in resp.data] == [0, 1]
    for item, want in zip(resp.data, upstream.data):
        assert len(item.embedding) == MOCK_EMBED_DIM
        assert all(isinstance(x, float) for x in item.embedding)
        # mock components are multiples of 1/1024: exact in f32, so equality is fair
        assert item.embedding == want.embedding
    assert resp.data[0].embedding != resp.data[1].embedding
    assert resp.usage.prompt_tokens > 0


def test_embeddings_float(openai_client, mock_openai):
    resp = openai_client.embeddings.create(
        model=EMBED_MODEL, input="first text", encoding_format="float"
    )
    upstream = mock_openai.embeddings.create(
        model=EMBED_MODEL, input="first text", encoding_format="float"
    )
    assert len(resp.data) == 1
    vector = resp.data[0].embedding
    assert len(vector) == MOCK_EMBED_DIM
    assert all(isinstance(x, float) for x in vector)
    assert vector == upstream.data[0].embedding


def test_embeddings_dimensions_are_forwarded(openai_client):
    flt = openai_client.embeddings.create(
        model=EMBED_MODEL, input="first text", dimensions=24, encoding_format="float"
    )
    assert len(flt.data[0].embedding) == 24
    # Asked for explicitly, base64 comes back undecoded: 24 little-endian f32s.
    b64 = openai_client.embeddings.create(
        model=EMBED_MODEL, input="first text", dimensions=24, encoding_format="base64"
    )
    raw = base64.b64decode(b64.data[0].embedding)
    assert len(raw) == 24 * 4
    assert list(struct.unpack("<24f", raw)) == flt.data[0].embedding


def test_embeddings_base64_and_float_agree(openai_client):
    b64 = openai_client.embeddings.create(model=EMBED_MODEL, input="same input")
    flt = openai_client.embeddings.create(
        model=EMBED_MODEL, input="same input", encoding_format="float"
    )
    a, b = b64.data[0].embedding, flt.data[0].embedding
    assert len(a) == len(b)
    assert a == pytest.approx(b, rel=1e-6, abs=1e-6)


def test_models_list(openai_client):
    ids = [m.id for m in openai_client.models.list()]
    assert CHAT_MODEL in ids
    assert ALIAS in ids


def test_unknown_model_is_404(openai_client):
    with pytest.raises(openai.NotFoundError) as err:
        openai_client.chat.completions.create(model="no-such-model-xyz", messages=MESSAGES)
    assert err.value.status_code == 404
    body = err.value.response.json()
    assert isinstance(body.get("error"), dict), f"not an OpenAI-shaped error: {body!r}"
    assert isinstance(body["error"].get("message"), str) and body["error"]["message"]


def test_unknown_model_is_404_when_streaming(openai_client):
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(
            model="no-such-model-xyz", messages=MESSAGES, stream=True
        )


def test_upstream_429_passes_through(openai_client, mock_openai):
    headers = {"x-mock-status": "429"}
    with pytest.raises(openai.RateLimitError) as via:
        openai_client.chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, extra_headers=headers
        )
    with pytest.raises(openai.RateLimitError) as direct:
        mock_openai.chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, extra_headers=headers
        )
    assert via.value.status_code == 429
    assert via.value.response.json() == direct.value.response.json()
    assert via.value.response.json()["error"]["type"] == "rate_limit_error"
    assert via.value.response.headers.get("retry-after") == "1"


def test_upstream_429_passes_through_when_streaming(openai_client):
    with pytest.raises(openai.RateLimitError) as err:
        openai_client.chat.completions.create(
            model=CHAT_MODEL,
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-mock-status": "429"},
        )
    assert err.value.status_code == 429


def test_request_id_header(openai_client):
    ids = []
    for _ in range(2):
        raw = openai_client.chat.completions.with_raw_response.create(
            model=CHAT_MODEL, messages=MESSAGES
        )
        assert raw.status_code == 200
        assert raw.parse().choices[0].message.content == MOCK_TEXT
        rid = raw.headers.get("x-tollgate-request-id")
        assert rid, f"no x-tollgate-request-id in {dict(raw.headers)!r}"
        ids.append(rid)
    assert ids[0] != ids[1]
