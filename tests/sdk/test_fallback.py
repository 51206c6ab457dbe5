"""Fallback as the official OpenAI SDK sees it: an alias whose first target's
upstream fails every request (a second mock-upstream started with
`--fail-status 500`) is answered by its second target, streaming or not,
with no error reaching the SDK; the trace (read with sqlite3) names the
target that answered and records the failed attempts.

Uses its own tollgate, so the failing provider does not touch the shared one.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import time
from urllib.parse import urlsplit

import pytest

from conftest import (
    ADMIN_KEY,
    CHAT_MODEL,
    MOCK_TEXT,
    UPSTREAM_KEY,
    Proc,
    _binary,
    _child_env,
    launch_tollgate,
    make_openai_client,
)

MSGS = [{"role": "user", "content": "Say hello."}]
ALIAS = "smart"


@pytest.fixture(scope="module")
def failing_upstream(tmp_path_factory):
    proc = Proc(
        name="mock-upstream-failing",
        argv=[
            str(_binary("MOCK_UPSTREAM_BIN", "mock-upstream")),
            "--listen",
            "127.0.0.1:0",
            "--key",
            UPSTREAM_KEY,
            "--fail-status",
            "500",
        ],
        workdir=tmp_path_factory.mktemp("mock-upstream-failing"),
    )
    proc.start(_child_env())
    yield proc
    proc.terminate()
    proc.kill()


@pytest.fixture(scope="module")
def fallback_tollgate(tmp_path_factory, mock_upstream, failing_upstream):
    extra = f"""
[modules.retry]
max_retries = 1
backoff_initial_ms = 10
backoff_max_ms = 50

[[providers]]
name = "down"
protocol = "openai"
base_url = "{failing_upstream.base_url}/v1"
api_key_env = "MOCK_UPSTREAM_KEY"
models = ["down-only"]
"""
    yield from launch_tollgate(tmp_path_factory, mock_upstream.base_url, "tollgate-fallback", extra)


def admin_put(tollgate, path: str, body: dict) -> tuple[int, str]:
    url = urlsplit(tollgate.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(
            "PUT",
            f"/admin/v1{path}",
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def wait_traces(db_path, n: int) -> list[sqlite3.Row]:
    deadline = time.monotonic() + 10
    while True:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        con.row_factory = sqlite3.Row
        try:
            rows = con.execute(
                "SELECT stream, status, provider, model_resolved, error_kind, attempts, attempt_log"
                " FROM traces WHERE model_requested = ? ORDER BY started_at_ms, id",
                (ALIAS,),
            ).fetchall()
        finally:
            con.close()
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_fallback_past_an_upstream_failing_every_request(fallback_tollgate, client_key):
    status, body = admin_put(
        fallback_tollgate,
        f"/aliases/{ALIAS}",
        {"target": [f"down/{CHAT_MODEL}", f"openai/{CHAT_MODEL}"]},
    )
    assert status == 200, body

    # max_retries=0: any error from tollgate would raise here.
    with make_openai_client(fallback_tollgate, client_key) as oai:
        r = oai.chat.completions.create(model=ALIAS, messages=MSGS)
        assert r.choices[0].message.content == MOCK_TEXT
        stream = oai.chat.completions.create(model=ALIAS, messages=MSGS, stream=True)
        text = "".join(
            c.choices[0].delta.content or "" for c in stream if c.choices
        )
        assert text == MOCK_TEXT

    rows = wait_traces(fallback_tollgate.db_path, 2)
    assert len(rows) == 2, [dict(r) for r in rows]
    for row, stream in zip(rows, (0, 1)):
        assert row["stream"] == stream
        assert row["status"] == 200
        assert row["error_kind"] is None
        assert (row["provider"], row["model_resolved"]) == ("openai", CHAT_MODEL)
        assert row["attempts"] == 3
        log = json.loads(row["attempt_log"])
        assert [(a["provider"], a.get("status"), a["outcome"]) for a in log] == [
            ("down", 500, "failed"),
            ("down", 500, "failed"),
            ("openai", 200, "answered"),
        ]
