"""Rate limits as the official SDKs see them: a 429 from tollgate raises the
SDK's RateLimitError, and an SDK with its default retries waits out
`Retry-After` and succeeds.

Uses its own tollgate with `max_parallel = 1` (Retry-After: 1 s), so the
test is fast and does not limit the other modules' instance.
"""

from __future__ import annotations

import threading
import time

import anthropic
import openai
import pytest

from conftest import (
    CHAT_MODEL,
    CLAUDE_MODEL,
    MOCK_TEXT,
    REQUEST_TIMEOUT_S,
    launch_tollgate,
    make_anthropic_client,
    make_openai_client,
)

MSGS = [{"role": "user", "content": "Say hello."}]
SLOW = {"x-mock-chunk-delay-ms": "150", "x-mock-words": "2"}


@pytest.fixture(scope="module")
def limited_tollgate(tmp_path_factory, mock_upstream):
    yield from launch_tollgate(
        tmp_path_factory,
        mock_upstream.base_url,
        "tollgate-rate-limited",
        extra="\n[modules.rate_limit]\nmax_parallel = 1\n",
    )


def test_rate_limit_error_and_retry_after(limited_tollgate, client_key):
    oai = make_openai_client(limited_tollgate, client_key)
    ant = make_anthropic_client(limited_tollgate, client_key)
    statuses: list[int] = []
    retrying = openai.OpenAI(
        base_url=f"{limited_tollgate.base_url}/v1",
        api_key=client_key,
        timeout=REQUEST_TIMEOUT_S,
        # The SDK's own HTTP client class (whatever httpx package it uses),
        # with a hook that sees every attempt, retries included.
        http_client=openai.DefaultHttpxClient(
            event_hooks={"response": [lambda r: statuses.append(r.status_code)]}
        ),
    )
    with oai, ant, retrying:
        # Holds the key's one place in flight while it streams (~1 s).
        held = oai.chat.completions.create(
            model=CHAT_MODEL, messages=MSGS, stream=True, extra_headers=SLOW
        )
        try:
            with pytest.raises(openai.RateLimitError) as refused:
                oai.chat.completions.create(model=CHAT_MODEL, messages=MSGS)
            assert refused.value.status_code == 429
            assert refused.value.code == "rate_limit_exceeded"
            assert refused.value.response.headers["retry-after"] == "1"

            with pytest.raises(anthropic.RateLimitError) as refused:
                ant.messages.create(model=CLAUDE_MODEL, max_tokens=16, messages=MSGS)
            assert refused.value.response.headers["retry-after"] == "1"

            # The place frees while the retrying client waits out Retry-After.
            def drain():
                time.sleep(0.3)
                for _ in held:
                    pass

            reader = threading.Thread(target=drain)
            reader.start()
            started = time.monotonic()
            resp = retrying.chat.completions.create(model=CHAT_MODEL, messages=MSGS)
            reader.join(timeout=10)
        finally:
            held.close()
    assert resp.choices[0].message.content == MOCK_TEXT
    assert statuses[0] == 429 and statuses[-1] == 200, statuses
    assert time.monotonic() - started >= 0.9, "the SDK waited out Retry-After"
