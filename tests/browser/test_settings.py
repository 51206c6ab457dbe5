"""Settings: providers without their keys, and a module switched off and on again."""

from __future__ import annotations

import json

from conftest import UPSTREAM_KEY, shot


def module_enabled(gateway, name: str) -> bool:
    reply = gateway.admin("GET", f"/admin/v1/modules/{name}")
    assert reply.status == 200, reply.body
    return json.loads(reply.body)["enabled"]


def test_providers_and_module_toggle(ui, gateway):
    with ui.expect_navigation():
        ui.click("a#nav-settings")
    providers = ui.inner_text("table#providers")
    assert "openai" in providers and "anthropic" in providers
    assert UPSTREAM_KEY[-8:] not in providers, "an env key is not shown, not even in part"

    rows = ui.locator("table#modules tr[data-module]")
    names = rows.evaluate_all("rows => rows.map(r => r.dataset.module)")
    for name in ("rate_limit", "budget", "retry", "fallback", "breaker", "cache"):
        assert name in names
    shot(ui, "settings")

    audited = "SELECT count(*) FROM audit_log WHERE action = 'module.set' AND subject = 'module:cache'"
    row = ui.locator('table#modules tr[data-module="cache"]')
    assert row.locator("td.module-state").inner_text().strip() == "off"
    assert not module_enabled(gateway, "cache")
    with ui.expect_navigation():
        row.locator("form.module-toggle button.toggle-button").click()
    row = ui.locator('table#modules tr[data-module="cache"]')
    assert row.locator("td.module-state").inner_text().strip() == "on"
    assert module_enabled(gateway, "cache")
    assert gateway.query(audited)[0][0] == 1
    shot(ui, "settings-cache-on")

    with ui.expect_navigation():
        row.locator("form.module-toggle button.toggle-button").click()
    row = ui.locator('table#modules tr[data-module="cache"]')
    assert row.locator("td.module-state").inner_text().strip() == "off"
    assert not module_enabled(gateway, "cache")
    assert gateway.query(audited)[0][0] == 2
