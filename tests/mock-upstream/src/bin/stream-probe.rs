//! `stream-probe`: a streaming load/latency probe for the load benchmark
//! (`benches/load.sh`). It opens OpenAI-style streaming chat completions and
//! timestamps every SSE event as it arrives, which a generic load tool
//! (oha) cannot do.
//!
//! ```text
//! stream-probe --url http://127.0.0.1:PORT/v1/chat/completions
//!              [--streams N] [--concurrency C] [--words W] [--chunk-delay-ms D]
//!              [--stagger-ms S] [--timeout-secs T] [--model M] [--key KEY]
//! ```
//!
//! `KEY` is sent as `Authorization: Bearer KEY` (tollgate's client key).
//!
//! `N` streams are run by `C` workers (each worker runs its streams one after
//! another; worker `i` starts `i * S` ms late so workers do not stay in
//! lockstep). With `C = N` every stream is opened at once and held open until
//! the upstream finishes it, which is how the memory test holds 1,000 streams.
//!
//! Per stream it records: time to response headers, time to the first body
//! byte (TTFB), and the arrival time of every complete SSE event. Inter-chunk
//! gaps are taken between consecutive events that carry a choice
//! (`"choices":[{`); the `[DONE]` marker and usage-only chunks are left out,
//! so a proxy that removes a usage chunk it added is compared like for like.
//!
//! Prints one JSON object on stdout. Progress markers go to stderr as
//! `PROBE <what> unix_ms=<ms>` lines: `all_open` once every stream of the
//! run is open at the same time (headers received, body not finished), and
//! `first_done` when the first stream ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use serde_json::{Value, json};

const USAGE: &str = "usage: stream-probe --url URL [--streams N] [--concurrency C] [--words W] \
[--chunk-delay-ms D] [--stagger-ms S] [--timeout-secs T] [--model M] [--key KEY]";

struct Args {
    url: String,
    streams: usize,
    concurrency: usize,
    words: usize,
    chunk_delay_ms: u64,
    stagger_ms: u64,
    timeout_secs: u64,
    model: String,
    key: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        streams: 50,
        concurrency: 1,
        words: 20,
        chunk_delay_ms: 20,
        stagger_ms: 0,
        timeout_secs: 120,
        model: "gpt-4o-mini".to_owned(),
        key: "sk-load-probe".to_owned(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v:?}"))
        };
        match flag.as_str() {
            "--url" => a.url = v,
            "--streams" => a.streams = num(&v)? as usize,
            "--concurrency" => a.concurrency = num(&v)? as usize,
            "--words" => a.words = num(&v)? as usize,
            "--chunk-delay-ms" => a.chunk_delay_ms = num(&v)?,
            "--stagger-ms" => a.stagger_ms = num(&v)?,
            "--timeout-secs" => a.timeout_secs = num(&v)?,
            "--model" => a.model = v,
            "--key" => a.key = v,
            other => return Err(format!("unknown argument: {other:?}")),
        }
    }
    if a.url.is_empty() {
        return Err("--url is required".to_owned());
    }
    a.concurrency = a.concurrency.clamp(1, a.streams.max(1));
    Ok(a)
}

/// What one stream saw. Times are milliseconds since the request was sent.
#[derive(Default)]
struct StreamResult {
    ok: bool,
    error: Option<String>,
    headers_ms: f64,
    ttfb_ms: Option<f64>,
    /// Arrival of every event that carries a choice.
    choice_events_ms: Vec<f64>,
    events: usize,
    saw_done: bool,
    /// Whether any event mentioned `"usage"` (the probe never asks for it).
    saw_usage: bool,
    total_ms: f64,
}

