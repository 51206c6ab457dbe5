"""The audit page: chain head, "verify now" to the head, the checkpoint file."""

from __future__ import annotations

import re
import time
from pathlib import Path

from conftest import UI_TIMEOUT_MS, shot, sign_in

OK = re.compile(r"^OK — verified up to seq (\d+)$")


def test_verify_now_reaches_the_head(ui, gateway, traffic):
    with ui.expect_navigation():
        ui.click("a#nav-audit")
    head = gateway.audit_head_seq()
    head_hash = gateway.query("SELECT hex(hash) FROM audit_log WHERE seq = ?", head)[0][0]
    chain_head = ui.inner_text("#chain-head")
    assert str(head) in chain_head
    assert head_hash.lower()[:12] in chain_head.lower(), "the head's hash (or its start)"
    assert ui.inner_text("#keyed").strip() == "keyed"
    assert ui.inner_text("#last-checkpoint").strip()
    shot(ui, "audit")

    ui.click("form#verify-now button#verify-button")
    # Until the run reaches the head (a result of an earlier run may show first), or fails.
    ui.wait_for_function(
        """head => {
            const el = document.querySelector('#verify-result');
            const text = el ? el.textContent.trim() : '';
            return text === `OK — verified up to seq ${head}` || text.startsWith('FAILED');
        }""",
        arg=head,
        timeout=UI_TIMEOUT_MS,
    )
    result = ui.inner_text("#verify-result").strip()
    m = OK.match(result)
    assert m, result
    assert int(m.group(1)) == gateway.audit_head_seq() == head
    assert ui.inner_text("#verify-progress").strip()
    shot(ui, "audit-verified")

    status = ui.context.request.get(gateway.ui("audit/verify")).json()
    assert status["state"] == "done" and status["ok"] is True, status
    assert status["head_seq"] == head and status["checked"] == status["total"] == head
    assert status["first_failure"] is None


def test_verify_without_javascript(browser, gateway, traffic):
    """Without JS the form still starts the run; a reload shows the outcome."""
    # One more entry, so that an earlier run's result cannot pass for this one's.
    before = gateway.trace_count()
    assert gateway.chat("gpt-4o-mini").status == 200
    gateway.wait_traces(before + 1)
    head = gateway.audit_head_seq()
    ctx = browser.new_context(java_script_enabled=False)
    try:
        page = ctx.new_page()
        sign_in(page, gateway)
        page.goto(gateway.ui("audit"))
        with page.expect_navigation():
            page.click("form#verify-now button#verify-button")
        deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
        while True:
            page.goto(gateway.ui("audit"))
            result = page.inner_text("#verify-result").strip() if page.locator("#verify-result").count() else ""
            if result == f"OK — verified up to seq {head}" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert result == f"OK — verified up to seq {head}"
        assert head == gateway.audit_head_seq()
    finally:
        ctx.close()


def test_checkpoint_download(ui, gateway, traffic):
    ui.goto(gateway.ui("audit"))
    with ui.expect_download() as dl:
        ui.click("a#checkpoint-download")
    saved = Path(dl.value.path())
    lines = [l for l in saved.read_text().splitlines() if l and not l.startswith("#")]
    assert lines, "checkpoint_every_entries = 5: the file has at least one line"
    on_disk = Path(str(gateway.db) + ".checkpoints").read_text()
    assert saved.read_text() == on_disk
    seq = int(lines[-1].split(":", 1)[0])
    assert 1 <= seq <= gateway.audit_head_seq()
