"""Guardrails on requests as the official SDKs see them (issue 16, "Shown by"):

* with `[modules.guardrails]` redacting, the upstream never receives an e-mail
  address, a card number or a provider key present in the prompt (checked on
  what a recording relay between tollgate and the mock saw), and the client
  still gets its answer, with `x-tollgate-guardrails: redacted=N`;
* in block mode both SDKs raise their 400 error, naming the rule and never
  the match, and nothing goes upstream;
* switching the module off through the admin API takes effect on the next
  request, without a restart;
* neither the trace rows nor tollgate's log output hold the matched text.

The module's own tollgate runs behind a relay (conftest.UpstreamRelay) with
`store_bodies` on, so stored bodies are checked too.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import time
from urllib.parse import urlsplit

import anthropic
import openai
import pytest

from conftest import (
    ADMIN_KEY,
    CHAT_MODEL,
    CLAUDE_MODEL,
    EMBED_MODEL,
    MOCK_TEXT,
    UpstreamRelay,
    launch_tollgate,
    make_anthropic_client,
    make_openai_client,
)

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
PROVIDER_KEY = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd"
FOUND = (EMAIL, CARD, CARD.replace(" ", ""), PROVIDER_KEY)

GUARDRAILS = """
[traces]
store_bodies = true

[modules.guardrails]
enabled = true
"""


@pytest.fixture(scope="module")
def relay(mock_upstream):
    r = UpstreamRelay(mock_upstream.base_url)
    yield r
    r.close()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, relay):
    yield from launch_tollgate(tmp_path_factory, relay.base_url, "tollgate-guardrails", GUARDRAILS)


def admin_put(tollgate, patch: dict) -> None:
    url = urlsplit(tollgate.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(
            "PUT",
            "/admin/v1/modules/guardrails",
            body=json.dumps(patch),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_KEY}"},
        )
        resp = conn.getresponse()
        text = resp.read().decode()
        assert resp.status == 200, text
    finally:
        conn.close()


def trace_rows(db_path, n: int) -> list[str]:
    """Every trace row as one text (bodies decoded), once there are at least n."""
    deadline = time.monotonic() + 10
    while True:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT * FROM traces ORDER BY started_at_ms, id").fetchall()
        finally:
            con.close()
        if len(rows) >= n or time.monotonic() > deadline:
            return [
                "\x01".join(
                    v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row
                )
                for row in rows
            ]
        time.sleep(0.05)


def assert_nothing_found_in(text: str, where: str) -> None:
    for value in FOUND:
        assert value not in text, f"{where} holds {value!r}"


def test_pii_never_reaches_the_upstream_and_the_client_gets_its_answer(
    guarded, relay, client_key
):
    prompt = f"Write to {EMAIL}, charge {CARD}, and use {PROVIDER_KEY}."
    before = len(relay.seen)
    oai = make_openai_client(guarded, client_key)
    ant = make_anthropic_client(guarded, client_key)
    with oai, ant:
        raw = oai.chat.completions.with_raw_response.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}]
        )
        assert raw.headers["x-tollgate-guardrails"] == "redacted=3"
        assert raw.parse().choices[0].message.content == MOCK_TEXT

        with oai.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}], stream=True
        ) as s:
            assert "".join(c.choices[0].delta.content or "" for c in s if c.choices) == MOCK_TEXT

        e = oai.embeddings.create(model=EMBED_MODEL, input=[prompt, "plain"])
        assert len(e.data) == 2

        m = ant.messages.create(
            model=CLAUDE_MODEL,
            max_tokens=64,
            system=f"The user is {EMAIL}.",
            messages=[{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        )
        assert m.content[0].text == MOCK_TEXT

    sent = [r for r in relay.seen[before:] if r.method == "POST"]
    assert len(sent) == 4, [(r.method, r.path) for r in relay.seen]
    for req in sent:
        body = req.body.decode()
        assert_nothing_found_in(body, f"the body sent upstream to {req.path}")
        assert "[EMAIL_1]" in body, body
    assert "[CARD_1]" in sent[0].body.decode()
    assert "[SECRET_1]" in sent[0].body.decode()
    assert json.loads(sent[3].body)["system"] == "The user is [EMAIL_1]."

    for row in trace_rows(guarded.db_path, 4):
        assert_nothing_found_in(row, "a trace row")


def test_block_mode_raises_the_sdks_400_naming_the_rule(guarded, relay, client_key):
    admin_put(guarded, {"pii_action": "block"})
    before = len(relay.seen)
    try:
        oai = make_openai_client(guarded, client_key)
        ant = make_anthropic_client(guarded, client_key)
        with oai, ant:
            with pytest.raises(openai.BadRequestError) as err:
                oai.chat.completions.create(
                    model=CHAT_MODEL, messages=[{"role": "user", "content": f"mail {EMAIL}"}]
                )
            assert err.value.status_code == 400
            assert err.value.code == "guardrails_blocked"
            assert "email" in err.value.message
            assert_nothing_found_in(err.value.message, "the OpenAI error")

            with pytest.raises(anthropic.BadRequestError) as err:
                ant.messages.create(
                    model=CLAUDE_MODEL,
                    max_tokens=64,
                    messages=[{"role": "user", "content": f"card {CARD}"}],
                )
            assert err.value.status_code == 400
            assert err.value.body["error"]["type"] == "invalid_request_error"
            assert "card" in err.value.body["error"]["message"]
            assert_nothing_found_in(json.dumps(err.value.body), "the Anthropic error")
    finally:
        admin_put(guarded, {"pii_action": "redact"})
    assert [r for r in relay.seen[before:] if r.method == "POST"] == []


def test_switched_off_at_runtime_the_next_request_goes_unscanned(guarded, relay, client_key):
    def send(oai) -> tuple[str | None, str]:
        """The guardrails header and the body that went upstream."""
        before = len(relay.seen)
        raw = oai.chat.completions.with_raw_response.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": f"mail {EMAIL}"}]
        )
        assert raw.parse().choices[0].message.content == MOCK_TEXT
        sent = [r for r in relay.seen[before:] if r.method == "POST"]
        assert len(sent) == 1
        return raw.headers.get("x-tollgate-guardrails"), sent[0].body.decode()

    with make_openai_client(guarded, client_key) as oai:
        header, body = send(oai)
        assert header == "redacted=1" and EMAIL not in body
        admin_put(guarded, {"enabled": False})
        try:
            header, body = send(oai)
            assert header is None and EMAIL in body
        finally:
            admin_put(guarded, {"enabled": True})
        header, body = send(oai)
        assert header == "redacted=1" and EMAIL not in body


def test_text_that_cannot_be_scanned_is_refused_not_passed(guarded, relay, client_key):
    """Fail closed: past `scan_limit_bytes` a rule cannot be evaluated, so the
    request is refused with each SDK's 400 and nothing goes upstream; an
    embeddings token array cannot be scanned while a text rule is on."""
    admin_put(guarded, {"scan_limit_bytes": 1024})
    before = len(relay.seen)
    long_text = "plain words " * 200
    try:
        oai = make_openai_client(guarded, client_key)
        ant = make_anthropic_client(guarded, client_key)
        with oai, ant:
            with pytest.raises(openai.BadRequestError) as err:
                oai.chat.completions.create(
                    model=CHAT_MODEL, messages=[{"role": "user", "content": long_text}]
                )
            assert err.value.code == "guardrails_unscannable"
            with pytest.raises(anthropic.BadRequestError) as err:
                ant.messages.create(
                    model=CLAUDE_MODEL,
                    max_tokens=64,
                    messages=[{"role": "user", "content": long_text}],
                )
            assert err.value.body["error"]["type"] == "invalid_request_error"
            with pytest.raises(openai.BadRequestError) as err:
                oai.embeddings.create(model=EMBED_MODEL, input=[[1, 2, 3]])
            assert err.value.code == "guardrails_unscannable"
            # Within the limit the same client is served again.
            ok = oai.chat.completions.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": "short"}]
            )
            assert ok.choices[0].message.content == MOCK_TEXT
    finally:
        admin_put(guarded, {"scan_limit_bytes": 4194304})
    sent = [r for r in relay.seen[before:] if r.method == "POST"]
    assert len(sent) == 1, [(r.method, r.path) for r in sent]


def test_the_log_output_never_holds_the_matched_text(guarded, client_key):
    # Runs after the tests above sent every kind of finding through this
    # instance (redacted and blocked); its stderr is the log output.
    with make_openai_client(guarded, client_key) as oai:
        raw = oai.chat.completions.with_raw_response.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": f"again {EMAIL} {CARD}"}]
        )
        assert raw.headers["x-tollgate-guardrails"] == "redacted=2"
    log = guarded.proc.stderr()
    assert "listening" in log or "INFO" in log, log
    assert_nothing_found_in(log, "tollgate's log output")
