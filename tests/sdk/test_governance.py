"""Governance as the official OpenAI SDK sees it (issue 9, "Shown by"):

* the circuit breaker opens after consecutive failures (the failing upstream
  then receives nothing), probes and closes after the upstream recovers, and
  an open breaker survives a restart of tollgate on the same database;
* a stream that breaks after its first byte is never retried nor switched to
  another target, although retry and fallback are on;
* a module switched off and on again through the admin API takes effect on
  the next request, without a restart, and each change is audited.

Each test runs its own tollgate and its own mock-upstream processes, whose
request counts come from the mock's `GET /__mock/stats` control route; a
mock's failing is switched at runtime with `POST /__mock/fail-status`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlsplit

import openai
import pytest

from conftest import (
    ADMIN_KEY,
    CHAT_MODEL,
    MOCK_TEXT,
    UPSTREAM_KEY,
    Proc,
    Tollgate,
    _binary,
    _child_env,
    launch_tollgate,
    make_openai_client,
    write_config,
)

MSGS = [{"role": "user", "content": "Say hello."}]

# --- helpers -------------------------------------------------------------------


def _call(base_url: str, method: str, path: str, body=None, headers=None) -> tuple[int, str]:
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(
            method,
            path,
            body=None if body is None else json.dumps(body),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def admin(tollgate: Tollgate, method: str, path: str, body=None) -> dict:
    status, text = _call(
        tollgate.base_url,
        method,
        f"/admin/v1{path}",
        body,
        {"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert status == 200, f"{method} {path}: {status} {text}"
    return json.loads(text)


def mock_requests(mock: Proc) -> int:
    """Proxied requests the mock has received (its control routes not included)."""
    status, text = _call(mock.base_url, "GET", "/__mock/stats")
    assert status == 200, text
    return json.loads(text)["requests"]


def mock_fail(mock: Proc, status: int) -> None:
    """From now on the mock answers every proxied request with `status` (0: normally)."""
    code, text = _call(mock.base_url, "POST", "/__mock/fail-status", status)
    assert code == 204, text


def query(db_path: Path, sql: str, args=()) -> list[sqlite3.Row]:
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def wait_rows(db_path: Path, sql: str, n: int, args=()) -> list[sqlite3.Row]:
    """The rows of `sql` once there are at least `n` (the writer thread is async)."""
    deadline = time.monotonic() + 10
    while True:
        rows = query(db_path, sql, args)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


@pytest.fixture
def start_mock(tmp_path_factory):
    """Starts a fresh mock-upstream (its own counts), stopped after the test."""
    started: list[Proc] = []

    def start(label: str, fail_status: int | None = None) -> Proc:
        argv = [
            str(_binary("MOCK_UPSTREAM_BIN", "mock-upstream")),
            "--listen",
            "127.0.0.1:0",
            "--key",
            UPSTREAM_KEY,
        ]
        if fail_status is not None:
            argv += ["--fail-status", str(fail_status)]
        proc = Proc(name=label, argv=argv, workdir=tmp_path_factory.mktemp(label))
        started.append(proc)
        return proc.start(_child_env())

    yield start
    for proc in started:
        proc.terminate()
        proc.kill()


@contextlib.contextmanager
def tollgate_on(tmp_path_factory, upstream: Proc, label: str, extra: str, db_path: Path):
    """Like `launch_tollgate`, but on an existing database file (a restart)."""
    workdir = tmp_path_factory.mktemp(label)
    config_path, fresh_db = write_config(workdir, upstream.base_url, extra)
    config_path.write_text(
        config_path.read_text().replace(f'path = "{fresh_db}"', f'path = "{db_path}"', 1)
    )
    fresh_db.unlink()
    proc = Proc(
        name=label,
        argv=[str(_binary("TOLLGATE_BIN", "tollgate")), "serve", "--config", str(config_path)],
        workdir=workdir,
    )
    proc.start(_child_env(MOCK_UPSTREAM_KEY=UPSTREAM_KEY, TOLLGATE_ADMIN_KEY=ADMIN_KEY))
    instance = Tollgate(proc=proc, config_path=config_path, db_path=db_path)
    try:
        yield instance
    finally:
        try:
            instance.stop()
        finally:
            proc.kill()


def down_provider(mock: Proc) -> str:
    return f"""
[[providers]]
name = "down"
protocol = "openai"
base_url = "{mock.base_url}/v1"
api_key_env = "MOCK_UPSTREAM_KEY"
models = ["down-only"]
"""


# --- 1. the circuit breaker ---------------------------------------------------------

DOWN_MODEL = f"down/{CHAT_MODEL}"


def breaker_extra(mock: Proc, cooldown_ms: int) -> str:
    # One attempt per request and no other target: every SDK call is exactly
    # one request to the failing upstream unless the breaker skips it.
    return f"""
