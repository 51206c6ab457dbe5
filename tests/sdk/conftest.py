"""Shared fixtures for the official-SDK end-to-end tests.

Process layout for a test session:

    official SDK  --(client key)-->  tollgate serve  --(provider key)-->  mock-upstream

The binaries come from TOLLGATE_BIN and MOCK_UPSTREAM_BIN (tests/sdk/run.sh sets
both; it never builds anything). Each spawned process announces itself with one
stdout line ``listening on http://127.0.0.1:PORT``; its stderr goes to a file
that is attached to the report of any failing test.
"""

from __future__ import annotations

import http.client
import os
import queue
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import anthropic
import openai
import pytest

# --- constants shared by the test modules -----------------------------------

UPSTREAM_KEY = "UPSTREAM_SECRET"
"""The only credential mock-upstream accepts; tollgate injects it from MOCK_UPSTREAM_KEY."""

ADMIN_KEY = "tga-sdk-tests-admin-credential-0123"
"""Given to every tollgate as TOLLGATE_ADMIN_KEY (no first-run credential is made)."""

MOCK_TEXT = "Hello from the mock upstream"
CHAT_MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"
CLAUDE_MODEL = "claude-haiku-4-5"
ALIAS = "fast"
MOCK_EMBED_DIM = 8
"""mock-upstream's embedding length when the request names no `dimensions`."""

STARTUP_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 30.0

_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))")

# The clients talk to 127.0.0.1 only; never let an ambient proxy setting reroute them.
for _var in ("NO_PROXY", "no_proxy"):
    _hosts = [h for h in os.environ.get(_var, "").split(",") if h]
    os.environ[_var] = ",".join(_hosts + ["127.0.0.1", "localhost"])


