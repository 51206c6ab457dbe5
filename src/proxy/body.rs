//! Streaming the upstream's answer back to the client as it arrives, while
//! the trace is completed from what goes by. The trace is handed to the
//! writer exactly once: when the body ends, or when it is dropped because
//! the client went away (which also drops, and so cancels, the upstream
//! request).
//!
//! Two things bound a response however the client behaves: a watchdog ends
//! it (closing the connection) at the total deadline even when the client
//! has stopped reading, and an upstream error body is held (up to 64 KiB)
//! and has the provider key taken out before the client sees it.

use super::admission::Governed;
use super::error::{ProxyError, stream_error_event, stream_refusal_event, withheld_error_body};
use super::guard_response::{self, Stage, Upstream};
use super::upstream::{UpstreamCall, passes_to_client};
use super::{Body, BoxError};
use crate::config::Protocol;
use crate::ledger::PriceBook;
use crate::providers::assemble::Assembler;
use crate::providers::redact::{self, MAX_ERROR_BODY};
use crate::providers::watch::{Observed, Watch};
use crate::request_facts::CloseConnection;
use crate::response_cache::{Cached, Memory};
use crate::secret::Secret;
use crate::semantic_index::SemanticIndex;
use crate::state::AppState;
use crate::store::{Slot, WriteOp};
use crate::trace::{ErrorKind, Trace, Usage};
use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use http::{HeaderValue, Response, header};
use http_body_util::BodyExt;
use hyper::body::Frame;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;
use tollgate_modules::guardrails::Refusal;

/// Bodies kept for `traces.store_bodies` are capped at this size.
const CAPTURE_LIMIT: usize = 4 * 1024 * 1024;

/// The watchdog fires this long after the total deadline, so that a body
/// still being polled ends itself first (with its error event).
const WATCHDOG_GRACE: Duration = Duration::from_millis(100);

/// A trace with its reserved place in the writer's queue. However the request
/// ends — normally, in error, or abandoned by the client — dropping this
/// sends the trace.
pub struct PendingTrace {
    slot: Option<Slot>,
    pub trace: Trace,
    started: Instant,
    completed: bool,
    /// Closes the request's connection; the response's watchdog uses it.
    closer: Option<CloseConnection>,
    /// The modules' holds, settled with the trace's usage and cost.
    pub governed: Option<Governed>,
}

impl PendingTrace {
    pub fn new(slot: Slot, trace: Trace, started: Instant) -> PendingTrace {
        PendingTrace {
            slot: Some(slot),
            trace,
            started,
            completed: false,
            closer: None,
            governed: None,
        }
    }

    /// The handle that closes this request's connection (from the request's
    /// extensions; absent when not served by `server`).
    pub fn closing(mut self, closer: Option<CloseConnection>) -> PendingTrace {
        self.closer = closer;
        self
    }

    /// Microseconds since the request arrived.
    pub fn elapsed_us(&self) -> i64 {
        self.started.elapsed().as_micros() as i64
    }

    /// The request ended the way its trace says.
    pub fn finish(mut self) {
        self.completed = true;
    }

    /// The request is not traced (an unauthenticated refusal beyond its
    /// address's sample): the reserved slot is given back unused.
    pub fn discard(mut self) {
        self.slot = None;
        self.completed = true;
    }
}

impl Drop for PendingTrace {
    fn drop(&mut self) {
        if !self.completed {
            if self.trace.status == 0 {
                // nginx's "client closed request": no response was sent.
                self.trace.status = 499;
            }
            self.trace.fail(
                ErrorKind::ClientDisconnected,
                "the client closed the connection before the response ended",
            );
        }
        self.trace.total_us = self.started.elapsed().as_micros() as i64;
        if let Some(governed) = self.governed.take() {
            governed.settle(&self.trace);
        }
        if let Some(slot) = self.slot.take() {
            let trace = std::mem::replace(&mut self.trace, Trace::new("", 0));
            slot.send(WriteOp::Trace(Box::new(trace)));
        }
    }
}

