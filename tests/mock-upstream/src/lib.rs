//! A test stand-in for the OpenAI and Anthropic HTTP APIs.
//!
//! The server speaks the providers' real wire formats (JSON bodies, SSE
//! streams, error shapes) closely enough that official SDKs and the proxy
//! under test cannot tell the difference for the routes it implements:
//!
//! * `POST /v1/chat/completions` (OpenAI, streaming and not)
//! * `POST /v1/embeddings` (OpenAI, `float` and `base64` encodings; a text is
//!   embedded by its words, so paraphrases are close: see [`mock_embedding`])
//! * `GET /v1/models` (OpenAI)
//! * `POST /v1/messages` (Anthropic, streaming and not)
//!
//! Anything else is a 404 in the provider's error shape.
//!
//! Per-request controls (request headers):
//!
//! * `x-mock-status: N` (N >= 400): answer with that status and a
//!   provider-shaped error body (429 adds `retry-after: 1`).
//! * `x-mock-chunk-delay-ms: N`, `x-mock-first-byte-delay-ms: N`: override
//!   [`MockConfig::chunk_delay`] / [`MockConfig::first_byte_delay`].
//! * `x-mock-words: N`: the reply is `w1 w2 ... wN` (one stream event per word).
//! * `x-mock-reply: TEXT`: the reply is TEXT (the header's visible ASCII),
//!   one stream event per space-separated word unless split otherwise.
//! * `x-mock-logprobs: 1`: OpenAI chat answers carry `logprobs` (one entry
//!   per reply piece, its token the piece's text), as with `logprobs: true`.
//! * `x-mock-split-bytes: N`: a stream's reply text (and a tool call's
//!   arguments) goes out in events of N bytes each (the last may be
//!   shorter; never inside a UTF-8 character), so a value in the text can
//!   straddle several events.
//! * `x-mock-usage: prompt=12,completion=5,cached=3,reasoning=2,cache_write=4`:
//!   override any subset of the reported usage. Each key is emitted where
//!   the real API puts it (keys a protocol has no place for are ignored):
//!   * `prompt`, `completion`: `prompt_tokens`/`completion_tokens` (OpenAI,
//!     totals that include the audio/image/cached/reasoning parts; by
//!     default they grow by `audio_in` + `image` and `audio_out`);
//!     Anthropic `input_tokens` (the uncached part) and `output_tokens`.
//!   * `cached` (`cache_read`): OpenAI `prompt_tokens_details.cached_tokens`,
//!     Anthropic `cache_read_input_tokens`. `reasoning`: OpenAI
//!     `completion_tokens_details.reasoning_tokens`.
//!   * `cache_write=N` (5-minute writes) and `cache_write_1h=N` (1-hour
//!     writes), Anthropic: `cache_creation.ephemeral_5m_input_tokens` /
//!     `ephemeral_1h_input_tokens`, and their sum as
//!     `cache_creation_input_tokens`.
//!   * `web_search=N`, Anthropic: `server_tool_use.web_search_requests`
//!     (non-stream usage and `message_delta`). OpenAI chat completions
//!     report no count (a `*-search-*` model searches once per request).
//!   * `audio_in=N`, `audio_out=N`, `image=N`, OpenAI:
//!     `prompt_tokens_details.audio_tokens`,
//!     `completion_tokens_details.audio_tokens`,
//!     `prompt_tokens_details.image_tokens` (emitted only when given: the
//!     API does not document it on chat completions).
//!   * `service_tier=NAME`: the tier the answer says it was served on —
//!     OpenAI `service_tier` on the completion object and on every stream
//!     chunk, Anthropic `usage.service_tier`. Without it OpenAI answers the
//!     request's `service_tier` (`auto` or none → `default`) and Anthropic
//!     answers `standard`; with it the served tier can differ from the
//!     requested one.
//!   * `delta_input=0`, Anthropic streams: `message_delta`'s usage carries
//!     only `output_tokens` (and `server_tool_use`), as older API versions
//!     sent it; by default it restates the input side cumulatively
//!     (`input_tokens`, `cache_creation_input_tokens`,
//!     `cache_read_input_tokens`), as the current API does. `message_start`
//!     always has the input side, the `cache_creation` breakdown and the
//!     tier.
//! * `x-mock-break-after: N`: abort a stream's body with an error after N
//!   events (the client sees a truncated body, not a clean end).
//! * `x-mock-hold-open-ms: N`: after a stream's last event, keep the body
//!   open N ms before ending it (a slow connection close after `[DONE]`).
//! * `x-mock-redirect-to: URL`: answer `307 Temporary Redirect` to URL (a
//!   moved or misconfigured endpoint), before checking credentials.
//! * `x-mock-huge-event-bytes: N`: a stream carries, after its first event,
//!   one content event whose text is N `x` characters, sent in pieces of
//!   64 KiB (each piece counts as an event for the chunk delay and
//!   `x-mock-break-after`). For oversized-event handling.
//! * `x-mock-echo-key: 1`: answer with an error (the `x-mock-status`, else
//!   401) whose message repeats the credential received, in full and in
//!   the masked forms of [`masked_forms`] — as some upstreams echo keys.
//! * `x-mock-error-padding: N`: an error message (from `x-mock-status` or
//!   `x-mock-echo-key`) ends with N extra `.` characters (a large error
//!   body).
//! * `x-mock-cut-body: 1`: a 2xx JSON (non-stream) answer declares its full
//!   `content-length` but only its first half is sent before the body
//!   aborts (a connection cut mid-answer).
//! * `x-mock-account-headers: 1`: add the headers that name a provider
//!   account (`openai-organization`, `openai-project`,
//!   `anthropic-organization-id`) and the rate-limit and processing headers
//!   of [`ACCOUNT_AND_INFO_HEADERS`] to the response.
//! * `x-mock-tool-call: NAME`: the answer calls tool NAME with the input
//!   `{"text": REPLY}`, in the real shapes: OpenAI `tool_calls` (content
//!   null, finish `tool_calls`; streamed as id and name first, then the
//!   arguments in pieces), Anthropic a `text` block followed by a
//!   `tool_use` block (stop `tool_use`; streamed as `input_json_delta`s).
//!
//! Per-instance control (not a header: a proxy forwards the client's
//! headers to every upstream it tries, so a header cannot fail one upstream
//! and not another): [`MockConfig::fail_status`] (binary:
//! `--fail-status N`), changed at runtime with
//! [`MockUpstream::set_fail_status`], answers *every* proxied route with
//! that status and a provider-shaped error — a provider that is down. A
//! 429 adds `retry-after: 1` as with `x-mock-status`.
//!
//! [`MockUpstream::stream_bytes_sent`] counts the stream bytes handed to
//! connections, to tell how far the mock is in sending a stream.
//!
//! Control routes, for tests that run the `mock-upstream` binary in another
//! process (the SDK tests) and so cannot call [`MockUpstream`]'s methods.
//! They live under `/__mock/`, outside the `/v1` base URL a proxy forwards
//! to, are not counted as requests, and need no credential:
//!
//! * `POST /__mock/fail-status` with a JSON number body: as
//!   [`MockUpstream::set_fail_status`] (400..=599 fails every proxied route
//!   with that status from now on; `0` answers normally again). Answers
//!   `204`, or `400` for any other body.
//! * `GET /__mock/stats`: `{"requests": N, "fail_status": S}` — N as
//!   [`MockUpstream::request_count`], S the status in force or `null`.
//!
//! When [`MockConfig::expect_key`] is set, OpenAI routes require
//! `authorization: Bearer KEY` and the Anthropic route requires
//! `x-api-key: KEY` (or `authorization: Bearer KEY`, as some Anthropic SDK
//! versions send) plus an `anthropic-version` header.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Sleep;

