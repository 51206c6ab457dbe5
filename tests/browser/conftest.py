"""Fixtures for the dashboard's browser tests.

Process layout for a test session:

    Chromium (Playwright) --(session cookie)--> tollgate serve /ui/
    urllib (client key) --> tollgate serve /v1/... --(provider key)--> mock-upstream

The binaries come from TOLLGATE_BIN and MOCK_UPSTREAM_BIN, the browser from
CHROMIUM (tests/browser/run.sh sets all three; it never builds anything). Each
spawned process announces itself with one stdout line ``listening on
http://127.0.0.1:PORT``; its stderr goes to a file that is attached to the
report of any failing test. The database is a real SQLite file in a temp dir.

Every page a test opens is checked when the test ends: no JavaScript error, no
Content-Security-Policy violation, no failed or off-site subresource, and no
secret (admin key, provider key, the suite's client key) in its HTML.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

REPO = Path(__file__).resolve().parents[2]

ADMIN_KEY = "tga-browser-tests-admin-credential-4711"
"""The admin credential (TOLLGATE_ADMIN_KEY); the sign-in form's right answer."""

UPSTREAM_KEY = "sk-browser-upstream-secret-0815"
"""The only credential mock-upstream accepts; tollgate injects it from MOCK_UPSTREAM_KEY."""

AUDIT_KEY = "5e" * 32
"""64 hex characters: the ledger's chain is keyed."""

MINI, GPT4O, HAIKU = "gpt-4o-mini", "gpt-4o", "claude-haiku-4-5"

PRICES = """
[prices."openai/gpt-4o-mini"]
input = "0.1537"
output = "0.6113"

[prices."openai/gpt-4o"]
input = "2.5013"
output = "10.0071"

[prices."anthropic/claude-haiku-4-5"]
input = "1.0009"
output = "5.0031"
"""
"""Deliberately not round (USD per million tokens), so that a total that went
through a float, or was rounded for display, would not match the CLI's."""

STARTUP_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 30.0
UI_TIMEOUT_MS = 10_000

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""The closed network refuses Chromium's background connections; these keep it quiet."""

_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))")

for _var in ("NO_PROXY", "no_proxy"):
    _hosts = [h for h in os.environ.get(_var, "").split(",") if h]
    os.environ[_var] = ",".join(_hosts + ["127.0.0.1", "localhost"])
# urllib must never send the suite's requests through an ambient proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _executable(env_var: str, default: Path) -> Path:
    path = Path(os.environ.get(env_var) or default)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.exit(f"{env_var}: no executable at {path}", returncode=2)
    return path


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env.setdefault("RUST_BACKTRACE", "1")
    env.setdefault("NO_COLOR", "1")
    env.update(extra)
    return env


# --- processes -------------------------------------------------------------------

_LIVE: list["Proc"] = []


@dataclass
class Proc:
    name: str
    argv: list[str]
    workdir: Path
    popen: subprocess.Popen | None = None
    base_url: str = ""
    returncode: int | None = None
    _lines: "queue.Queue[str | None]" = field(default_factory=queue.Queue)

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"{self.name}.stderr.log"

    def start(self, env: dict[str, str]) -> "Proc":
        with open(self.stderr_path, "wb") as stderr:
            self.popen = subprocess.Popen(
                self.argv,
                env=env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        _LIVE.append(self)
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        seen = []
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"{self.name} exited before listening\n{self.stderr_tail()}")
            seen.append(line)
            if m := _LISTENING.search(line):
                self.base_url = m.group(1)
                return self
        self.kill()
        pytest.fail(f"{self.name} did not start: {seen!r}\n{self.stderr_tail()}")

    def _pump(self) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def stderr_tail(self, max_chars: int = 8_000) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            text = ""
        return f"--- {self.name} stderr ---\n{text[-max_chars:]}"

    def terminate(self) -> int:
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self.returncode = self.popen.returncode
        return self.returncode

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and report.when == "call":
        for proc in _LIVE:
            report.sections.append((f"{proc.name} stderr", proc.stderr_tail()))
    return report


# --- the gateway -------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def request_id(self) -> str:
        return self.headers.get("x-tollgate-request-id", "")


