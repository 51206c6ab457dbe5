"""Every proxied request leaves exactly one row in the `traces` table.

Uses its own tollgate instance (fresh store) so that the row count does not
depend on what the other modules did.
"""

from __future__ import annotations

import sqlite3
from collections import Counter

import anthropic
import openai
import pytest

from conftest import (
    ALIAS,
    CHAT_MODEL,
    CLAUDE_MODEL,
    EMBED_MODEL,
    MOCK_TEXT,
    launch_tollgate,
    make_anthropic_client,
    make_openai_client,
)

CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"
MESSAGES_EP = "/v1/messages"
OPENAI_MSGS = [{"role": "user", "content": "Say hello."}]


def usage(prompt: int, completion: int) -> dict[str, str]:
    return {"x-mock-usage": f"prompt={prompt},completion={completion}"}


@pytest.fixture(scope="module")
def books_tollgate(tmp_path_factory, mock_upstream):
    yield from launch_tollgate(tmp_path_factory, mock_upstream.base_url, "tollgate-traces")


def test_one_trace_row_per_proxied_request(books_tollgate, client_key):
    oai = make_openai_client(books_tollgate, client_key)
    ant = make_anthropic_client(books_tollgate, client_key)

    # key: (endpoint, model_requested, stream, status) -> expected (input, output) tokens,
    # or None for a failed request. Every key is distinct so rows can be matched up.
    expected: dict[tuple[str, str, int, int], tuple[int, int | None] | None] = {}

    with oai, ant:
        r = oai.chat.completions.create(
            model=CHAT_MODEL, messages=OPENAI_MSGS, extra_headers=usage(11, 21)
        )
        assert r.choices[0].message.content == MOCK_TEXT
        expected[(CHAT, CHAT_MODEL, 0, 200)] = (11, 21)

        # Streaming without include_usage: tollgate still has to learn the usage.
        with oai.chat.completions.create(
            model=ALIAS, messages=OPENAI_MSGS, stream=True, extra_headers=usage(12, 22)
        ) as s:
            text = "".join(c.choices[0].delta.content or "" for c in s if c.choices)
        assert text == MOCK_TEXT
        expected[(CHAT, ALIAS, 1, 200)] = (12, 22)

        with oai.chat.completions.create(
            model=CHAT_MODEL,
            messages=OPENAI_MSGS,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=usage(13, 23),
        ) as s:
            chunks = list(s)
        assert chunks[-1].usage.prompt_tokens == 13
        expected[(CHAT, CHAT_MODEL, 1, 200)] = (13, 23)

        e = oai.embeddings.create(model=EMBED_MODEL, input="embed me", extra_headers=usage(14, 0))
        assert len(e.data) == 1 and len(e.data[0].embedding) > 0
        expected[(EMBED, EMBED_MODEL, 0, 200)] = (14, None)

        with pytest.raises(openai.RateLimitError):
            oai.chat.completions.create(
                model=CHAT_MODEL,
                messages=OPENAI_MSGS,
                extra_headers={"x-mock-status": "429"},
            )
        expected[(CHAT, CHAT_MODEL, 0, 429)] = None

        m = ant.messages.create(
            model=CLAUDE_MODEL, max_tokens=64, messages=OPENAI_MSGS, extra_headers=usage(15, 25)
        )
        assert m.content[0].text == MOCK_TEXT
        expected[(MESSAGES_EP, CLAUDE_MODEL, 0, 200)] = (15, 25)

        with ant.messages.stream(
            model=CLAUDE_MODEL, max_tokens=64, messages=OPENAI_MSGS, extra_headers=usage(16, 26)
        ) as s:
            assert "".join(s.text_stream) == MOCK_TEXT
        expected[(MESSAGES_EP, CLAUDE_MODEL, 1, 200)] = (16, 26)

        with pytest.raises(anthropic.RateLimitError):
            ant.messages.create(
                model=CLAUDE_MODEL,
                max_tokens=64,
                messages=OPENAI_MSGS,
                extra_headers={"x-mock-status": "429"},
            )
        expected[(MESSAGES_EP, CLAUDE_MODEL, 0, 429)] = None

    k = len(expected)
    assert k == 8

    # Drain: after a clean SIGTERM exit every trace must be on disk.
    books_tollgate.stop()

    assert books_tollgate.db_path.is_file(), f"no store at {books_tollgate.db_path}"
    con = sqlite3.connect(f"file:{books_tollgate.db_path}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        rows = con.execute(
            "SELECT endpoint, model_requested, model_resolved, stream, status,"
            " input_tokens, output_tokens FROM traces"
        ).fetchall()
    finally:
        con.close()
    rows = [dict(r) for r in rows]

    assert len(rows) == k, f"expected {k} trace rows, got {len(rows)}: {rows!r}"

    by_key = {(r["endpoint"], r["model_requested"], r["stream"], r["status"]): r for r in rows}
    assert len(by_key) == len(rows) and set(by_key) == set(expected), (
        f"trace rows do not match the requests made\nexpected keys: {sorted(expected)!r}\n"
        f"rows: {rows!r}"
    )
    assert Counter(r["endpoint"] for r in rows) == Counter({CHAT: 4, EMBED: 1, MESSAGES_EP: 3})
    assert sorted(r["stream"] for r in rows) == [0, 0, 0, 0, 0, 1, 1, 1]

    for key, tokens in expected.items():
        row = by_key[key]
        assert row["model_resolved"], f"model_resolved empty: {row!r}"
        if tokens is None:
            continue
        want_in, want_out = tokens
        assert row["input_tokens"] == want_in, f"input_tokens for {key}: {row!r}"
        if want_out is None:
            # Embeddings have no completion: record 0 or NULL, but nothing else.
            assert row["output_tokens"] in (0, None), f"output_tokens for {key}: {row!r}"
        else:
            assert row["output_tokens"] == want_out, f"output_tokens for {key}: {row!r}"

    assert by_key[(CHAT, ALIAS, 1, 200)]["model_resolved"].endswith(CHAT_MODEL)
    assert by_key[(CHAT, CHAT_MODEL, 0, 200)]["model_resolved"].endswith(CHAT_MODEL)
    assert by_key[(MESSAGES_EP, CLAUDE_MODEL, 0, 200)]["model_resolved"].endswith(CLAUDE_MODEL)
