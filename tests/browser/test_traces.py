"""Finding traces: filters, keyset pages, and one trace opened."""

from __future__ import annotations

from urllib.parse import urlsplit

from conftest import GPT4O, MINI, shot


def row_ids(page) -> list[str]:
    return page.locator("table#traces tr[data-request-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.requestId)"
    )


def newest_first(gateway, where: str = "1", *params) -> list[str]:
    return [
        r[0]
        for r in gateway.query(
            f"SELECT id FROM traces WHERE {where} ORDER BY started_at_ms DESC, id DESC", *params
        )
    ]


def set_field(page, form: str, name: str, value: str) -> None:
    """Fills a form field whether the page made it an input or a select."""
    field = page.locator(f"{form} [name={name}]")
    if field.evaluate("el => el.tagName") == "SELECT":
        field.select_option(value)
    else:
        field.fill(value)


def usd_exact(uc: int) -> str:
    """ledger::money::format_usd_exact: at least 2 decimals, at most 8, no float."""
    whole, frac = divmod(abs(uc), 100_000_000)
    digits = f"{frac:08d}".rstrip("0")
    return ("-" if uc < 0 else "") + f"{whole}." + digits.ljust(2, "0")


def test_list_newest_first_with_request_ids(ui, gateway, traffic):
    with ui.expect_navigation():
        ui.click("a#nav-traces")
    ids = row_ids(ui)
    assert ids == newest_first(gateway)[: len(ids)]
    for sent in traffic:
        row = ui.locator(f'table#traces tr[data-request-id="{sent.request_id}"]')
        assert sent.request_id in row.inner_text(), "the request id is shown in its row"
    shot(ui, "traces")


def test_filter_by_model_and_by_status(ui, gateway, traffic):
    ui.goto(gateway.ui("traces"))
    set_field(ui, "form#trace-filters", "model", MINI)
    with ui.expect_navigation():
        ui.click("form#trace-filters button[type=submit]")
    assert "model=" in ui.url
    got = row_ids(ui)
    assert got == newest_first(gateway, "model_requested = ?", MINI)
    assert {s.request_id for s in traffic if s.model == MINI} <= set(got)
    shot(ui, "traces-model")

    ui.goto(gateway.ui("traces"))
    set_field(ui, "form#trace-filters", "status", "5xx")
    with ui.expect_navigation():
        ui.click("form#trace-filters button[type=submit]")
    got = row_ids(ui)
    assert got == newest_first(gateway, "status BETWEEN 500 AND 599")
    assert [s.request_id for s in traffic if s.status == 503] == got
    shot(ui, "traces-5xx")

    # Both filters at once: a 4xx of gpt-4o-mini, and no gpt-4o row.
    query = f"/ui/traces?model={MINI}&status=4xx"
    ui.goto(gateway.url + query)
    assert row_ids(ui) == newest_first(
        gateway, "model_requested = ? AND status BETWEEN 400 AND 499", MINI
    )
    ui.goto(gateway.url + f"/ui/traces?model={GPT4O}&status=4xx")
    assert row_ids(ui) == []


def test_keyset_pages_cover_everything_once(ui, gateway, traffic):
    ui.goto(gateway.ui("traces?limit=3"))
    seen: list[str] = []
    for _ in range(100):
        page_ids = row_ids(ui)
        assert 0 < len(page_ids) <= 3
        seen += page_ids
        nxt = ui.locator("a#next-page")
        if nxt.count() == 0:
            break
        assert "offset" not in nxt.get_attribute("href")
        with ui.expect_navigation():
            nxt.click()
    assert seen == newest_first(gateway), "every trace once, newest first"


def test_open_a_trace(ui, gateway, traffic):
    failed = next(s for s in traffic if s.status == 503)
    ok = next(s for s in traffic if s.status == 200 and s.model == GPT4O)
    for sent, name in ((ok, "trace"), (failed, "trace-retried")):
        ui.goto(gateway.ui("traces"))
        with ui.expect_navigation():
            ui.click(f'table#traces tr[data-request-id="{sent.request_id}"] a.trace-link')
        assert urlsplit(ui.url).path == f"/ui/traces/{sent.request_id}"
        assert ui.inner_text("#trace-id").strip() == sent.request_id
        assert ui.locator("svg#timing-bar").count() == 1
        assert ui.locator("#tokens").count() == 1

        cost_uc = gateway.query("SELECT cost_uc FROM costs WHERE trace_id = ?", sent.request_id)[0][0]
        if cost_uc is not None:
            assert usd_exact(cost_uc) in ui.inner_text("#cost")
        seq = gateway.query(
            "SELECT seq FROM audit_log WHERE subject = ?", f"trace:{sent.request_id}"
        )[0][0]
        assert str(seq) in ui.inner_text("#ledger-seq")
        assert ui.inner_text("#chain-status").strip()
        shot(ui, name)

    # The ok trace's price is the configured one: gpt-4o at 2.5013 / 10.0071 USD per M.
    ui.goto(gateway.ui(f"traces/{ok.request_id}"))
    # Shown in USD per million tokens or as the row's µ¢ per million.
    price = ui.inner_text("#price").replace(",", "")
    assert ("2.5013" in price or "250130000" in price) and (
        "10.0071" in price or "1000710000" in price
    ), price
    # The 503 was retried once (modules.retry.max_retries = 1): two attempts shown.
    ui.goto(gateway.ui(f"traces/{failed.request_id}"))
    assert ui.locator("#attempts").count() == 1
    # Bodies are not stored by default, so none is shown.
    assert ui.locator("#request-body, #response-body").count() == 0


def test_unknown_trace_is_404(ui, gateway):
    resp = ui.goto(gateway.ui("traces/00000000-0000-7000-8000-000000000000"))
    assert resp.status == 404
    shot(ui, "trace-not-found")