[modules.retry]
enabled = false

[modules.fallback]
enabled = false

[modules.breaker]
failures = 3
cooldown_ms = {cooldown_ms}
""" + down_provider(mock)


def assert_breaker_open(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as refused:
        oai.chat.completions.create(model=DOWN_MODEL, messages=MSGS)
    assert refused.value.status_code == 503
    assert refused.value.code == "breaker_open"


def open_the_breaker(oai: openai.OpenAI, down: Proc) -> None:
    before = mock_requests(down)
    for _ in range(3):
        with pytest.raises(openai.InternalServerError) as failed:
            oai.chat.completions.create(model=DOWN_MODEL, messages=MSGS)
        assert failed.value.status_code == 500
    assert mock_requests(down) == before + 3
    assert_breaker_open(oai)
    assert mock_requests(down) == before + 3, "an open breaker sends the upstream nothing"


def test_breaker_opens_closes_after_recovery_and_survives_a_restart(
    tmp_path_factory, mock_upstream, start_mock, client_key
):
    down = start_mock("mock-upstream-down", fail_status=500)
    cooldown_ms = 1000
    with contextlib.contextmanager(launch_tollgate)(
        tmp_path_factory,
        mock_upstream.base_url,
        "tollgate-breaker",
        breaker_extra(down, cooldown_ms),
    ) as tg, make_openai_client(tg, client_key) as oai:
        db_path = tg.db_path
        open_the_breaker(oai, down)
        shown = admin(tg, "GET", "/breakers")["breakers"]
        assert [(b["provider"], b["model"], b["state"]) for b in shown] == [
            ("down", CHAT_MODEL, "open")
        ]

        # The upstream recovers; after the cooldown one probe goes through,
        # succeeds and closes the breaker.
        mock_fail(down, 0)
        time.sleep(cooldown_ms / 1000 + 0.2)
        r = oai.chat.completions.create(model=DOWN_MODEL, messages=MSGS)
        assert r.choices[0].message.content == MOCK_TEXT
        assert mock_requests(down) == 4, "the probe"
        shown = admin(tg, "GET", "/breakers")["breakers"]
        # A closed breaker is either listed as closed or no longer listed.
        assert all(b["state"] == "closed" for b in shown), shown
        for n in (5, 6):
            r = oai.chat.completions.create(model=DOWN_MODEL, messages=MSGS)
            assert r.choices[0].message.content == MOCK_TEXT
            assert mock_requests(down) == n

        # Down again: open it once more, then restart on the same file with
        # a long cooldown. Exit 0 is checked when the block ends.
        mock_fail(down, 500)
        open_the_breaker(oai, down)
    seen = mock_requests(down)
    assert seen == 9

    with tollgate_on(
        tmp_path_factory,
        mock_upstream,
        "tollgate-breaker-restarted",
        breaker_extra(down, 60_000),
        db_path,
    ) as tg, make_openai_client(tg, client_key) as oai:
        assert_breaker_open(oai)
        assert mock_requests(down) == seen, "the restarted tollgate remembers the open breaker"
        shown = admin(tg, "GET", "/breakers")["breakers"]
        assert [(b["provider"], b["state"]) for b in shown] == [("down", "open")]

    audit = query(
        db_path, "SELECT action FROM audit_log WHERE action LIKE 'breaker.%' ORDER BY seq"
    )
    actions = [r["action"] for r in audit]
    assert actions == ["breaker.open", "breaker.half_open", "breaker.close", "breaker.open"]
    traces = query(
        db_path,
        "SELECT status, error_kind FROM traces WHERE model_requested = ?"
        " ORDER BY started_at_ms, id",
        (DOWN_MODEL,),
    )
    failed, refused, answered = (500, "upstream_error_status"), (503, "breaker_open"), (200, None)
    assert [(t["status"], t["error_kind"]) for t in traces] == (
        [failed] * 3 + [refused] + [answered] * 3  # opened, probed, closed
        + [failed] * 3 + [refused]  # opened again
        + [refused]  # after the restart
    )


# --- 2. no retry after the first byte -----------------------------------------------

WORDS = 20


def test_a_stream_is_never_retried_after_its_first_byte(tmp_path_factory, start_mock, client_key):
    primary = start_mock("mock-upstream-primary")
    backup = start_mock("mock-upstream-backup")
    extra = f"""
