"""A client key created in the dashboard works through the proxy; revoked there, it stops."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from conftest import HAIKU, MINI, _SUITE_CLIENT_KEYS, shot


def test_create_use_and_revoke_a_key(ui, gateway):
    with ui.expect_navigation():
        ui.click("a#nav-keys")
    assert ui.locator(f"table#keys tr[data-key-id]").count() >= 1
    shot(ui, "keys")

    form = ui.locator("form#create-key")
    form.locator("input[name=name]").fill("browser-created")
    form.locator("input[name=expires_days]").fill("30")
    form.locator("input[name=rpm]").fill("600")
    form.locator("input[name=budget_usd]").fill("3.21")
    with ui.expect_navigation():
        form.locator("[type=submit]").click()

    key = ui.inner_text("code#new-key").strip()
    key_id = ui.inner_text("#new-key-id").strip()
    assert key.startswith("tg-"), "the plaintext key, shown once"
    assert key not in ui.url and key_id
    shot(ui, "key-created", allow=(key,))
    _SUITE_CLIENT_KEYS.append(key)  # from here on, no page may show it

    row = gateway.query("SELECT name FROM client_keys WHERE id = ?", key_id)
    assert row == [("browser-created",)]
    actions = gateway.query(
        "SELECT action FROM audit_log WHERE subject = ? ORDER BY seq", f"client_key:{key_id}"
    )
    assert actions == [("client_key.create",)]

    ok = gateway.chat(MINI, key=key, mock_usage="prompt=101,completion=202")
    assert ok.status == 200, ok.body
    ok = gateway.message(HAIKU, key=key, mock_usage="prompt=303,completion=404")
    assert ok.status == 200, ok.body

    ui.goto(gateway.ui("keys"))
    key_row = ui.locator(f'table#keys tr[data-key-id="{key_id}"]')
    assert "browser-created" in key_row.inner_text()
    assert key_row.locator("td.key-state").inner_text().strip() == "active"
    assert key_row.locator("meter, svg").count() >= 1, "budget use as a meter or bar"
    assert key not in ui.content()

    with ui.expect_navigation():
        key_row.locator("form.revoke button.revoke-button").click()
    assert urlsplit(ui.url).path == "/ui/keys"
    key_row = ui.locator(f'table#keys tr[data-key-id="{key_id}"]')
    assert key_row.locator("td.key-state").inner_text().strip() == "revoked"
    shot(ui, "keys-revoked")

    actions = gateway.query(
        "SELECT action FROM audit_log WHERE subject = ? ORDER BY seq", f"client_key:{key_id}"
    )
    assert actions == [("client_key.create",), ("client_key.revoke",)]

    # The proxy's key cache lives at most a second; the refusal follows within it.
    deadline = time.monotonic() + 3
    while (refused := gateway.chat(MINI, key=key)).status == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert refused.status == 401, refused.body
    # The suite's own key is untouched.
    assert gateway.chat(MINI).status == 200


def test_bad_key_form_says_why(ui, gateway):
    ui.goto(gateway.ui("keys"))
    form = ui.locator("form#create-key")
    form.locator("input[name=name]").fill("bad-budget")
    form.locator("input[name=budget_usd]").fill("1.5.0")
    with ui.expect_response(lambda r: r.request.method == "POST") as resp:
        form.locator("[type=submit]").click()
    assert resp.value.status == 400
    ui.wait_for_selector("#form-error")
    assert ui.inner_text("#form-error").strip()
    assert ui.locator("code#new-key").count() == 0
    assert gateway.query("SELECT count(*) FROM client_keys WHERE name = 'bad-budget'")[0][0] == 0
    shot(ui, "keys-form-error")
