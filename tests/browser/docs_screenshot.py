"""Makes docs/dashboard-overview.png: the overview of a gateway with three weeks of traffic.

Not a test (CI does not run it). Every number in the picture comes from real
requests through the real binary to mock-upstream: the past days are made by
running `tollgate serve` under libfaketime (`apt-get install faketime`) with
the clock set back N days — only the wall clock; timers keep the real
monotonic clock — and today's traffic comes last, from a normal run.

    cargo build --workspace --bins
    bash tests/browser/run.sh -k nothing   # once: creates target/browser-venv
    target/browser-venv/bin/python tests/browser/docs_screenshot.py [OUT.png]
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import conftest as c
from playwright.sync_api import sync_playwright

DAYS = 29
KEYS = ("web-app", "batch-jobs", "support-bot")
MIX = (  # (provider call, model, weight)
    ("chat", c.MINI, 6),
    ("chat", c.GPT4O, 2),
    ("message", c.HAIKU, 3),
)
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
EXTRA = """
[modules.cache]
enabled = true
"""


def serve(gw_binary: Path, config: Path, workdir: Path, days_ago: int) -> c.Proc:
    argv = [str(gw_binary), "serve", "--config", str(config)]
    env = c._child_env(
        TOLLGATE_ADMIN_KEY=c.ADMIN_KEY,
        TOLLGATE_AUDIT_KEY=c.AUDIT_KEY,
        MOCK_UPSTREAM_KEY=c.UPSTREAM_KEY,
    )
    if days_ago:
        # Preloaded directly (the `faketime` wrapper would stand between the
        # signal and the server).
        env |= {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": f"-{days_ago}d",
                "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    return c.Proc(f"tollgate-{days_ago}d", argv, workdir).start(env)


def traffic(gw: c.Gateway, keys: list[str], rng: random.Random, n: int) -> None:
    calls = [(call, model) for call, model, w in MIX for _ in range(w)]
    for _ in range(n):
        call, model = rng.choice(calls)
        key = rng.choices(keys, weights=(5, 3, 2))[0]
        prompt = f"Question {rng.getrandbits(48)}"
        messages = [{"role": "user", "content": prompt}]
        headers = {
            "x-mock-usage": f"prompt={rng.randint(2000, 40000)},completion={rng.randint(200, 2000)}"
        }
        if rng.random() < 0.03:
            headers["x-mock-status"] = str(rng.choice((400, 429, 500)))
        if call == "chat":
            path, body = "/v1/chat/completions", {"model": model, "messages": messages}
            headers["authorization"] = f"Bearer {key}"
        else:
            path = "/v1/messages"
            body = {"model": model, "max_tokens": 2048, "messages": messages}
            headers |= {"x-api-key": key, "anthropic-version": "2023-06-01"}
        repeats = 2 if rng.random() < 0.12 else 1  # the same request again: a cache hit
        for _ in range(repeats):
            assert gw.send("POST", path, body, headers).status < 600


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else c.REPO / "docs/dashboard-overview.png"
    workdir = c.REPO / "target/docs-screenshot"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    binary = c._executable("TOLLGATE_BIN", c.REPO / "target/debug/tollgate")
    mock_bin = c._executable("MOCK_UPSTREAM_BIN", c.REPO / "target/debug/mock-upstream")
    mock = c.Proc("mock", [str(mock_bin), "--listen", "127.0.0.1:0", "--key", c.UPSTREAM_KEY], workdir)
    mock.start(c._child_env())
    config, db = c.write_config(workdir, mock.base_url, EXTRA)
    env = c._child_env(TOLLGATE_ADMIN_KEY=c.ADMIN_KEY, TOLLGATE_AUDIT_KEY=c.AUDIT_KEY)
    keys = []
    for name in KEYS:
        budget = ["--budget-usd", "5", "--budget-window", "month"] if name == "support-bot" else []
        out_key = subprocess.run(
            [str(binary), "keys", "create", "--name", name, *budget, "--config", str(config)],
            env=env, capture_output=True, text=True, check=True,
        )
        keys.append(out_key.stdout.strip().splitlines()[-1])

    rng = random.Random(11)
    try:
        for days_ago in range(DAYS, -1, -1):
            proc = serve(binary, config, workdir, days_ago)
            gw = c.Gateway(proc, binary, config, db, keys[0])
            weekday_dip = 0.5 if days_ago % 7 in (2, 3) else 1.0
            traffic(gw, keys, rng, int(rng.randint(25, 45) * weekday_dip) + (DAYS - days_ago))
            if days_ago:
                assert proc.terminate() == 0, proc.stderr_tail()
        gw.wait_traces(1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(c._executable("CHROMIUM", Path("/usr/bin/chromium"))),
                args=c.CHROMIUM_ARGS,
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            c.sign_in(page, gw)
            page.screenshot(path=str(out), full_page=True)
            browser.close()
        print(f"wrote {out}")
    finally:
        for proc in c._LIVE:
            proc.terminate()


if __name__ == "__main__":
    main()
