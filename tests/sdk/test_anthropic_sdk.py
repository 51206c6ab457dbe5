"""The official `anthropic` Python SDK, pointed at tollgate, against mock-upstream."""

from __future__ import annotations

import anthropic
import pytest

from conftest import CLAUDE_MODEL, CLIENT_KEY, MOCK_TEXT

MESSAGES = [{"role": "user", "content": "Say hello."}]
MAX_TOKENS = 256


def _text(message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def test_messages_create(anthropic_client):
    msg = anthropic_client.messages.create(
        model=CLAUDE_MODEL,
        max_tokens=MAX_TOKENS,
        messages=MESSAGES,
        extra_headers={"x-mock-usage": "prompt=12,completion=5"},
    )

    assert msg.type == "message"
    assert msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"]
    assert _text(msg) == MOCK_TEXT
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 12
    assert msg.usage.output_tokens == 5


def test_client_key_is_not_what_upstream_accepts(mock_upstream, anthropic_client):
    direct = anthropic.Anthropic(
        base_url=mock_upstream.base_url,
        api_key=CLIENT_KEY,
        default_headers={"x-api-key": CLIENT_KEY},
        max_retries=0,
        timeout=30,
    )
    with direct, pytest.raises(anthropic.AuthenticationError) as err:
        direct.messages.create(model=CLAUDE_MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES)
    assert err.value.status_code == 401

    msg = anthropic_client.messages.create(
        model=CLAUDE_MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES
    )
    assert _text(msg) == MOCK_TEXT


def test_messages_stream(anthropic_client):
    with anthropic_client.messages.stream(
        model=CLAUDE_MODEL,
        max_tokens=MAX_TOKENS,
        messages=MESSAGES,
        extra_headers={"x-mock-usage": "prompt=7,completion=3"},
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(pieces) > 1, "expected the reply to arrive in several deltas"
    assert "".join(pieces) == MOCK_TEXT
    assert _text(final) == MOCK_TEXT
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3
    assert final.usage.input_tokens == 7


def test_messages_stream_many_words(anthropic_client):
    with anthropic_client.messages.stream(
        model=CLAUDE_MODEL,
        max_tokens=MAX_TOKENS,
        messages=MESSAGES,
        extra_headers={"x-mock-words": "40"},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert len(text.split()) == 40
    assert _text(final) == text


def test_unknown_model_is_404(anthropic_client):
    with pytest.raises(anthropic.NotFoundError) as err:
        anthropic_client.messages.create(
            model="claude-no-such-model", max_tokens=MAX_TOKENS, messages=MESSAGES
        )
    assert err.value.status_code == 404
    body = err.value.response.json()
    assert body.get("type") == "error", f"not an Anthropic-shaped error: {body!r}"
    assert body["error"]["type"] == "not_found_error"
    assert isinstance(body["error"].get("message"), str) and body["error"]["message"]


def test_upstream_429_passes_through(anthropic_client, mock_anthropic):
    headers = {"x-mock-status": "429"}
    with pytest.raises(anthropic.RateLimitError) as via:
        anthropic_client.messages.create(
            model=CLAUDE_MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES, extra_headers=headers
        )
    with pytest.raises(anthropic.RateLimitError) as direct:
        mock_anthropic.messages.create(
            model=CLAUDE_MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES, extra_headers=headers
        )
    assert via.value.status_code == 429
    got, want = via.value.response.json(), direct.value.response.json()
    # request_id differs per upstream request; everything else is passed on as is.
    got.pop("request_id", None)
    want.pop("request_id", None)
    assert got == want
    assert got["error"]["type"] == "rate_limit_error"
    assert via.value.response.headers.get("retry-after") == "1"


def test_upstream_429_passes_through_when_streaming(anthropic_client):
    with pytest.raises(anthropic.RateLimitError) as err:
        with anthropic_client.messages.stream(
            model=CLAUDE_MODEL,
            max_tokens=MAX_TOKENS,
            messages=MESSAGES,
            extra_headers={"x-mock-status": "429"},
        ) as stream:
            stream.get_final_message()
    assert err.value.status_code == 429