/// The most stream bytes assembled for an entry of at most `max_entry`
/// bytes: events repeat ids and framing around every piece of text.
fn stream_cap(max_entry: u64) -> usize {
    usize::try_from(max_entry.saturating_mul(8)).unwrap_or(usize::MAX)
}

/// The final message (the JSON a non-stream request would have got) of a
/// complete streamed answer, when it fits in `max_entry` bytes.
fn assembled(assembler: Assembler, max_entry: u64) -> Option<Bytes> {
    let message = assembler.finish()?;
    let body = crate::providers::replay::non_stream_body(&message);
    (body.len() as u64 <= max_entry).then_some(body)
}

pub struct ObservedBody {
    upstream: Upstream,
    watch: Watch,
    protocol: Protocol,
    upstream_failed: bool,
    queue: VecDeque<Bytes>,
    scratch: Vec<Bytes>,
    pending: Option<PendingTrace>,
    deadline: Pin<Box<Sleep>>,
    sent_at: Instant,
    capture: Option<BytesMut>,
    /// The answer as sent, for the exact cache (a miss or refresh whose
    /// answer may be stored), up to `[modules.cache] max_entry_bytes`.
    cache_capture: Option<(BytesMut, u64)>,
    /// A streamed answer assembled into its final message for the exact
    /// cache, fed the upstream's bytes (before any usage is stripped).
    cache_assembler: Option<(Assembler, u64)>,
    /// Where a stored answer also goes at once, and the prices to cost it.
    cache_memory: Option<(Memory, PriceBook)>,
    /// Where a stored answer's vector goes at once (semantic cache), and the
    /// partition bound.
    semantic_index: Option<(SemanticIndex, usize)>,
    sent_any: bool,
    received_any: bool,
    /// The upstream's declared length; reaching it ends the body even if
    /// the client side (which knows the length too) never polls again.
    expected_len: Option<u64>,
    received: u64,
    done: bool,
    abort: Option<BoxError>,
    /// An upstream error body, held whole to take the provider key out.
    held_error: Option<HeldErrorBody>,
    watchdog: Option<Watchdog>,
    /// Guardrails on the answer, between the watch and the client.
    guard: Option<Stage>,
}

/// A non-2xx body held (up to [`MAX_ERROR_BODY`]) until it ends, so that the
/// provider key it may echo is replaced before the client sees it.
struct HeldErrorBody {
    key: Secret,
    buf: BytesMut,
}

/// Ends the response at its total deadline even when the client has stopped
/// reading: hyper then stops polling the body, so the body's own deadline
/// check never runs. Closing the connection drops the body, whose `Drop`
/// records the trace as timed out. Disarmed (aborted) when the body ends.
struct Watchdog(tokio::task::JoinHandle<()>);

