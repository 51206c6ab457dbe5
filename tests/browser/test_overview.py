"""The overview's money equals `tollgate report costs` to the last digit."""

from __future__ import annotations

import datetime as dt
import re

from conftest import GPT4O, HAIKU, MINI, shot


def test_spend_equals_report_costs(ui, gateway):
    today = dt.datetime.now(dt.timezone.utc).date()
    ranges = {
        "spend-30d": "30d",
        "spend-7d": "7d",
        "spend-today": today.isoformat(),
        "spend-mtd": today.replace(day=1).isoformat(),
    }
    expected = {el: gateway.report_total_usd(since) for el, since in ranges.items()}
    # The premise: real, non-zero, non-round money (the prices have 4 decimals).
    assert expected["spend-30d"] not in ("0.00", "")
    assert len(expected["spend-30d"].split(".")[1]) > 2, expected["spend-30d"]

    ui.reload()
    for el, usd in expected.items():
        assert ui.inner_text(f"#{el}").strip() == usd, f"#{el}"
    assert expected["spend-today"] == expected["spend-30d"], "all traffic is today's"
    shot(ui, "overview")


def test_chart_splits(ui, gateway):
    suite_key = gateway.query("SELECT id FROM client_keys WHERE name = 'browser-suite'")[0][0]
    chart = ui.locator("svg#spend-chart")
    assert chart.count() == 1
    tips = " ".join(chart.locator("title").all_text_contents())
    assert "openai" in tips and "anthropic" in tips, "split by provider (the default)"

    for split, names in (("model", (MINI, GPT4O, HAIKU)), ("key", (suite_key,))):
        with ui.expect_navigation():
            ui.click(f"a.split-{split}")
        assert f"split={split}" in ui.url
        tips = " ".join(ui.locator("svg#spend-chart title").all_text_contents())
        for name in names:
            assert name in tips, f"split={split}: {name} missing from the chart's tooltips"
        shot(ui, f"overview-split-{split}")

    for table, names in (("top-keys", (suite_key,)), ("top-models", (MINI, GPT4O, HAIKU))):
        text = ui.inner_text(f"table#{table}")
        for name in names:
            assert name in text, f"table#{table} lacks {name}"


def test_request_and_latency_figures(ui, gateway, traffic):
    text = ui.inner_text("#requests-30d")
    requests = int(re.search(r"\d[\d,]*", text).group(0).replace(",", ""))
    assert requests == gateway.trace_count()
    for el in ("error-rate-30d", "latency-p50", "latency-p95", "ttfb-p50", "ttfb-p95"):
        assert ui.inner_text(f"#{el}").strip(), f"#{el} is empty"


def test_breakers_section(ui, gateway, traffic):
    """The 503 (tried twice) left gpt-4o's breaker closed with two failures. A breaker
    that never opened has no opening time to show: no 1970 date."""
    row = ui.locator("section#breakers tr", has_text=f"openai/{GPT4O}")
    text = row.inner_text()
    assert "closed" in text and "2" in text, text
    assert "1970" not in ui.inner_text("section#breakers")