def _issue_client_key() -> tuple[str, Path]:
    """Issues one client key into a template database with the real CLI
    (`tollgate keys create`); every tollgate instance starts from a copy."""
    import tempfile

    binary = _binary("TOLLGATE_BIN", "tollgate")
    template = Path(tempfile.mkdtemp(prefix="tollgate-sdk-")) / "template.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env["TOLLGATE_ADMIN_KEY"] = ADMIN_KEY
    out = subprocess.run(
        [str(binary), "keys", "create", "--name", "sdk-tests", "--db", str(template)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = out.stdout.strip().splitlines()[-1]
    assert key.startswith("tg-"), out.stdout
    return key, template


def _binary(env_var: str, default_name: str) -> Path:
    repo = Path(__file__).resolve().parents[2]
    path = Path(os.environ.get(env_var) or repo / "target" / "debug" / default_name)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.exit(
            f"{env_var}: no executable at {path} (run `cargo build --workspace --bins` first)",
            returncode=2,
        )
    return path


CLIENT_KEY, TEMPLATE_DB = _issue_client_key()
"""The client key the SDK clients send, issued once per session by the real CLI."""


# --- process handling ----------------------------------------------------------

_LIVE: list["Proc"] = []
"""Every process started this session, so failing tests can show their stderr."""


@dataclass
class Proc:
    name: str
    argv: list[str]
    workdir: Path
    popen: subprocess.Popen | None = None
    base_url: str = ""
    port: int = 0
    returncode: int | None = None
    _stderr_path: Path = field(init=False)
    _stdout_lines: "queue.Queue[str | None]" = field(default_factory=queue.Queue)
    _stdout_seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stderr_path = self.workdir / f"{self.name}.stderr.log"

    def start(self, env: dict[str, str]) -> "Proc":
        stderr = open(self._stderr_path, "wb")
        try:
            self.popen = subprocess.Popen(
                self.argv,
                env=env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        finally:
            stderr.close()
        _LIVE.append(self)
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        self._await_listening()
        return self

    def _pump_stdout(self) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        for line in self.popen.stdout:
            self._stdout_lines.put(line)
        self._stdout_lines.put(None)

    def _await_listening(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                pytest.fail(
                    f"{self.name} printed no listening line within {STARTUP_TIMEOUT_S:.0f}s\n"
                    f"stdout: {self._stdout_seen!r}\n{self.stderr_tail()}",
                    pytrace=False,
                )
            try:
                line = self._stdout_lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                rc = self.popen.wait(timeout=5) if self.popen else None
                self.returncode = rc
                pytest.fail(
                    f"{self.name} exited (code {rc}) before printing its listening line\n"
                    f"argv: {self.argv}\nstdout: {self._stdout_seen!r}\n{self.stderr_tail()}",
                    pytrace=False,
                )
            self._stdout_seen.append(line)
            match = _LISTENING.search(line)
            if match:
                self.base_url = match.group(1)
                self.port = int(match.group(2))
                return

    def stderr(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stderr_tail(self, max_chars: int = 20_000) -> str:
        text = self.stderr()
        if len(text) > max_chars:
            text = "...\n" + text[-max_chars:]
        return f"--- {self.name} stderr ({self._stderr_path}) ---\n{text}"

    def terminate(self) -> int:
        """SIGTERM, wait up to SHUTDOWN_TIMEOUT_S, return the exit code (idempotent)."""
        if self.popen is None:
            raise RuntimeError(f"{self.name} was never started")
        if self.returncode is None:
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(timeout=SHUTDOWN_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.kill()
                    raise AssertionError(
                        f"{self.name} did not exit within {SHUTDOWN_TIMEOUT_S:.0f}s of SIGTERM\n"
                        + self.stderr_tail()
                    )
            self.returncode = self.popen.returncode
        return self.returncode

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        if self.popen is not None and self.returncode is None:
            self.returncode = self.popen.returncode


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    # Setup failures already carry the stderr of a process that failed to start.
    if report.failed and report.when == "call":
        for proc in _LIVE:
            report.sections.append((f"{proc.name} stderr", proc.stderr_tail(8_000)))
    return report


def _child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("RUST_BACKTRACE", "1")
    env.setdefault("NO_COLOR", "1")  # readable stderr logs in failure reports
    env.update(extra)
    return env


# --- mock upstream ---------------------------------------------------------------


@pytest.fixture(scope="session")
def mock_upstream(tmp_path_factory) -> Proc:
    binary = _binary("MOCK_UPSTREAM_BIN", "mock-upstream")
    proc = Proc(
        name="mock-upstream",
        argv=[str(binary), "--listen", "127.0.0.1:0", "--key", UPSTREAM_KEY],
        workdir=tmp_path_factory.mktemp("mock-upstream"),
    )
    proc.start(_child_env())
    yield proc
    proc.terminate()
    proc.kill()


@pytest.fixture(scope="session")
def mock_openai(mock_upstream) -> openai.OpenAI:
    """An OpenAI client talking to the mock directly with the provider key (ground truth)."""
    client = openai.OpenAI(
        base_url=f"{mock_upstream.base_url}/v1",
        api_key=UPSTREAM_KEY,
        max_retries=0,
        timeout=REQUEST_TIMEOUT_S,
    )
    yield client
    client.close()


@pytest.fixture(scope="session")
def mock_anthropic(mock_upstream) -> anthropic.Anthropic:
    """An Anthropic client talking to the mock directly with the provider key (ground truth)."""
    client = anthropic.Anthropic(
        base_url=mock_upstream.base_url,
        api_key=UPSTREAM_KEY,
        # anthropic>=2 sends api_key as `Authorization: Bearer`; the mock (like the
        # classic API) wants x-api-key.
        default_headers={"x-api-key": UPSTREAM_KEY},
        max_retries=0,
        timeout=REQUEST_TIMEOUT_S,
    )
    yield client
    client.close()


# --- tollgate ----------------------------------------------------------------------


@dataclass
class Tollgate:
    proc: Proc
    config_path: Path
    db_path: Path

    @property
    def base_url(self) -> str:
        return self.proc.base_url

    def stop(self) -> int:
        """SIGTERM and wait; asserts a clean (code 0) drain."""
        rc = self.proc.terminate()
        assert rc == 0, f"tollgate exited with code {rc} after SIGTERM\n{self.proc.stderr_tail()}"
        return rc


def write_config(workdir: Path, upstream_base_url: str, extra: str = "") -> tuple[Path, Path]:
    """`extra` is whole TOML sections appended to the file."""
    import shutil

    db_path = workdir / "tollgate.db"
    shutil.copyfile(TEMPLATE_DB, db_path)
    config_path = workdir / "tollgate.toml"
    upstream = f"{upstream_base_url}/v1"
    config_path.write_text(
        f"""\
[server]
listen = "127.0.0.1:0"

[store]
path = "{db_path}"

[[providers]]
name = "openai"
protocol = "openai"
base_url = "{upstream}"
api_key_env = "MOCK_UPSTREAM_KEY"
models = ["{CHAT_MODEL}", "{EMBED_MODEL}"]

[[providers]]
name = "anthropic"
protocol = "anthropic"
base_url = "{upstream}"
api_key_env = "MOCK_UPSTREAM_KEY"
models = ["{CLAUDE_MODEL}"]

[aliases]
{ALIAS} = "openai/{CHAT_MODEL}"
"""
        + extra
    )
    return config_path, db_path


def launch_tollgate(tmp_path_factory, upstream_base_url: str, label: str, extra: str = ""):
    """Generator used by the tollgate fixtures: start, yield, SIGTERM and check exit 0.

    upstream_base_url is the mock's (or a relay's) http://127.0.0.1:PORT, without /v1.
    """
    binary = _binary("TOLLGATE_BIN", "tollgate")
    workdir = tmp_path_factory.mktemp(label)
    config_path, db_path = write_config(workdir, upstream_base_url, extra)
    proc = Proc(
        name=label,
        argv=[str(binary), "serve", "--config", str(config_path)],
        workdir=workdir,
    )
    # The client-side key is deliberately not in tollgate's environment at all.
    proc.start(_child_env(MOCK_UPSTREAM_KEY=UPSTREAM_KEY, TOLLGATE_ADMIN_KEY=ADMIN_KEY))
    instance = Tollgate(proc=proc, config_path=config_path, db_path=db_path)
    try:
        yield instance
    finally:
        try:
            instance.stop()
        finally:
            proc.kill()


@pytest.fixture(scope="session")
def tollgate(tmp_path_factory, mock_upstream) -> Tollgate:
    yield from launch_tollgate(tmp_path_factory, mock_upstream.base_url, "tollgate")


@pytest.fixture(scope="session")
def client_key() -> str:
    return CLIENT_KEY


def make_openai_client(tollgate: Tollgate, client_key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{tollgate.base_url}/v1",
        api_key=client_key,
        max_retries=0,
        timeout=REQUEST_TIMEOUT_S,
    )


def make_anthropic_client(tollgate: Tollgate, client_key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=tollgate.base_url,
        api_key=client_key,
        max_retries=0,
        timeout=REQUEST_TIMEOUT_S,
    )


@pytest.fixture(scope="session")
def openai_client(tollgate, client_key) -> openai.OpenAI:
    client = make_openai_client(tollgate, client_key)
    yield client
    client.close()


@pytest.fixture(scope="session")
def anthropic_client(tollgate, client_key) -> anthropic.Anthropic:
    client = make_anthropic_client(tollgate, client_key)
    yield client
    client.close()


# --- a recording relay between tollgate and the mock ----------------------------------

_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
    "upgrade", "content-length", "host",
}


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class UpstreamRelay:
    """Forwards every request to the mock unchanged and remembers what it saw, so a
    test can inspect exactly what tollgate sent upstream. Responses are relayed
    whole (an SSE body arrives at once, which is still a valid stream)."""

    def __init__(self, target_base_url: str) -> None:
        target = urlsplit(target_base_url)
        self.seen: list[SeenRequest] = []
        lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("transfer-encoding", "").lower():
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def _relay(self) -> None:
                body = self._read_body()
                headers = [(k, v) for k, v in self.headers.items()]
                with lock:
                    relay.seen.append(SeenRequest(self.command, self.path, headers, body))
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                try:
                    fwd = {k: v for k, v in headers if k.lower() not in _HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body or None, headers=fwd)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP_BY_HOP:
                            self.send_header(k, v)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
