"""Guardrails on answers (`[modules.guardrails]`, issue 16) as the official
SDKs see them: a streamed answer carrying a card number and an e-mail
address split over many small events (mock `x-mock-split-bytes`) reaches
the client redacted, and the SDKs' streaming helpers parse it — OpenAI's
`chat.completions.stream` (final message, content events) and Anthropic's
`messages.stream` (text stream, final message), text and tool-call
arguments; in block mode the stream ends with an error the SDKs raise.
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from conftest import (
    CHAT_MODEL,
    CLAUDE_MODEL,
    launch_tollgate,
    make_anthropic_client,
    make_openai_client,
)

CARD = "4111 1111 1111 1111"
EMAIL = "jane.roe@example.com"
REPLY = f"Your card {CARD} is on file; we mail {EMAIL} today."
REDACTED = "Your card [CARD_1] is on file; we mail [EMAIL_1] today."
MSGS = [{"role": "user", "content": "Read my details back."}]
SPLIT = {"x-mock-reply": REPLY, "x-mock-split-bytes": "6"}
TOOL = {
    "type": "function",
    "function": {
        "name": "save",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, mock_upstream):
    yield from launch_tollgate(
        tmp_path_factory,
        mock_upstream.base_url,
        "tollgate-guard-resp",
        extra="\n[modules.guardrails]\nenabled = true\n",
    )


@pytest.fixture(scope="module")
def blocking(tmp_path_factory, mock_upstream):
    yield from launch_tollgate(
        tmp_path_factory,
        mock_upstream.base_url,
        "tollgate-guard-block",
        extra='\n[modules.guardrails]\nenabled = true\nresponse_pii_action = "block"\n',
    )


def test_openai_stream_helper_parses_the_redacted_stream(guarded, client_key):
    with make_openai_client(guarded, client_key) as oai:
        with oai.chat.completions.stream(
            model=CHAT_MODEL, messages=MSGS, extra_headers=SPLIT
        ) as stream:
            deltas = [e.delta for e in stream if e.type == "content.delta"]
            final = stream.get_final_completion()
    assert "".join(deltas) == REDACTED
    assert final.choices[0].message.content == REDACTED
    assert final.choices[0].finish_reason == "stop"


def test_openai_stream_tool_arguments_are_redacted_and_stay_json(guarded, client_key):
    with make_openai_client(guarded, client_key) as oai:
        with oai.chat.completions.stream(
            model=CHAT_MODEL,
            messages=MSGS,
            tools=[TOOL],
            extra_headers={**SPLIT, "x-mock-tool-call": "save"},
        ) as stream:
            final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"text": REDACTED}


def test_anthropic_stream_helper_parses_the_redacted_stream(guarded, client_key):
    with make_anthropic_client(guarded, client_key) as claude:
        with claude.messages.stream(
            model=CLAUDE_MODEL, max_tokens=64, messages=MSGS, extra_headers=SPLIT
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    assert text == REDACTED
    assert final.content[0].text == REDACTED
    assert final.stop_reason == "end_turn"


def test_anthropic_stream_tool_input_is_redacted_and_parses(guarded, client_key):
    with make_anthropic_client(guarded, client_key) as claude:
        with claude.messages.stream(
            model=CLAUDE_MODEL,
            max_tokens=64,
            messages=MSGS,
            extra_headers={**SPLIT, "x-mock-tool-call": "save"},
        ) as stream:
            final = stream.get_final_message()
    tool = [b for b in final.content if b.type == "tool_use"][0]
    assert tool.input == {"text": REDACTED}


def test_block_mode_ends_the_stream_with_an_error_the_sdks_raise(blocking, client_key):
    with make_openai_client(blocking, client_key) as oai:
        with pytest.raises(openai.APIError) as raised:
            with oai.chat.completions.stream(
                model=CHAT_MODEL, messages=MSGS, extra_headers=SPLIT
            ) as stream:
                for _ in stream:
                    pass
        assert CARD not in str(raised.value)
    with make_anthropic_client(blocking, client_key) as claude:
        with pytest.raises(anthropic.APIStatusError) as raised:
            with claude.messages.stream(
                model=CLAUDE_MODEL, max_tokens=64, messages=MSGS, extra_headers=SPLIT
            ) as stream:
                for _ in stream:
                    pass
        assert CARD not in str(raised.value)