@dataclass
class Gateway:
    proc: Proc
    binary: Path
    config: Path
    db: Path
    client_key: str

    @property
    def url(self) -> str:
        return self.proc.base_url

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    def ui(self, path: str = "") -> str:
        return f"{self.url}/ui/{path.lstrip('/')}"

    def send(self, method: str, path: str, body=None, headers=None) -> Reply:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("content-type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with _OPENER.open(req, timeout=REQUEST_TIMEOUT_S) as resp:
                return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())

    def chat(self, model: str, key: str | None = None, stream: bool = False, **headers) -> Reply:
        body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}]}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return self.send(
            "POST",
            "/v1/chat/completions",
            body,
            {"authorization": f"Bearer {key or self.client_key}", **_mock(headers)},
        )

    def message(self, model: str, key: str | None = None, **headers) -> Reply:
        body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}
        return self.send(
            "POST",
            "/v1/messages",
            body,
            {
                "x-api-key": key or self.client_key,
                "anthropic-version": "2023-06-01",
                **_mock(headers),
            },
        )

    def admin(self, method: str, path: str, body=None) -> Reply:
        return self.send(method, path, body, {"authorization": f"Bearer {ADMIN_KEY}"})

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [str(self.binary), *args, "--config", str(self.config)],
            env=_child_env(TOLLGATE_ADMIN_KEY=ADMIN_KEY, TOLLGATE_AUDIT_KEY=AUDIT_KEY),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, f"tollgate {' '.join(args)}: {out.stderr}"
        return out.stdout

    def report_total_usd(self, since: str) -> str:
        report = json.loads(self.cli("report", "costs", "--since", since, "--format", "json"))
        return report["total"]["cost_usd"]

    def query(self, sql: str, *params):
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def trace_count(self) -> int:
        return self.query("SELECT count(*) FROM traces")[0][0]

    def wait_traces(self, at_least: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.trace_count() < at_least:
            assert time.monotonic() < deadline, f"fewer than {at_least} traces committed"
            time.sleep(0.05)

    def audit_head_seq(self) -> int:
        return self.query("SELECT max(seq) FROM audit_log")[0][0]


def _mock(headers: dict[str, str]) -> dict[str, str]:
    """`mock_usage="prompt=1"` → `x-mock-usage: prompt=1`."""
    assert all(k.startswith("mock_") for k in headers), headers
    return {"x-" + k.replace("_", "-"): str(v) for k, v in headers.items()}


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="session")
def mock_upstream(workdir) -> Proc:
    binary = _executable("MOCK_UPSTREAM_BIN", REPO / "target/debug/mock-upstream")
    proc = Proc("mock-upstream", [str(binary), "--listen", "127.0.0.1:0", "--key", UPSTREAM_KEY], workdir)
    proc.start(_child_env())
    yield proc
    proc.terminate()


def write_config(workdir: Path, upstream: str, extra: str = "") -> tuple[Path, Path]:
    db = workdir / "tollgate.db"
    config = workdir / "tollgate.toml"
    config.write_text(
        f"""\
[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 5

[store]
path = "{db}"

[writer]
batch_max_delay_ms = 2

[audit]
checkpoint_every_entries = 5

[modules.retry]
max_retries = 1
backoff_initial_ms = 5
backoff_max_ms = 10

[[providers]]
name = "openai"
protocol = "openai"
base_url = "{upstream}/v1"
api_key_env = "MOCK_UPSTREAM_KEY"
models = ["{MINI}", "{GPT4O}"]

[[providers]]
name = "anthropic"
protocol = "anthropic"
base_url = "{upstream}/v1"
api_key_env = "MOCK_UPSTREAM_KEY"
models = ["{HAIKU}"]
{PRICES}
{extra}
"""
    )
    return config, db