impl Watchdog {
    fn arm(closer: CloseConnection, after: Duration) -> Watchdog {
        Watchdog(tokio::spawn(async move {
            tokio::time::sleep(after).await;
            closer.close();
        }))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ObservedBody {
    pub async fn respond(
        state: &AppState,
        call: UpstreamCall,
        mut pending: PendingTrace,
    ) -> Response<Body> {
        let deadline_at = tokio::time::Instant::now() + state.config.upstream.total_timeout;
        let status = call.response.status();
        let event_stream = call
            .response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        let held_error = match (status.is_success(), &call.credential) {
            (false, Some(key)) => Some(HeldErrorBody {
                key: key.clone(),
                buf: BytesMut::new(),
            }),
            _ => None,
        };
        let mut builder = Response::builder().status(status);
        if let Some(headers) = builder.headers_mut() {
            for (name, value) in call.response.headers() {
                if passes_to_client(name.as_str()) {
                    headers.append(name.clone(), value.clone());
                }
            }
            if event_stream {
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            } else if held_error.is_none()
                && let Some(len) = call.response.headers().get(header::CONTENT_LENGTH)
            {
                // Bodies other than event streams pass unchanged, so their
                // length holds, and the client gets it without chunking.
                headers.insert(header::CONTENT_LENGTH, len.clone());
            }
        }
        let protocol = call.route.provider.protocol;
        if !status.is_success() {
            // Error answers are never stored.
            pending.trace.cache.store = None;
        }
        let max_entry = pending
            .trace
            .cache
            .store
            .as_ref()
            .map(|e| e.max_entry_bytes);
        let (cache_capture, cache_assembler) = match (max_entry, event_stream) {
            (None, _) => (None, None),
            (Some(max), false) => (Some((BytesMut::new(), max)), None),
            (Some(max), true) => (None, Some((Assembler::new(protocol, stream_cap(max)), max))),
        };
        let total_timeout = state.config.upstream.total_timeout;
        let watchdog = pending
            .closer
            .take()
            .map(|closer| Watchdog::arm(closer, total_timeout + WATCHDOG_GRACE));
        let expected_len = if event_stream {
            None
        } else {
            call.response.content_length()
        };
        let mut upstream: Upstream = Box::pin(call.response.bytes_stream().map_err(BoxError::from));
        let mut guard = None;
        match guard_response::plan(state, &pending.trace, status.is_success()) {
            None => {}
            Some(Err(refusal)) => {
                // Nothing is sent unchecked: the upstream's answer is dropped.
                pending
                    .trace
                    .add_guardrails(&super::guardrails::refused(&refusal));
                let refusal = ProxyError::from(refusal);
                pending.trace.status = refusal.status().as_u16();
                pending.trace.fail(refusal.kind(), refusal.to_string());
                pending.trace.cache.store = None;
                pending.trace.response_bytes = refusal.body(protocol).len() as i64;
                pending.finish();
                return refusal.to_response(protocol);
            }
            Some(Ok(plan)) if event_stream => {
                guard = Some(plan.stream(protocol));
            }
            Some(Ok(plan)) => {
                let checked =
                    guard_response::check_json(&plan, protocol, upstream, deadline_at).await;
                upstream = checked.upstream;
                pending.trace.add_guardrails(&checked.findings);
                let stage = match &checked.refused {
                    Some(refusal) => {
                        builder = builder.status(refusal.status());
                        pending.trace.status = refusal.status().as_u16();
                        pending.trace.fail(refusal.kind(), refusal.to_string());
                        pending.trace.cache.store = None;
                        Stage::Json(Some(refusal.body(protocol)))
                    }
                    None => checked.stage,
                };
                if let Some(headers) = builder.headers_mut() {
                    // What goes out is the checked body, not the upstream's.
                    headers.remove(header::CONTENT_LENGTH);
                    if let Stage::Json(Some(body)) = &stage {
                        headers.insert(header::CONTENT_LENGTH, body.len().into());
                    }
                }
                guard = Some(stage);
            }
        }
        let semantic_index = pending
            .trace
            .cache
            .store
            .as_ref()
            .is_some_and(|e| e.semantic.is_some())
            .then(|| {
                let max = state.modules().semantic_cache.max_entries;
                (state.semantic.index.clone(), max)
            });
        let cache_memory = (cache_capture.is_some() || cache_assembler.is_some()).then(|| {
            let memory_bytes = state.modules().cache.memory_bytes;
            (state.cache.memory(memory_bytes), state.prices.clone())
        });
        let body = ObservedBody {
            upstream,
            watch: Watch::new(
                protocol,
                event_stream,
                call.strip_injected_usage,
                state.config.upstream.max_inspected_event_bytes,
            ),
            protocol,
            upstream_failed: !status.is_success(),
            queue: VecDeque::new(),
            scratch: Vec::new(),
            pending: Some(pending),
            deadline: Box::pin(tokio::time::sleep_until(deadline_at)),
            sent_at: call.sent_at,
            capture: state.config.store_bodies.then(BytesMut::new),
            cache_memory,
            semantic_index,
            cache_capture,
            cache_assembler,
            sent_any: false,
            received_any: false,
            expected_len,
            received: 0,
            done: false,
            abort: None,
            held_error,
            watchdog,
            guard,
        };
        builder
            .body(body.boxed_unsync())
            .unwrap_or_else(|_| Response::new(super::full(Bytes::new())))
    }

    fn trace(&mut self) -> Option<&mut Trace> {
        self.pending.as_mut().map(|p| &mut p.trace)
    }

    /// Feeds the stream assembler; once it gives up, the answer is not stored.
    fn assemble(&mut self, chunk: &Bytes) {
        let Some((assembler, _)) = &mut self.cache_assembler else {
            return;
        };
        assembler.feed(chunk);
        if assembler.gave_up() {
            self.cache_assembler = None;
            if let Some(p) = &mut self.pending {
                p.trace.cache.store = None;
            }
        }
    }

    fn on_sent(&mut self, chunk: &Bytes) {
        let first = !self.sent_any;
        self.sent_any = true;
        if let Some(capture) = &mut self.capture
            && capture.len() + chunk.len() <= CAPTURE_LIMIT
        {
            capture.extend_from_slice(chunk);
        }
        if let Some((capture, limit)) = &mut self.cache_capture {
            if (capture.len() + chunk.len()) as u64 <= *limit {
                capture.extend_from_slice(chunk);
            } else {
                // Too large to store: stop copying.
                self.cache_capture = None;
                if let Some(p) = &mut self.pending {
                    p.trace.cache.store = None;
                }
            }
        }
        if let Some(p) = &mut self.pending {
            p.trace.response_bytes += chunk.len() as i64;
            if first {
                p.trace.ttfb_us = Some(p.started.elapsed().as_micros() as i64);
            }
        }
    }

    /// Closes the watch and puts what it saw (usage, finish reason, upstream
    /// time) on the trace; `keep_rest` sends on anything it held back.
    fn close_watch(&mut self, keep_rest: bool) -> Observed {
        let mut out = std::mem::take(&mut self.scratch);
        let mut seen = self.watch.finish(&mut out);
        if keep_rest && self.guard.is_none() {
            self.queue.extend(out.drain(..));
        } else {
            // With guardrails on, what the watch held is at most an
            // unfinished event: dropped, as an SSE client drops it.
            out.clear();
        }
        self.scratch = out;
        let sent_at = self.sent_at;
        if let Some(t) = self.trace() {
            t.upstream_us = Some(sent_at.elapsed().as_micros() as i64);
            // Usage read around an uninspected event may be partial: record
            // none, so the cost is unknown rather than silently too low.
            t.usage = if seen.usage_unreadable {
                Usage::default()
            } else {
                seen.usage
            };
            t.finish_reason = seen.finish_reason.take();
        }
        seen
    }

    /// Takes in what the watch let through for the client: queued at once,
    /// or held while it is an error body.
    fn pass_on(&mut self, out: &mut Vec<Bytes>) {
        let Some(held) = &mut self.held_error else {
            self.forward(out);
            return;
        };
        for chunk in out.drain(..) {
            held.buf.extend_from_slice(&chunk);
        }
        if held.buf.len() > MAX_ERROR_BODY {
            // Too large to check: the client gets the status with a body of
            // tollgate's own instead of an unchecked one.
            self.held_error = None;
            self.queue
                .push_back(withheld_error_body(self.protocol, self.status()));
            self.complete();
        }
    }

    /// Queues what the watch let through, through the guardrails if on.
    fn forward(&mut self, out: &mut Vec<Bytes>) {
        match &mut self.guard {
            None => self.queue.extend(out.drain(..)),
            // Sent whole at the end, instead of the upstream's bytes.
            Some(Stage::Json(_)) => out.clear(),
            Some(Stage::Stream(stream)) => {
                let mut checked = Vec::new();
                let result = out
                    .drain(..)
                    .try_for_each(|chunk| stream.feed(&chunk, &mut checked));
                self.queue.extend(checked);
                if let Err(refusal) = result {
                    self.refuse(refusal);
                }
            }
        }
    }

    /// The guardrails end the answer here: the rest of a stream goes
    /// nowhere, the client gets an error event instead, and the trace
    /// says which rule.
    fn refuse(&mut self, refusal: Refusal) {
        // A rule that fired is in the stream's findings already; an event
        // that could not be read is not.
        self.record_findings();
        if let (Some(t), Refusal::Unscannable { .. }) = (self.trace(), &refusal) {
            t.add_guardrails(&super::guardrails::refused(&refusal));
        }
        self.guard = Some(Stage::Json(None));
        let error = ProxyError::from(refusal);
        if !self.done {
            self.close_watch(false);
            self.done = true;
        }
        if let Some(t) = self.trace() {
            t.fail(error.kind(), error.to_string());
            t.cache.store = None;
        }
        self.cache_assembler = None;
        // The stream stage emits whole events, so this one stands alone.
        self.queue
            .push_back(stream_refusal_event(self.protocol, &error));
    }

    /// Puts what the stream's guardrails found on the trace.
    fn record_findings(&mut self) {
        let Some(Stage::Stream(stream)) = &self.guard else {
            return;
        };
        let findings = stream.findings();
        if let Some(p) = &mut self.pending {
            p.trace.add_guardrails(&findings);
        }
    }

    fn status(&self) -> u16 {
        self.pending.as_ref().map_or(0, |p| p.trace.status)
    }

    /// The upstream body ended normally.
    fn complete(&mut self) {
        if let Some(held) = self.held_error.take() {
            let body = redact::redact_key(&held.buf, held.key.expose());
            self.queue.push_back(Bytes::copy_from_slice(&body));
        }
        let seen = self.close_watch(true);
        let upstream_failed = self.upstream_failed;
        let event_stream = self.watch.is_event_stream();
        if let Some(t) = self.trace() {
            if upstream_failed {
                let what = match seen.error_type.as_deref() {
                    Some(error_type) => error_type,
                    None if (300..400).contains(&t.status) => {
                        "a redirect, passed back to the client"
                    }
                    None => "an error",
                };
                t.fail(
                    ErrorKind::UpstreamStatus,
                    format!("upstream answered {} ({what})", t.status),
                );
            } else if let Some(err) = seen.error_type {
                t.fail(
                    ErrorKind::UpstreamStreamError,
                    format!("upstream sent an error event ({err})"),
                );
            } else if event_stream && !seen.stream_complete {
                t.fail(
                    ErrorKind::UpstreamStreamBroken,
                    "upstream stream ended without its final event",
                );
            } else if seen.usage_unreadable {
                t.fail(
                    ErrorKind::UsageUnreadable,
                    "an event longer than upstream.max_inspected_event_bytes passed uninspected; \
                     usage and cost are unknown",
                );
            }
        }
        self.done = true;
        match &mut self.guard {
            Some(Stage::Json(body)) => {
                if let Some(body) = body.take() {
                    self.queue.push_back(body);
                }
            }
            Some(Stage::Stream(stream)) => {
                let mut rest = Vec::new();
                let result = stream.finish(&mut rest);
                self.queue.extend(rest);
                if let Err(refusal) = result {
                    self.refuse(refusal);
                }
            }
            None => {}
        }
    }

    /// The upstream broke or ran out of time mid-body.
    fn break_off(&mut self, kind: ErrorKind, message: &str) {
        self.close_watch(false);
        if let Some(t) = self.trace() {
            t.fail(kind, message);
        }
        if self.watch.is_event_stream() {
            // End the stream with an error event both SDKs raise on, rather
            // than a silent, truncated answer.
            self.queue.push_back(Bytes::from_static(b"\n\n"));
            self.queue
                .push_back(stream_error_event(self.protocol, message));
        } else {
            self.abort = Some(message.to_string().into());
        }
        self.done = true;
    }

    fn finish_trace(&mut self) {
        self.watchdog = None;
        self.record_findings();
        let capture = self.capture.take().map(BytesMut::freeze);
        let cached = self.cache_capture.take().map(|(c, _)| c.freeze());
        let assembled = self
            .cache_assembler
            .take()
            .and_then(|(a, max)| assembled(a, max))
            .and_then(|body| match &self.guard {
                // The stream was redacted as it went: so is what is stored.
                Some(Stage::Stream(stream)) => stream.redact_message(&body),
                _ => Some(body),
            });
        if let Some(mut p) = self.pending.take() {
            p.trace.response_body = capture;
            // Stored by the writer only if the trace says it completed.
            let message = cached.or(assembled);
            match (message, p.trace.cache.store.as_mut()) {
                (Some(body), Some(entry)) => entry.body = body,
                _ => p.trace.cache.store = None,
            }
            if let (Some((memory, prices)), Some(entry)) =
                (&self.cache_memory, p.trace.cache_storable())
            {
                let cost_uc = crate::ledger::assess(&p.trace, &prices.current()).cost_uc;
                memory.put(
                    entry.key,
                    Arc::new(Cached {
                        body: entry.body.clone(),
                        cost_uc,
                        expires_at_ms: entry.expires_at_ms,
                    }),
                );
                if let (Some((index, max)), Some(v)) = (&self.semantic_index, &entry.semantic) {
                    index.insert(v.partition, entry.key, &v.vector, entry.expires_at_ms, *max);
                }
            }
            p.finish();
        }
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        if !self.done {
            // The client went away before the upstream body ended. SDKs hang
            // up on `[DONE]`/`message_stop` without waiting for the upstream
            // to close the body: once the client has the terminator, the
            // stream ended there. Otherwise it is a disconnect, and whatever
            // the watch saw (usage, finish reason) still goes on the trace.
            if self.watch.saw_terminator() && self.queue.is_empty() {
                self.complete();
            } else if tokio::time::Instant::now() >= self.deadline.deadline() {
                // The watchdog closed the connection of a client that had
                // stopped reading: the deadline ended the request.
                self.break_off(
                    ErrorKind::UpstreamTimeout,
                    "the response did not finish in time (the client was not reading)",
                );
            } else {
                self.close_watch(false);
                self.record_findings();
            }
        }
        // Ended upstream but not polled to the end (a known length lets
        // hyper stop early): a completed request, not a disconnect.
        if self.done {
            self.finish_trace();
        }
    }
}

impl hyper::body::Body for ObservedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(chunk) = this.queue.pop_front() {
                this.on_sent(&chunk);
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if this.done {
                this.finish_trace();
                return Poll::Ready(this.abort.take().map(Err));
            }
            if this.deadline.as_mut().poll(cx).is_ready() {
                this.break_off(
                    ErrorKind::UpstreamTimeout,
                    "the upstream did not finish in time",
                );
                continue;
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if !this.received_any {
                        this.received_any = true;
                        let at = this.sent_at.elapsed().as_micros() as i64;
                        if let Some(t) = this.trace() {
                            t.upstream_ttfb_us = Some(at);
                        }
                    }
                    this.received += chunk.len() as u64;
                    this.assemble(&chunk);
                    let mut out = std::mem::take(&mut this.scratch);
                    this.watch.feed(chunk, &mut out);
                    this.pass_on(&mut out);
                    this.scratch = out;
                    if !this.done && this.expected_len == Some(this.received) {
                        this.complete();
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(error = %e, "upstream body broke mid-response");
                    this.break_off(
                        ErrorKind::UpstreamStreamBroken,
                        "the upstream connection broke mid-response",
                    );
                }
                Poll::Ready(None) => this.complete(),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.queue.is_empty() && self.pending.is_none()
    }
}