struct Shared {
    open: AtomicUsize,
    max_open: AtomicUsize,
    all_open_reported: AtomicBool,
    first_done_reported: AtomicBool,
    target_open: usize,
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn one_stream(
    client: &reqwest::Client,
    args: &Args,
    body: &Arc<String>,
    shared: &Shared,
) -> StreamResult {
    let mut r = StreamResult::default();
    let start = Instant::now();
    let resp = client
        .post(&args.url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", args.key))
        .header("x-mock-words", args.words.to_string())
        .header("x-mock-chunk-delay-ms", args.chunk_delay_ms.to_string())
        .body(body.as_str().to_owned())
        .send()
        .await;
    let resp = match resp {
        Ok(resp) => resp,
        Err(e) => {
            r.error = Some(format!("send: {e}"));
            return r;
        }
    };
    r.headers_ms = ms(start.elapsed());
    if !resp.status().is_success() {
        r.error = Some(format!("status {}", resp.status()));
        return r;
    }

    let now_open = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_open.fetch_max(now_open, Ordering::SeqCst);
    if now_open == shared.target_open && !shared.all_open_reported.swap(true, Ordering::SeqCst) {
        eprintln!("PROBE all_open unix_ms={}", unix_ms());
    }

    let mut body = resp.bytes_stream();
    // Bytes of the event being received (an event may span chunks).
    let mut pending: Vec<u8> = Vec::new();
    let mut failed = None;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                failed = Some(format!("body: {e}"));
                break;
            }
        };
        let t = ms(start.elapsed());
        if r.ttfb_ms.is_none() && !chunk.is_empty() {
            r.ttfb_ms = Some(t);
        }
        pending.extend_from_slice(&chunk);
        // Every complete event in the buffer arrived with this chunk.
        while let Some(end) = find(&pending, b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            r.events += 1;
            if find(&event, b"\"choices\":[{").is_some() {
                r.choice_events_ms.push(t);
            }
            if find(&event, b"\"usage\"").is_some() {
                r.saw_usage = true;
            }
            if find(&event, b"data: [DONE]").is_some() {
                r.saw_done = true;
            }
        }
    }
    r.total_ms = ms(start.elapsed());
    shared.open.fetch_sub(1, Ordering::SeqCst);
    if !shared.first_done_reported.swap(true, Ordering::SeqCst) {
        eprintln!("PROBE first_done unix_ms={}", unix_ms());
    }
    match failed {
        Some(e) => r.error = Some(e),
        None if !r.saw_done => r.error = Some("stream ended without [DONE]".to_owned()),
        None => r.ok = true,
    }
    r
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Nearest-rank percentile of a sorted slice.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn stats(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        return json!({"n": 0});
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let r = |x: f64| (x * 1000.0).round() / 1000.0;
    json!({
        "n": v.len(),
        "mean": r(mean),
        "min": r(v[0]),
        "p50": r(pct(&v, 50.0)),
        "p90": r(pct(&v, 90.0)),
        "p99": r(pct(&v, 99.0)),
        "max": r(v[v.len() - 1]),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("stream-probe: {e}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    let client = match reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(args.timeout_secs))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stream-probe: client: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let body = Arc::new(
        json!({
            "model": args.model,
            "stream": true,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Write a short haiku about toll booths."}
            ],
            "temperature": 0.7,
        })
        .to_string(),
    );
    let shared = Arc::new(Shared {
        open: AtomicUsize::new(0),
        max_open: AtomicUsize::new(0),
        all_open_reported: AtomicBool::new(false),
        first_done_reported: AtomicBool::new(false),
        target_open: args.concurrency,
    });

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(args.concurrency);
    for w in 0..args.concurrency {
        let (client, args, body, shared, next) = (
            client.clone(),
            args.clone(),
            body.clone(),
            shared.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            if args.stagger_ms > 0 && w > 0 {
                tokio::time::sleep(Duration::from_millis(args.stagger_ms * w as u64)).await;
            }
            let mut out = Vec::new();
            while next.fetch_add(1, Ordering::SeqCst) < args.streams {
                out.push(one_stream(&client, &args, &body, &shared).await);
            }
            out
        }));
    }
    let mut results = Vec::with_capacity(args.streams);
    for w in workers {
        match w.await {
            Ok(v) => results.extend(v),
            Err(e) => eprintln!("stream-probe: worker panicked: {e}"),
        }
    }
    let wall = started.elapsed();

    let ok: Vec<&StreamResult> = results.iter().filter(|r| r.ok).collect();
    let mut errors: Vec<String> = results.iter().filter_map(|r| r.error.clone()).collect();
    let failed = errors.len();
    errors.sort();
    errors.dedup();
    errors.truncate(5);
    let gaps: Vec<f64> = ok
        .iter()
        .flat_map(|r| r.choice_events_ms.windows(2).map(|w| w[1] - w[0]))
        .collect();
    let per_stream_mean_gap: Vec<f64> = ok
        .iter()
        .filter(|r| r.choice_events_ms.len() > 1)
        .map(|r| {
            let e = &r.choice_events_ms;
            (e[e.len() - 1] - e[0]) / (e.len() - 1) as f64
        })
        .collect();
    let events: Vec<f64> = ok.iter().map(|r| r.choice_events_ms.len() as f64).collect();
    let out = json!({
        "url": args.url,
        "streams": args.streams,
        "concurrency": args.concurrency,
        "words": args.words,
        "chunk_delay_ms": args.chunk_delay_ms,
        "completed": ok.len(),
        "failed": failed,
        "errors": errors,
        "max_open": shared.max_open.load(Ordering::SeqCst),
        "streams_with_usage": ok.iter().filter(|r| r.saw_usage).count(),
        "wall_s": (wall.as_secs_f64() * 1000.0).round() / 1000.0,
        "headers_ms": stats(ok.iter().map(|r| r.headers_ms).collect()),
        "ttfb_ms": stats(ok.iter().filter_map(|r| r.ttfb_ms).collect()),
        "gap_ms": stats(gaps),
        "stream_mean_gap_ms": stats(per_stream_mean_gap),
        "choice_events_per_stream": stats(events),
        "total_events_per_stream": stats(ok.iter().map(|r| r.events as f64).collect()),
        "stream_total_ms": stats(ok.iter().map(|r| r.total_ms).collect()),
    });
    println!("{out}");
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