def start_gateway(workdir: Path, upstream: str, extra: str = "") -> Gateway:
    binary = _executable("TOLLGATE_BIN", REPO / "target/debug/tollgate")
    config, db = write_config(workdir, upstream, extra)
    env = _child_env(TOLLGATE_ADMIN_KEY=ADMIN_KEY, TOLLGATE_AUDIT_KEY=AUDIT_KEY)
    created = subprocess.run(
        [str(binary), "keys", "create", "--name", "browser-suite", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    client_key = created.stdout.strip().splitlines()[-1]
    assert client_key.startswith("tg-"), created.stdout
    proc = Proc("tollgate", [str(binary), "serve", "--config", str(config)], workdir)
    proc.start({**env, "MOCK_UPSTREAM_KEY": UPSTREAM_KEY})
    return Gateway(proc, binary, config, db, client_key)


@pytest.fixture(scope="session")
def gateway(workdir, mock_upstream) -> Gateway:
    gw = start_gateway(workdir, mock_upstream.base_url)
    yield gw
    rc = gw.proc.terminate()
    assert rc == 0, f"tollgate exited with {rc}\n{gw.proc.stderr_tail()}"


@dataclass
class Sent:
    request_id: str
    model: str
    status: int


@pytest.fixture(scope="session")
def traffic(gateway) -> list[Sent]:
    """Real proxied requests over both providers and three models, some failing,
    all committed before the first page is read."""
    before = gateway.trace_count()
    sent: list[Sent] = []

    def keep(model: str, reply: Reply) -> None:
        assert reply.request_id, reply
        sent.append(Sent(reply.request_id, model, reply.status))

    for prompt, completion in ((1234, 567), (89, 1011), (4321, 77)):
        keep(MINI, gateway.chat(MINI, mock_usage=f"prompt={prompt},completion={completion}"))
    keep(MINI, gateway.chat(MINI, stream=True, mock_usage="prompt=555,completion=333"))
    keep(GPT4O, gateway.chat(GPT4O, mock_usage="prompt=2718,completion=2818"))
    keep(GPT4O, gateway.chat(GPT4O, mock_usage="prompt=31,completion=4159"))
    keep(HAIKU, gateway.message(HAIKU, mock_usage="prompt=2653,completion=5897"))
    keep(HAIKU, gateway.message(HAIKU, mock_usage="prompt=9323,completion=8462"))
    keep(MINI, gateway.chat(MINI, mock_status=400))
    keep(GPT4O, gateway.chat(GPT4O, mock_status=503))
    assert [s.status for s in sent] == [200] * 8 + [400, 503]
    gateway.wait_traces(before + len(sent))
    return sent


# --- the browser -------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Browser:
    chromium = _executable("CHROMIUM", Path("/usr/bin/chromium"))
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield b
        b.close()


_PAGE_HEADERS = {
    "server-timing": re.compile(r"^app;dur=\d+(\.\d+)?$"),
    "cache-control": re.compile(r"^no-store$"),
    "x-frame-options": re.compile(r"^DENY$"),
    "content-security-policy": re.compile(r"^default-src 'self'.*frame-ancestors 'none'$"),
    "referrer-policy": re.compile(r"."),
}
"""What every dashboard page carries (ui-contract)."""


class PageWatch:
    """What a page did that a person would call broken: script errors, CSP
    violations, subresources that failed or came from another origin; and
    pages or assets without the headers the contract gives them."""

    def __init__(self, gateway: Gateway) -> None:
        self.origin = gateway.url
        self.problems: list[str] = []

    def attach(self, context: BrowserContext) -> None:
        context.on("page", self._page)

    def _page(self, page: Page) -> None:
        page.on("pageerror", lambda err: self.problems.append(f"page error: {err}"))
        page.on("console", self._console)
        page.on("requestfailed", self._failed)
        page.on("request", self._request)
        page.on("response", self._response)

    def _console(self, msg) -> None:
        # A document answered 401/404 on purpose logs "Failed to load resource";
        # subresources are checked by _response instead.
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            self.problems.append(f"console error: {msg.text}")

    def _failed(self, request) -> None:
        # Navigating away aborts in-flight polls; that is not a broken page.
        if request.failure != "net::ERR_ABORTED":
            self.problems.append(f"request failed: {request.url} ({request.failure})")

    def _request(self, request) -> None:
        if not request.url.startswith(self.origin) and not request.url.startswith("data:"):
            self.problems.append(f"off-origin request: {request.url}")

    def _response(self, response) -> None:
        if response.request.resource_type != "document" and response.status >= 400:
            if not (response.status == 401 and "/ui/audit/verify" in response.url):
                self.problems.append(f"subresource {response.url}: {response.status}")
        path = urlsplit(response.url).path
        headers = response.headers
        if path.startswith("/ui/assets/"):
            if "max-age" not in headers.get("cache-control", ""):
                self.problems.append(f"{path}: no long cache lifetime")
        elif path.startswith("/ui/") and headers.get("content-type", "").startswith("text/html"):
            for name, want in _PAGE_HEADERS.items():
                if not want.search(headers.get(name, "")):
                    self.problems.append(f"{path}: {name}: {headers.get(name)!r}")


@pytest.fixture
def context(browser, gateway):
    """A fresh browser profile (no cookies), checked for broken pages at the end."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(UI_TIMEOUT_MS)
    watch = PageWatch(gateway)
    watch.attach(ctx)
    yield ctx
    ctx.close()
    assert not watch.problems, "\n".join(watch.problems)


def sign_in(page: Page, gateway: Gateway) -> None:
    page.goto(gateway.ui("login"))
    page.fill("form#login input[name=admin_key]", ADMIN_KEY)
    with page.expect_navigation():
        page.click("form#login button[type=submit]")
    assert urlsplit(page.url).path == "/ui/", page.url


@pytest.fixture
def ui(context, gateway, traffic) -> Page:
    """A page signed in through the login form, with the suite's traffic recorded."""
    page = context.new_page()
    sign_in(page, gateway)
    return page


def shot(page: Page, name: str, allow: tuple[str, ...] = ()) -> None:
    """Full-page screenshot to $SCREENSHOT_DIR/NAME.png, and the page's HTML
    checked for secrets (`allow`: values this page may show)."""
    html = page.content()
    for secret in (ADMIN_KEY, UPSTREAM_KEY, *_SUITE_CLIENT_KEYS):
        if secret not in allow:
            assert secret not in html, f"{name}: a secret is in the page"
    out = Path(os.environ.get("SCREENSHOT_DIR") or REPO / "target/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)


_SUITE_CLIENT_KEYS: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _client_keys_are_secrets(gateway):
    _SUITE_CLIENT_KEYS.append(gateway.client_key)