[modules.retry]
enabled = true
max_retries = 2
backoff_initial_ms = 10
backoff_max_ms = 50

[modules.fallback]
enabled = true

[[providers]]
name = "backup"
protocol = "openai"
base_url = "{backup.base_url}/v1"
api_key_env = "MOCK_UPSTREAM_KEY"
models = ["backup-only"]
"""
    with contextlib.contextmanager(launch_tollgate)(
        tmp_path_factory, primary.base_url, "tollgate-stream-break", extra
    ) as tg, make_openai_client(tg, client_key) as oai:
        targets = [f"openai/{CHAT_MODEL}", f"backup/{CHAT_MODEL}"]
        admin(tg, "PUT", "/aliases/smart", {"target": targets})

        # The primary breaks the stream after 2 events (the role chunk and
        # the first word): the SDK has had its first bytes.
        stream = oai.chat.completions.create(
            model="smart",
            messages=MSGS,
            stream=True,
            extra_headers={"x-mock-break-after": "2", "x-mock-words": str(WORDS)},
        )
        words: list[str] = []
        broken = None
        try:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    words.append(chunk.choices[0].delta.content)
        except Exception as e:  # openai.APIError today; any error is the stream ending
            broken = e
        finally:
            stream.close()
        # The SDK raises (tollgate ends the stream with an error event) after
        # the first word; a retried or switched stream would go on past it.
        assert broken is not None, words
        assert words == ["w1 "], (words, broken)
        assert mock_requests(primary) == 1, "never retried after the first byte"
        assert mock_requests(backup) == 0, "never switched after the first byte"

        # Control: the same alias with the primary down before any byte is
        # retried and then answered by the backup, so retry and fallback are on.
        mock_fail(primary, 500)
        stream = oai.chat.completions.create(
            model="smart", messages=MSGS, stream=True, extra_headers={"x-mock-words": str(WORDS)}
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == " ".join(f"w{i}" for i in range(1, WORDS + 1))
        assert mock_requests(primary) == 1 + 3
        assert mock_requests(backup) == 1

        rows = wait_rows(
            tg.db_path,
            "SELECT provider, attempts, attempt_log, error_kind FROM traces"
            " WHERE model_requested = 'smart' ORDER BY started_at_ms, id",
            2,
        )
    assert len(rows) == 2, [dict(r) for r in rows]
    broke, fell_back = rows
    assert broke["provider"] == "openai"
    assert broke["attempts"] == 1
    assert broke["error_kind"] == "upstream_stream_broken"
    assert fell_back["provider"] == "backup"
    assert fell_back["attempts"] == 4
    assert [a["outcome"] for a in json.loads(fell_back["attempt_log"])] == [
        "failed",
        "failed",
        "failed",
        "answered",
    ]


# --- 3. a module toggled at runtime -----------------------------------------------------


def test_a_module_toggled_off_and_on_through_the_admin_api(
    tmp_path_factory, mock_upstream, client_key
):
    with contextlib.contextmanager(launch_tollgate)(
        tmp_path_factory,
        mock_upstream.base_url,
        "tollgate-toggle",
        "\n[modules.rate_limit]\nrpm = 1\n",
    ) as tg, make_openai_client(tg, client_key) as oai:

        def ask() -> None:
            r = oai.chat.completions.create(model=CHAT_MODEL, messages=MSGS)
            assert r.choices[0].message.content == MOCK_TEXT

        ask()
        with pytest.raises(openai.RateLimitError):
            ask()

        off = admin(tg, "PUT", "/modules/rate_limit", {"enabled": False})
        assert off["enabled"] is False
        for _ in range(3):
            ask()

        on = admin(tg, "PUT", "/modules/rate_limit", {"enabled": True})
        assert on["enabled"] is True
        with pytest.raises(openai.RateLimitError) as refused:
            ask()
        assert refused.value.status_code == 429
        db_path = tg.db_path
        kinds = wait_rows(
            db_path,
            "SELECT error_kind FROM traces WHERE model_requested = ? ORDER BY started_at_ms, id",
            6,
            (CHAT_MODEL,),
        )
    assert [r["error_kind"] for r in kinds] == [
        None,
        "rate_limited",
        None,
        None,
        None,
        "rate_limited",
    ]
    audit = query(
        db_path,
        "SELECT actor, subject, detail FROM audit_log WHERE action = 'module.set' ORDER BY seq",
    )
    assert [(a["actor"], a["subject"]) for a in audit] == [("admin", "module:rate_limit")] * 2
    assert [json.loads(a["detail"])["new"]["enabled"] for a in audit] == [False, True]