/// The reply text used when `x-mock-words` is not given.
pub const DEFAULT_REPLY: &str = "Hello from the mock upstream";

/// Fixed `created` timestamp used in chat completion objects.
const CREATED: u64 = 1_700_000_000;

/// Largest request body the mock accepts (bytes).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Upper bound for `x-mock-words`, to keep a typo from eating all memory.
const MAX_WORDS: usize = 1_000_000;

/// Upper bound for embedding `dimensions`.
const MAX_DIMENSIONS: u64 = 65_536;

/// Upper bound for `x-mock-huge-event-bytes`.
const MAX_HUGE_EVENT: usize = 1 << 30;

/// The pieces a huge event is sent in.
const HUGE_PIECE: usize = 64 * 1024;

/// The headers `x-mock-account-headers: 1` adds: the first three name the
/// provider account, the rest are rate-limit and processing information.
pub const ACCOUNT_AND_INFO_HEADERS: [(&str, &str); 7] = [
    ("openai-organization", "org-mockaccount123"),
    ("openai-project", "proj_mockproject456"),
    ("anthropic-organization-id", "0b6d2f7e-mock-org-id"),
    ("x-ratelimit-remaining-requests", "4999"),
    ("anthropic-ratelimit-requests-remaining", "49"),
    ("openai-processing-ms", "12"),
    ("openai-version", "2020-10-01"),
];

/// How upstreams print a key they refuse: OpenAI's
/// `sk-abc12*****…wxyz` (a prefix, stars, the last four) and a shorter
/// `sk-ab...wxyz`.
pub fn masked_forms(key: &str) -> [String; 2] {
    let (head8, head5) = (&key[..key.len().min(8)], &key[..key.len().min(5)]);
    let tail = &key[key.len().saturating_sub(4)..];
    [
        format!("{head8}{}{tail}", "*".repeat(39)),
        format!("{head5}...{tail}"),
    ]
}

/// Server configuration.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Pause between stream events (overridden by `x-mock-chunk-delay-ms`).
    pub chunk_delay: Duration,
    /// Pause before the response headers (overridden by `x-mock-first-byte-delay-ms`).
    pub first_byte_delay: Duration,
    /// If set, requests must carry this provider credential.
    pub expect_key: Option<String>,
    /// Keep a copy of every request for [`MockUpstream::requests`]. On by default;
    /// turn it off for load tests.
    pub record: bool,
    /// Answer every proxied route with this status (>= 400), as a failing
    /// provider does; `None` (default): answer normally.
    pub fail_status: Option<u16>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            chunk_delay: Duration::ZERO,
            first_byte_delay: Duration::ZERO,
            expect_key: None,
            record: true,
            fail_status: None,
        }
    }
}

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// The URI path, without the query string.
    pub path: String,
    /// Header names are lowercase; values are lossily decoded as UTF-8.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, or `Value::Null` if it is not valid JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

struct Shared {
    cfg: MockConfig,
    requests: Mutex<Vec<RecordedRequest>>,
    request_count: AtomicUsize,
    completed: AtomicUsize,
    cancelled: AtomicUsize,
    next_id: AtomicU64,
    stream_bytes: AtomicU64,
    /// [`MockConfig::fail_status`], changeable at runtime; 0: none.
    fail_status: std::sync::atomic::AtomicU16,
}

impl Shared {
    fn recorded(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        // A panic while holding the lock cannot leave the Vec inconsistent.
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A running mock server. Dropping it shuts the server (and all its
/// connections) down.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    // Dropping the sender tells the accept loop and every connection to stop.
    _shutdown: watch::Sender<()>,
}

impl MockUpstream {
    /// Start on `127.0.0.1:0` with the default config.
    pub async fn start() -> MockUpstream {
        Self::start_with(MockConfig::default()).await
    }

    /// Start on `127.0.0.1:0` with `cfg`.
    pub async fn start_with(cfg: MockConfig) -> MockUpstream {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), cfg)
            .await
            .expect("mock upstream: bind 127.0.0.1:0")
    }

    /// Start on `127.0.0.1:0`, requiring `key` as the provider credential.
    pub async fn start_expecting(key: &str) -> MockUpstream {
        Self::start_with(MockConfig {
            expect_key: Some(key.to_owned()),
            ..MockConfig::default()
        })
        .await
    }

