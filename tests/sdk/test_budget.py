"""A key budget under 64 concurrent requests, through the official OpenAI SDK.

Each request reserves its worst case and costs exactly that (input is priced
at 0 and the mock reports completion = max_tokens), so the number a budget
admits does not depend on timing: a budget of 15.5 requests admits exactly
15. Concurrent requests cannot overspend together (reserve-then-settle under
one lock), the refused ones get 402 `budget_exceeded`, which the SDK does not
retry, and the costs table shows no overspend.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import urllib.request

import openai
import pytest

from conftest import ADMIN_KEY, CHAT_MODEL, REQUEST_TIMEOUT_S, launch_tollgate

CONCURRENT = 64
MAX_TOKENS = 100
# 10 USD per million output tokens = 1,000 micro-cents per token.
UC_PER_OUTPUT_TOKEN = 1_000
PER_REQUEST_UC = MAX_TOKENS * UC_PER_OUTPUT_TOKEN  # reserved == actual
BUDGET_UC = 15 * PER_REQUEST_UC + PER_REQUEST_UC // 2
EXPECTED_ADMITTED = BUDGET_UC // PER_REQUEST_UC  # 15

PRICES = f"""
[prices."openai/{CHAT_MODEL}"]
input = "0"
output = "10"
"""


@pytest.fixture(scope="module")
def budget_tollgate(tmp_path_factory, mock_upstream):
    yield from launch_tollgate(
        tmp_path_factory, mock_upstream.base_url, "tollgate-budget", extra=PRICES
    )


def create_key(tollgate, body: dict) -> dict:
    req = urllib.request.Request(
        f"{tollgate.base_url}/admin/v1/keys",
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
        assert resp.status == 201
        return json.load(resp)


def test_64_concurrent_requests_never_overspend_a_budget_that_fits_15(budget_tollgate):
    budget_usd = f"{BUDGET_UC // 100_000_000}.{BUDGET_UC % 100_000_000:08d}"
    key = create_key(budget_tollgate, {"name": "budgeted", "budget_usd": budget_usd})
    attempts: list[int] = []

    async def run() -> list:
        client = openai.AsyncOpenAI(
            base_url=f"{budget_tollgate.base_url}/v1",
            api_key=key["key"],
            timeout=REQUEST_TIMEOUT_S,
            # The SDK's default retries stay on: a 402 must not be retried.
            http_client=openai.DefaultAsyncHttpxClient(
                event_hooks={"response": [record_attempt]}
            ),
        )

        async def one():
            return await client.chat.completions.create(
                model=CHAT_MODEL,
                messages=[{"role": "user", "content": "Say hello."}],
                max_tokens=MAX_TOKENS,
                # Held upstream a little so that all 64 are in flight together.
                extra_headers={
                    "x-mock-usage": f"prompt=9,completion={MAX_TOKENS}",
                    "x-mock-first-byte-delay-ms": "300",
                },
            )

        async with client:
            return await asyncio.gather(*(one() for _ in range(CONCURRENT)), return_exceptions=True)

    async def record_attempt(response) -> None:
        attempts.append(response.status_code)

    results = asyncio.run(run())

    admitted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    for error in refused:
        assert isinstance(error, openai.APIStatusError), repr(error)
        assert error.status_code == 402, repr(error)
        assert error.code == "budget_exceeded", repr(error)
    assert len(admitted) == EXPECTED_ADMITTED
    assert len(refused) == CONCURRENT - EXPECTED_ADMITTED
    # One HTTP attempt per request: nothing was retried.
    assert len(attempts) == CONCURRENT, attempts
    assert sorted(attempts) == sorted([200] * EXPECTED_ADMITTED + [402] * len(refused))

    budget_tollgate.stop()  # every record committed
    con = sqlite3.connect(f"file:{budget_tollgate.db_path}?mode=ro", uri=True)
    try:
        traces, refusals = con.execute(
            "SELECT count(*), sum(error_kind = 'budget_exceeded') FROM traces"
            " WHERE client_key_id = ?",
            (key["id"],),
        ).fetchone()
        spent, priced = con.execute(
            "SELECT sum(cost_uc), count(cost_uc) FROM costs"
            " WHERE client_key_id = ? AND cost_uc > 0",
            (key["id"],),
        ).fetchone()
    finally:
        con.close()
    assert traces == CONCURRENT
    assert refusals == CONCURRENT - EXPECTED_ADMITTED
    assert priced == EXPECTED_ADMITTED
    # Actual == reserved for every request, so the bound "budget + the
    # largest (actual - reserved)" is the budget itself: no overspend.
    assert spent == EXPECTED_ADMITTED * PER_REQUEST_UC
    assert spent <= BUDGET_UC
    # And none was refused while it would have fit.
    assert BUDGET_UC - spent < PER_REQUEST_UC