    /// Start on `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, cfg: MockConfig) -> std::io::Result<MockUpstream> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            request_count: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            stream_bytes: AtomicU64::new(0),
            fail_status: std::sync::atomic::AtomicU16::new(cfg.fail_status.unwrap_or(0)),
            cfg,
        });
        let (tx, rx) = watch::channel(());
        let task = tokio::spawn(accept_loop(listener, shared.clone(), rx));
        Ok(MockUpstream {
            addr,
            shared,
            task,
            _shutdown: tx,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/v1`, suitable as an OpenAI/Anthropic base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far, in arrival order (empty when
    /// recording is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorded().clone()
    }

    /// Number of requests received (counted even when recording is off).
    pub fn request_count(&self) -> usize {
        self.shared.request_count.load(Ordering::SeqCst)
    }

    /// From now on, answer every proxied route with `status` (a provider
    /// that is down), or normally again with `None`.
    pub fn set_fail_status(&self, status: Option<u16>) {
        self.shared
            .fail_status
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// Bytes of stream bodies handed to connections so far.
    pub fn stream_bytes_sent(&self) -> u64 {
        self.shared.stream_bytes.load(Ordering::SeqCst)
    }

    /// Streams whose every event was handed to the connection.
    pub fn completed_streams(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// Streams dropped by the connection before their last event (the
    /// client went away). Deliberate `x-mock-break-after` aborts are not
    /// counted here.
    pub fn cancelled_streams(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// Poll until at least `n` streams were cancelled; `false` on timeout.
    pub async fn wait_cancelled_streams(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.cancelled_streams() >= n {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Usually EMFILE under load; back off briefly and go on.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let builder = builder.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(shared.clone(), req));
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

// ---------------------------------------------------------------------------
// Response body

/// The response body: either a complete buffer or a paced event stream.
pub struct MockBody(BodyKind);

enum BodyKind {
    Full(Option<Bytes>),
    Events(EventStream),
    /// The first part of a body of `len` bytes, then (after a pause, so
    /// that part is flushed with the head) an error.
    Cut {
        half: Option<Bytes>,
        len: u64,
        pause: Pin<Box<Sleep>>,
    },
}

struct EventStream {
    events: std::vec::IntoIter<Bytes>,
    delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Abort with an error once this many events are out (already clamped
    /// to the number of events).
    break_after: Option<usize>,
    /// Pause after the last event before the body ends.
    hold_open: Option<Duration>,
    sent: usize,
    yielded: bool,
    done: bool,
    shared: Arc<Shared>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug)]
struct MockBreak;

impl std::fmt::Display for MockBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mock upstream: stream deliberately broken (x-mock-break-after)")
    }
}

impl std::error::Error for MockBreak {}

impl MockBody {
    fn full(b: impl Into<Bytes>) -> Self {
        MockBody(BodyKind::Full(Some(b.into())))
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.get_mut().0 {
            BodyKind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            BodyKind::Events(s) => s.poll_event(cx),
            BodyKind::Cut { half, pause, .. } => match half.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => match pause.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Some(Err(
                        "mock upstream: body deliberately cut (x-mock-cut-body)".into(),
                    ))),
                },
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyKind::Full(b) => b.is_none(),
            BodyKind::Events(s) => s.done,
            BodyKind::Cut { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyKind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            BodyKind::Full(None) => SizeHint::with_exact(0),
            BodyKind::Events(_) => SizeHint::default(),
            BodyKind::Cut { len, .. } => SizeHint::with_exact(*len),
        }
    }
}

impl EventStream {
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(sleep) = self.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        if self.break_after == Some(self.sent) {
            if !self.yielded {
                // Hand control back once so the connection flushes the
                // events already written before the abort tears it down.
                self.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.done = true;
            return Poll::Ready(Some(Err(Box::new(MockBreak))));
        }
        let Some(event) = self.events.next() else {
            // An empty event list, or the end of a held-open body.
            self.finish();
            return Poll::Ready(None);
        };
        self.sent += 1;
        let last = self.events.len() == 0;
        let more = !last || self.break_after.is_some() || self.hold_open.is_some();
        if !more {
            self.finish();
        } else if let Some(hold) = self
            .hold_open
            .filter(|_| last && self.break_after.is_none())
        {
            self.sleep = Some(Box::pin(tokio::time::sleep(hold)));
        } else if !self.delay.is_zero() {
            self.sleep = Some(Box::pin(tokio::time::sleep(self.delay)));
        }
        self.shared
            .stream_bytes
            .fetch_add(event.len() as u64, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(event))))
    }

    fn finish(&mut self) {
        self.done = true;
        self.shared.completed.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if !self.done {
            self.shared.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

// ---------------------------------------------------------------------------
// Request handling

#[derive(Clone, Copy, PartialEq, Eq)]
enum Provider {
    OpenAi,
    Anthropic,
}

#[derive(Clone, Copy)]
enum Route {
    Chat,
    Embeddings,
    Models,
    Messages,
}

/// What usage objects report.
#[derive(Clone, Debug)]
struct Usage {
    prompt: u64,
    completion: u64,
    cached: u64,
    reasoning: u64,
    /// 5-minute cache writes (Anthropic).
    cache_write: u64,
    cache_write_1h: u64,
    web_search: Option<u64>,
    audio_in: u64,
    audio_out: u64,
    image: Option<u64>,
    /// The served tier; `None`: the protocol's default answer.
    service_tier: Option<String>,
    /// Anthropic `message_delta` restates the input side.
    delta_input: bool,
}

impl Default for Usage {
    fn default() -> Self {
        Usage {
            prompt: 0,
            completion: 0,
            cached: 0,
            reasoning: 0,
            cache_write: 0,
            cache_write_1h: 0,
            web_search: None,
            audio_in: 0,
            audio_out: 0,
            image: None,
            service_tier: None,
            delta_input: true,
        }
    }
}

/// Per-request settings taken from `x-mock-*` headers.
struct Controls {
    status: Option<StatusCode>,
    chunk_delay: Duration,
    first_byte_delay: Duration,
    words: Option<usize>,
    usage: UsageOverride,
    break_after: Option<usize>,
    hold_open: Option<Duration>,
    huge_event: Option<usize>,
    echo_key: bool,
    account_headers: bool,
    error_padding: usize,
    tool_call: Option<String>,
    cut_body: bool,
    reply: Option<String>,
    split_bytes: Option<usize>,
    logprobs: bool,
}

#[derive(Default)]
struct UsageOverride {
    prompt: Option<u64>,
    completion: Option<u64>,
    cached: Option<u64>,
    reasoning: Option<u64>,
    cache_write: Option<u64>,
    cache_write_1h: Option<u64>,
    web_search: Option<u64>,
    audio_in: Option<u64>,
    audio_out: Option<u64>,
    image: Option<u64>,
    service_tier: Option<String>,
    delta_input: Option<bool>,
}

impl UsageOverride {
    fn parse(s: &str) -> Self {
        let mut o = UsageOverride::default();
        for part in s.split(',') {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "service_tier" {
                o.service_tier = Some(v.to_owned());
                continue;
            }
            let Ok(v) = v.parse::<u64>() else {
                continue;
            };
            match k.as_str() {
                "prompt" | "input" => o.prompt = Some(v),
                "completion" | "output" => o.completion = Some(v),
                "cached" | "cache_read" => o.cached = Some(v),
                "reasoning" => o.reasoning = Some(v),
                "cache_write" | "cache_creation" => o.cache_write = Some(v),
                "cache_write_1h" => o.cache_write_1h = Some(v),
                "web_search" => o.web_search = Some(v),
                "audio_in" => o.audio_in = Some(v),
                "audio_out" => o.audio_out = Some(v),
                "image" => o.image = Some(v),
                "delta_input" => o.delta_input = Some(v != 0),
                _ => {}
            }
        }
        o
    }

    /// The reported usage, from the defaults of the answer (`prompt`,
    /// `completion` before any audio or image parts).
    fn apply(&self, prompt: u64, completion: u64) -> Usage {
        let audio_in = self.audio_in.unwrap_or(0);
        let audio_out = self.audio_out.unwrap_or(0);
        Usage {
            prompt: self
                .prompt
                .unwrap_or(prompt + audio_in + self.image.unwrap_or(0)),
            completion: self.completion.unwrap_or(completion + audio_out),
            cached: self.cached.unwrap_or(0),
            reasoning: self.reasoning.unwrap_or(0),
            cache_write: self.cache_write.unwrap_or(0),
            cache_write_1h: self.cache_write_1h.unwrap_or(0),
            web_search: self.web_search,
            audio_in,
            audio_out,
            image: self.image,
            service_tier: self.service_tier.clone(),
            delta_input: self.delta_input.unwrap_or(true),
        }
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn header_num<T: std::str::FromStr>(h: &HeaderMap, name: &str) -> Option<T> {
    header_str(h, name).and_then(|v| v.parse().ok())
}

impl Controls {
    fn from_headers(h: &HeaderMap, cfg: &MockConfig) -> Self {
        Controls {
            status: header_num::<u16>(h, "x-mock-status")
                .and_then(|s| StatusCode::from_u16(s).ok())
                .filter(|s| s.as_u16() >= 400),
            chunk_delay: header_num::<u64>(h, "x-mock-chunk-delay-ms")
                .map(Duration::from_millis)
                .unwrap_or(cfg.chunk_delay),
            first_byte_delay: header_num::<u64>(h, "x-mock-first-byte-delay-ms")
                .map(Duration::from_millis)
                .unwrap_or(cfg.first_byte_delay),
            words: header_num::<usize>(h, "x-mock-words").map(|n| n.min(MAX_WORDS)),
            usage: header_str(h, "x-mock-usage")
                .map(UsageOverride::parse)
                .unwrap_or_default(),
            break_after: header_num::<usize>(h, "x-mock-break-after"),
            hold_open: header_num::<u64>(h, "x-mock-hold-open-ms").map(Duration::from_millis),
            huge_event: header_num::<usize>(h, "x-mock-huge-event-bytes")
                .map(|n| n.min(MAX_HUGE_EVENT)),
            echo_key: header_str(h, "x-mock-echo-key") == Some("1"),
            account_headers: header_str(h, "x-mock-account-headers") == Some("1"),
            error_padding: header_num::<usize>(h, "x-mock-error-padding")
                .unwrap_or(0)
                .min(MAX_BODY),
            tool_call: header_str(h, "x-mock-tool-call").map(str::to_owned),
            cut_body: header_str(h, "x-mock-cut-body") == Some("1"),
            reply: header_str(h, "x-mock-reply").map(str::to_owned),
            split_bytes: header_num::<usize>(h, "x-mock-split-bytes").filter(|&n| n > 0),
            logprobs: header_str(h, "x-mock-logprobs") == Some("1"),
        }
    }

    /// The huge event's text, in pieces, between `head` and `tail`.
    fn huge_event(&self, head: String, tail: &'static str) -> Vec<Bytes> {
        let Some(n) = self.huge_event else {
            return Vec::new();
        };
        let piece = Bytes::from(vec![b'x'; HUGE_PIECE]);
        let mut out = vec![Bytes::from(head)];
        let mut left = n;
        while left > 0 {
            let len = left.min(HUGE_PIECE);
            out.push(piece.slice(..len));
            left -= len;
        }
        out.push(Bytes::from_static(tail.as_bytes()));
        out
    }

    /// The reply split into stream pieces: every word but the last keeps a
    /// trailing space, so the pieces concatenate to the full text.
    fn reply_pieces(&self) -> Vec<String> {
        if let (Some(text), Some(n)) = (&self.reply, self.split_bytes) {
            return split_bytes(text, n);
        }
        let words: Vec<String> = match (&self.reply, self.words) {
            (Some(text), _) => text.split(' ').map(str::to_owned).collect(),
            (None, Some(n)) => (1..=n).map(|i| format!("w{i}")).collect(),
            (None, None) => DEFAULT_REPLY.split(' ').map(str::to_owned).collect(),
        };
        let last = words.len().saturating_sub(1);
        words
            .into_iter()
            .enumerate()
            .map(|(i, w)| if i < last { w + " " } else { w })
            .collect()
    }

    /// The tool call's arguments (`{"text": REPLY}`) in stream pieces that
    /// concatenate to the JSON text.
    fn tool_argument_pieces(&self) -> Vec<String> {
        if let Some(n) = self.split_bytes {
            let whole = format!("{{\"text\": {}}}", json_str(&self.reply_pieces().concat()));
            return split_bytes(&whole, n);
        }
        let mut out = vec!["{\"text\": \"".to_owned()];
        for p in self.reply_pieces() {
            let quoted = json_str(&p);
            out.push(quoted[1..quoted.len() - 1].to_owned());
        }
        out.push("\"}".to_owned());
        out
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    if req.uri().path().starts_with(CONTROL_PREFIX) {
        return Ok(control(&shared, req).await);
    }
    shared.request_count.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Some(c.to_bytes()),
        Err(_) => None,
    };
    if shared.cfg.record {
        let rec = RecordedRequest {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.clone().unwrap_or_default(),
        };
        shared.recorded().push(rec);
    }

    let mut ctl = Controls::from_headers(&parts.headers, &shared.cfg);
    if let Some(status) = StatusCode::from_u16(shared.fail_status.load(Ordering::SeqCst))
        .ok()
        .filter(|s| s.as_u16() >= 400)
    {
        ctl.status = Some(status);
    }
    if !ctl.first_byte_delay.is_zero() {
        tokio::time::sleep(ctl.first_byte_delay).await;
    }

    let path = parts.uri.path();
    let route = match (&parts.method, path.trim_end_matches('/')) {
        (&Method::POST, "/v1/chat/completions") => Some(Route::Chat),
        (&Method::POST, "/v1/embeddings") => Some(Route::Embeddings),
        (&Method::GET, "/v1/models") => Some(Route::Models),
        (&Method::POST, "/v1/messages") => Some(Route::Messages),
        _ => None,
    };
    let provider = match route {
        Some(Route::Messages) => Provider::Anthropic,
        Some(_) => Provider::OpenAi,
        None if path.starts_with("/v1/messages")
            || parts.headers.contains_key("anthropic-version") =>
        {
            Provider::Anthropic
        }
        None => Provider::OpenAi,
    };
    let id = shared.next_id();
    let err = |status: StatusCode, msg: &str| error_response(provider, id, status, msg);

    let Some(route) = route else {
        let msg = match provider {
            Provider::OpenAi => format!("Invalid URL ({} {})", parts.method, path),
            Provider::Anthropic => "Not Found".to_owned(),
        };
        return Ok(err(StatusCode::NOT_FOUND, &msg));
    };

    if let Some(location) =
        header_str(&parts.headers, "x-mock-redirect-to").and_then(|l| HeaderValue::from_str(l).ok())
    {
        let mut resp = base_response(
            provider,
            id,
            StatusCode::TEMPORARY_REDIRECT,
            "text/plain",
            MockBody::full("moved"),
        );
        resp.headers_mut().insert(http::header::LOCATION, location);
        return Ok(resp);
    }

    if let Some(key) = &shared.cfg.expect_key
        && let Some(msg) = auth_failure(provider, &parts.headers, key)
    {
        return Ok(err(StatusCode::UNAUTHORIZED, msg));
    }

    if ctl.echo_key {
        let got = header_str(&parts.headers, "x-api-key")
            .or_else(|| {
                header_str(&parts.headers, "authorization").and_then(|v| v.strip_prefix("Bearer "))
            })
            .unwrap_or("");
        let [masked, short] = masked_forms(got);
        let status = ctl.status.unwrap_or(StatusCode::UNAUTHORIZED);
        let msg = format!(
            "Incorrect API key provided: {masked}. You sent {got} (also shown as {short}).{}",
            ".".repeat(ctl.error_padding)
        );
        return Ok(with_account_headers(err(status, &msg), &ctl));
    }

    if let Some(status) = ctl.status {
        let msg = mock_status_message(status) + &".".repeat(ctl.error_padding);
        return Ok(with_account_headers(err(status, &msg), &ctl));
    }

    let req = if let Route::Models = route {
        Value::Null
    } else {
        let Some(body) = body else {
            return Ok(err(
                StatusCode::BAD_REQUEST,
                "Could not read the request body.",
            ));
        };
        match serde_json::from_slice::<Value>(&body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return Ok(err(
                    StatusCode::BAD_REQUEST,
                    "The request body must be a JSON object.",
                ));
            }
            Err(e) => {
                let msg = match provider {
                    Provider::OpenAi => {
                        format!("We could not parse the JSON body of your request. ({e})")
                    }
                    Provider::Anthropic => {
                        format!("There was an issue with your request JSON: {e}")
                    }
                };
                return Ok(err(StatusCode::BAD_REQUEST, &msg));
            }
        }
    };
    let resp = match route {
        Route::Models => Ok(json_response(provider, id, models_list())),
        Route::Chat => chat(&shared, id, &req, &ctl),
        Route::Embeddings => embeddings(id, &req, &ctl),
        Route::Messages => messages(&shared, id, &req, &ctl),
    };
    let mut resp = resp.unwrap_or_else(|msg| err(StatusCode::BAD_REQUEST, &msg));
    if ctl.cut_body
        && resp.status().is_success()
        && let BodyKind::Full(Some(full)) = &mut resp.body_mut().0
    {
        let len = full.len() as u64;
        let half = full.slice(..full.len() / 2);
        resp.body_mut().0 = BodyKind::Cut {
            half: Some(half),
            len,
            pause: Box::pin(tokio::time::sleep(Duration::from_millis(50))),
        };
    }
    Ok(with_account_headers(resp, &ctl))
}

fn with_account_headers(mut resp: Response<MockBody>, ctl: &Controls) -> Response<MockBody> {
    if ctl.account_headers {
        for (name, value) in ACCOUNT_AND_INFO_HEADERS {
            resp.headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
    }
    resp
}

fn auth_failure(provider: Provider, h: &HeaderMap, key: &str) -> Option<&'static str> {
    match provider {
        Provider::OpenAi => {
            let got = header_str(h, "authorization");
            match got.and_then(|v| v.strip_prefix("Bearer ")) {
                None => Some(
                    "You didn't provide an API key. You need to provide your API key in an \
                     Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                ),
                Some(k) if k.trim() != key => Some("Incorrect API key provided."),
                Some(_) => None,
            }
        }
        Provider::Anthropic => {
            // `x-api-key` is the documented header; newer SDKs may send the
            // key as `authorization: Bearer` instead, which the API accepts.
            let got = header_str(h, "x-api-key")
                .or_else(|| header_str(h, "authorization").and_then(|v| v.strip_prefix("Bearer ")));
            match got {
                None => Some("x-api-key header is required"),
                Some(k) if k.trim() != key => Some("invalid x-api-key"),
                Some(_) if !h.contains_key("anthropic-version") => {
                    Some("anthropic-version: header is required")
                }
                Some(_) => None,
            }
        }
    }
}

fn mock_status_message(status: StatusCode) -> String {
    match status.as_u16() {
        429 => "Rate limit reached (mock upstream).".to_owned(),
        401 => "Incorrect API key provided (mock upstream).".to_owned(),
        529 => "Overloaded (mock upstream).".to_owned(),
        s if s >= 500 => {
            "The server had an error while processing your request (mock upstream).".to_owned()
        }
        s => format!("Mock upstream error {s}."),
    }
}

fn request_id(id: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("req_mock{id}")).expect("ascii header value")
}

fn id_header(provider: Provider) -> HeaderName {
    match provider {
        Provider::OpenAi => HeaderName::from_static("x-request-id"),
        Provider::Anthropic => HeaderName::from_static("request-id"),
    }
}

/// Where the control routes live (see the module docs).
const CONTROL_PREFIX: &str = "/__mock/";

/// Serves a control route: changes or reports this instance's state.
async fn control(shared: &Shared, req: Request<Incoming>) -> Response<MockBody> {
    let reply = |status: StatusCode, body: Option<Value>| {
        let mut resp = Response::new(MockBody::full(
            body.map(|v| v.to_string()).unwrap_or_default(),
        ));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    };
    let (parts, body) = req.into_parts();
    match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/__mock/stats") => {
            let fail = shared.fail_status.load(Ordering::SeqCst);
            reply(
                StatusCode::OK,
                Some(json!({
                    "requests": shared.request_count.load(Ordering::SeqCst),
                    "fail_status": (fail != 0).then_some(fail),
                })),
            )
        }
        (&Method::POST, "/__mock/fail-status") => {
            let body = http_body_util::Limited::new(body, 1024)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let status = serde_json::from_slice::<u16>(&body)
                .ok()
                .filter(|s| *s == 0 || (400..=599).contains(s));
            match status {
                Some(s) => {
                    shared.fail_status.store(s, Ordering::SeqCst);
                    reply(StatusCode::NO_CONTENT, None)
                }
                None => reply(
                    StatusCode::BAD_REQUEST,
                    Some(json!({"error": "the body must be a JSON number: 0 or 400..=599"})),
                ),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            Some(json!({"error": "unknown control route"})),
        ),
    }
}

fn base_response(
    provider: Provider,
    id: u64,
    status: StatusCode,
    content_type: &'static str,
    body: MockBody,
) -> Response<MockBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(id_header(provider), request_id(id));
    resp
}

fn json_response(provider: Provider, id: u64, v: Value) -> Response<MockBody> {
    let body = serde_json::to_vec(&v).expect("serialize json");
    base_response(
        provider,
        id,
        StatusCode::OK,
        "application/json",
        MockBody::full(body),
    )
}

fn error_response(
    provider: Provider,
    id: u64,
    status: StatusCode,
    msg: &str,
) -> Response<MockBody> {
    let code = status.as_u16();
    let v = match provider {
        Provider::OpenAi => {
            let (ty, c) = match code {
                401 => ("authentication_error", Value::from("invalid_api_key")),
                403 => ("permission_error", Value::Null),
                429 => ("rate_limit_error", Value::from("rate_limit_exceeded")),
                500.. => ("server_error", Value::Null),
                _ => ("invalid_request_error", Value::Null),
            };
            json!({"error": {"message": msg, "type": ty, "param": null, "code": c}})
        }
        Provider::Anthropic => {
            let ty = match code {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                503 | 529 => "overloaded_error",
                500.. => "api_error",
                _ => "invalid_request_error",
            };
            json!({
                "type": "error",
                "error": {"type": ty, "message": msg},
                "request_id": format!("req_mock{id}"),
            })
        }
    };
    let body = serde_json::to_vec(&v).expect("serialize json");
    let mut resp = base_response(
        provider,
        id,
        status,
        "application/json",
        MockBody::full(body),
    );
    if code == 429 {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}

fn stream_response(
    provider: Provider,
    id: u64,
    shared: &Arc<Shared>,
    events: Vec<Bytes>,
    ctl: &Controls,
) -> Response<MockBody> {
    let break_after = ctl.break_after.map(|n| n.min(events.len()));
    let body = MockBody(BodyKind::Events(EventStream {
        events: events.into_iter(),
        delay: ctl.chunk_delay,
        sleep: None,
        break_after,
        hold_open: ctl.hold_open,
        sent: 0,
        yielded: false,
        done: false,
        shared: shared.clone(),
    }));
    let mut resp = base_response(provider, id, StatusCode::OK, "text/event-stream", body);
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("serialize string")
}

fn model_of(req: &Value) -> Result<&str, String> {
    match req.get("model") {
        Some(Value::String(m)) => Ok(m),
        None => Err("you must provide a model parameter".to_owned()),
        Some(_) => Err("model: expected a string".to_owned()),
    }
}

fn message_count(req: &Value) -> u64 {
    req.get("messages")
        .and_then(Value::as_array)
        .map_or(0, |a| a.len() as u64)
}

fn openai_usage(u: &Usage) -> Value {
    let mut prompt_details = json!({"cached_tokens": u.cached, "audio_tokens": u.audio_in});
    if let Some(image) = u.image {
        prompt_details["image_tokens"] = image.into();
    }
    json!({
        "prompt_tokens": u.prompt,
        "completion_tokens": u.completion,
        "total_tokens": u.prompt + u.completion,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning,
            "audio_tokens": u.audio_out,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    })
}

/// The tier an OpenAI answer reports: the override, else the requested
/// tier, where `auto` (and no request) is served as `default`.
fn openai_served_tier(req: &Value, u: &Usage) -> String {
    if let Some(t) = &u.service_tier {
        return t.clone();
    }
    match req.get("service_tier").and_then(Value::as_str) {
        None | Some("auto") => "default".to_owned(),
        Some(t) => t.to_owned(),
    }
}

/// Where an Anthropic usage object goes.
#[derive(Clone, Copy, PartialEq)]
enum UsageAt {
    /// A whole message (non-stream).
    Message,
    /// `message_start`: the input side, the cache-write breakdown and the
    /// tier; output so far is 1 token and no server tool has run yet.
    Start,
    /// `message_delta`: cumulative output and server tool counts, and the
    /// input side unless `delta_input=0`.
    Delta,
}

fn anthropic_usage(u: &Usage, at: UsageAt) -> Value {
    let mut v = serde_json::Map::new();
    if at != UsageAt::Delta || u.delta_input {
        v.insert("input_tokens".into(), u.prompt.into());
        v.insert(
            "cache_creation_input_tokens".into(),
            (u.cache_write + u.cache_write_1h).into(),
        );
        v.insert("cache_read_input_tokens".into(), u.cached.into());
    }
    if at != UsageAt::Delta {
        v.insert(
            "cache_creation".into(),
            json!({"ephemeral_5m_input_tokens": u.cache_write, "ephemeral_1h_input_tokens": u.cache_write_1h}),
        );
    }
    let output = if at == UsageAt::Start {
        1
    } else {
        u.completion
    };
    v.insert("output_tokens".into(), output.into());
    if let Some(n) = u.web_search.filter(|_| at != UsageAt::Start) {
        v.insert("server_tool_use".into(), json!({"web_search_requests": n}));
    }
    if at != UsageAt::Delta {
        let tier = u.service_tier.as_deref().unwrap_or("standard");
        v.insert("service_tier".into(), tier.into());
    }
    Value::Object(v)
}

/// OpenAI `logprobs` for `pieces`, one token each.
fn logprobs(pieces: &[String]) -> Value {
    let content: Vec<Value> = pieces
        .iter()
        .map(|p| json!({"token": p, "logprob": -0.5, "bytes": p.as_bytes(), "top_logprobs": []}))
        .collect();
    json!({"content": content, "refusal": null})
}

/// `text` in pieces of `n` bytes, each cut moved back to a character
/// boundary (a piece is never empty).
fn split_bytes(text: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = n.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        out.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    out
}

/// What a chat or message answer will say: the model, the reply's pieces
/// (one per stream event) and the usage it reports.
fn reply_plan<'a>(req: &'a Value, ctl: &Controls) -> Result<(&'a str, Vec<String>, Usage), String> {
    let model = model_of(req)?;
    let pieces = ctl.reply_pieces();
    let usage = ctl
        .usage
        .apply(10 + message_count(req), pieces.len() as u64);
    Ok((model, pieces, usage))
}

// ---------------------------------------------------------------------------
// OpenAI

fn chat(
    shared: &Arc<Shared>,
    id: u64,
    req: &Value,
    ctl: &Controls,
) -> Result<Response<MockBody>, String> {
    let (model, pieces, usage) = reply_plan(req, ctl)?;
    let chat_id = format!("chatcmpl-mock{id}");
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        let text: String = pieces.concat();
        let (message, finish) = match &ctl.tool_call {
            None => (
                json!({"role": "assistant", "content": text, "refusal": null, "annotations": []}),
                "stop",
            ),
            Some(name) => (
                json!({"role": "assistant", "content": null, "tool_calls": [{
                    "id": format!("call_mock{id}"), "type": "function",
                    "function": {"name": name, "arguments": ctl.tool_argument_pieces().concat()},
                }], "refusal": null, "annotations": []}),
                "tool_calls",
            ),
        };
        let v = json!({
            "id": chat_id,
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": if ctl.logprobs { logprobs(&pieces) } else { Value::Null },
                "finish_reason": finish,
            }],
            "usage": openai_usage(&usage),
            "service_tier": openai_served_tier(req, &usage),
            "system_fingerprint": "fp_mock",
        });
        return Ok(json_response(Provider::OpenAi, id, v));
    }

    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let prefix = format!(
        r#"data: {{"id":{},"object":"chat.completion.chunk","created":{CREATED},"model":{},"service_tier":{},"system_fingerprint":"fp_mock","choices":["#,
        json_str(&chat_id),
        json_str(model),
        json_str(&openai_served_tier(req, &usage)),
    );
    let suffix = if include_usage {
        "],\"usage\":null}\n\n"
    } else {
        "]}\n\n"
    };
    let chunk = |choice: &str| Bytes::from(format!("{prefix}{choice}{suffix}"));
    let mut events = Vec::with_capacity(pieces.len() + 4);
    if let Some(name) = &ctl.tool_call {
        events.push(chunk(&format!(
            r#"{{"index":0,"delta":{{"role":"assistant","content":null,"tool_calls":[{{"index":0,"id":"call_mock{id}","type":"function","function":{{"name":{},"arguments":""}}}}],"refusal":null}},"logprobs":null,"finish_reason":null}}"#,
            json_str(name)
        )));
        for p in ctl.tool_argument_pieces() {
            events.push(chunk(&format!(
                r#"{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":{}}}}}]}},"logprobs":null,"finish_reason":null}}"#,
                json_str(&p)
            )));
        }
        events.push(chunk(
            r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}"#,
        ));
        if include_usage {
            let u = serde_json::to_string(&openai_usage(&usage)).expect("serialize usage");
            events.push(Bytes::from(format!("{prefix}],\"usage\":{u}}}\n\n")));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        return Ok(stream_response(Provider::OpenAi, id, shared, events, ctl));
    }
    events.push(chunk(
        r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}"#,
    ));
    events.extend(ctl.huge_event(
        format!(r#"{prefix}{{"index":0,"delta":{{"content":""#),
        if include_usage {
            "\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
        } else {
            "\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        },
    ));
    for p in &pieces {
        let lp = if ctl.logprobs {
            logprobs(std::slice::from_ref(p))
        } else {
            Value::Null
        };
        events.push(chunk(&format!(
            r#"{{"index":0,"delta":{{"content":{}}},"logprobs":{lp},"finish_reason":null}}"#,
            json_str(p)
        )));
    }
    events.push(chunk(
        r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}"#,
    ));
    if include_usage {
        let u = serde_json::to_string(&openai_usage(&usage)).expect("serialize usage");
        events.push(Bytes::from(format!("{prefix}],\"usage\":{u}}}\n\n")));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Ok(stream_response(Provider::OpenAi, id, shared, events, ctl))
}

/// FNV-1a, then SplitMix64 per component: deterministic and cheap.
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The embedding of one input item. Components are multiples of 1/1024 in
/// [-1, 1], so they are exact in f32, f64 and short decimal alike: the
/// `float` and `base64` encodings describe precisely the same numbers.
///
/// A text with words is embedded by its words, so that near-duplicates are
/// testable: each word, lowercased, with a plural `s` taken off (a crude
/// stem), adds ±1 to four components chosen by its hash; the sum is
/// normalized. The same words in another order, case or punctuation give
/// the same vector (similarity 1); texts sharing no word are nearly
/// orthogonal. Anything else (token arrays, texts without words) gets a
/// vector derived from a hash of the whole item.
pub fn mock_embedding(item: &Value, dimensions: usize) -> Vec<f32> {
    if let Some(v) = item.as_str().and_then(|t| word_embedding(t, dimensions)) {
        return v;
    }
    let seed = fnv1a(item.to_string().as_bytes());
    (0..dimensions as u64)
        .map(|j| {
            let x = splitmix(seed ^ j.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            ((x % 2049) as i32 - 1024) as f32 / 1024.0
        })
        .collect()
}

/// Components each word adds to: two different words then rarely look
/// alike through one hash collision.
const WORD_FEATURES: usize = 4;

/// The bag-of-words vector of `text` (see [`mock_embedding`]), or `None`
/// when it has no word.
fn word_embedding(text: &str, dimensions: usize) -> Option<Vec<f32>> {
    let mut sums = vec![0f64; dimensions.max(1)];
    let mut any = false;
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let mut word = word.to_lowercase();
        if word.len() > 3 && word.ends_with('s') && !word.ends_with("ss") {
            word.pop();
        }
        let mut h = fnv1a(word.as_bytes());
        for _ in 0..WORD_FEATURES {
            h = splitmix(h);
            let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
            let slot = (h % sums.len() as u64) as usize;
            sums[slot] += sign;
        }
        any = true;
    }
    let norm = sums.iter().map(|x| x * x).sum::<f64>().sqrt();
    (any && norm > 0.0).then(|| {
        sums.iter()
            .map(|x| ((x / norm) * 1024.0).round() as f32 / 1024.0)
            .collect()
    })
}

fn embedding_items(input: Option<&Value>) -> Result<Vec<&Value>, String> {
    let invalid = || {
        "'input' must be a string, an array of strings, an array of integers, or an array of integer arrays".to_owned()
    };
    let is_token = |v: &Value| v.as_u64().is_some() || v.as_i64().is_some();
    match input {
        None => Err("you must provide an input parameter".to_owned()),
        Some(s @ Value::String(_)) => Ok(vec![s]),
        Some(arr @ Value::Array(a)) => {
            if a.is_empty() {
                Err("'input' cannot be an empty array".to_owned())
            } else if a.iter().all(Value::is_string) {
                Ok(a.iter().collect())
            } else if a.iter().all(is_token) {
                Ok(vec![arr])
            } else if a.iter().all(|v| {
                v.as_array()
                    .is_some_and(|t| !t.is_empty() && t.iter().all(is_token))
            }) {
                Ok(a.iter().collect())
            } else {
                Err(invalid())
            }
        }
        Some(_) => Err(invalid()),
    }
}

fn embeddings(id: u64, req: &Value, ctl: &Controls) -> Result<Response<MockBody>, String> {
    let model = model_of(req)?;
    let items = embedding_items(req.get("input"))?;
    let dims = match req.get("dimensions") {
        None | Some(Value::Null) => 8,
        Some(v) => match v.as_u64() {
            Some(d) if (1..=MAX_DIMENSIONS).contains(&d) => d as usize,
            _ => {
                return Err(format!(
                    "'dimensions' must be an integer between 1 and {MAX_DIMENSIONS}"
                ));
            }
        },
    };
    let base64 = match req.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => return Err("'encoding_format' must be 'float' or 'base64'".to_owned()),
    };
    let data: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let vec = mock_embedding(item, dims);
            let embedding = if base64 {
                let mut raw = Vec::with_capacity(vec.len() * 4);
                for x in &vec {
                    raw.extend_from_slice(&x.to_le_bytes());
                }
                Value::from(base64::engine::general_purpose::STANDARD.encode(raw))
            } else {
                Value::from(
                    vec.iter()
                        .map(|&x| Value::from(f64::from(x)))
                        .collect::<Vec<_>>(),
                )
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let n = ctl.usage.prompt.unwrap_or(3 * items.len() as u64);
    let v = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": n, "total_tokens": n},
    });
    Ok(json_response(Provider::OpenAi, id, v))
}

fn models_list() -> Value {
    let models = [
        ("gpt-4o-mini", 1_686_935_002_u64, "openai"),
        ("gpt-4o", 1_715_367_049, "system"),
        ("gpt-4.1", 1_744_316_542, "system"),
        ("o3-mini", 1_737_146_383, "system"),
        ("text-embedding-3-small", 1_705_948_997, "system"),
        ("text-embedding-3-large", 1_705_953_180, "system"),
    ];
    json!({
        "object": "list",
        "data": models
            .iter()
            .map(|(id, created, owner)| json!({"id": id, "object": "model", "created": created, "owned_by": owner}))
            .collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------
// Anthropic

fn messages(
    shared: &Arc<Shared>,
    id: u64,
    req: &Value,
    ctl: &Controls,
) -> Result<Response<MockBody>, String> {
    let (model, pieces, usage) = reply_plan(req, ctl)?;
    let msg_id = format!("msg_mock{id}");
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let stop_reason = if ctl.tool_call.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    if !stream {
        let mut content = vec![json!({"type": "text", "text": pieces.concat()})];
        if let Some(name) = &ctl.tool_call {
            content.push(
                json!({"type": "tool_use", "id": format!("toolu_mock{id}"), "name": name,
                "input": {"text": pieces.concat()}}),
            );
        }
        let v = json!({
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": anthropic_usage(&usage, UsageAt::Message),
        });
        return Ok(json_response(Provider::Anthropic, id, v));
    }

    let event = |ty: &str, data: &Value| {
        let d = serde_json::to_string(data).expect("serialize event");
        Bytes::from(format!("event: {ty}\ndata: {d}\n\n"))
    };
    let mut events = Vec::with_capacity(pieces.len() + 6);
    events.push(event(
        "message_start",
        &json!({
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": anthropic_usage(&usage, UsageAt::Start),
            },
        }),
    ));
    events.push(event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    events.push(Bytes::from_static(
        b"event: ping\ndata: {\"type\":\"ping\"}\n\n",
    ));
    events.extend(ctl.huge_event(
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"".to_owned(),
        "\"}}\n\n",
    ));
    for p in &pieces {
        events.push(Bytes::from(format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":{}}}}}\n\n",
            json_str(p)
        )));
    }
    events.push(Bytes::from_static(
        b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    ));
    if let Some(name) = &ctl.tool_call {
        events.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 1, "content_block":
                {"type": "tool_use", "id": format!("toolu_mock{id}"), "name": name, "input": {}}}),
        ));
        let partial = std::iter::once(String::new()).chain(ctl.tool_argument_pieces());
        for p in partial {
            events.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": p}}),
            ));
        }
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 1}),
        ));
    }
    events.push(event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": anthropic_usage(&usage, UsageAt::Delta),
        }),
    ));
    events.push(Bytes::from_static(
        b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ));
    Ok(stream_response(
        Provider::Anthropic,
        id,
        shared,
        events,
        ctl,
    ))
}
