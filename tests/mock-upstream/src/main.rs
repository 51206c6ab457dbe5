//! `mock-upstream`: run the OpenAI/Anthropic stand-in as a standalone server.
//!
//! Tests in other processes steer and inspect it through its `/__mock/`
//! control routes (`fail-status`, `stats`; see the library docs).

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tollgate_mock_upstream::{MockConfig, MockUpstream};

const USAGE: &str = "usage: mock-upstream [--listen ADDR] [--chunk-delay-ms N] \
[--first-byte-delay-ms N] [--key KEY] [--no-record] [--fail-status N]";

struct Args {
    listen: SocketAddr,
    cfg: MockConfig,
}

fn parse_args() -> Result<Args, String> {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 9999).into();
    let mut cfg = MockConfig::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().ok_or_else(|| format!("{name} needs a value")),
            }
        };
        let millis = |name: &str, v: String| -> Result<Duration, String> {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("{name}: not a number of milliseconds: {v:?}"))
        };
        match flag.as_str() {
            "--listen" => {
                let v = value("--listen")?;
                listen = v
                    .parse()
                    .map_err(|_| format!("--listen: not a socket address: {v:?}"))?;
            }
            "--chunk-delay-ms" => cfg.chunk_delay = millis(&flag, value(&flag)?)?,
            "--first-byte-delay-ms" => cfg.first_byte_delay = millis(&flag, value(&flag)?)?,
            "--key" => cfg.expect_key = Some(value("--key")?),
            "--no-record" => cfg.record = false,
            "--fail-status" => {
                let v = value("--fail-status")?;
                cfg.fail_status = Some(
                    v.parse::<u16>()
                        .ok()
                        .filter(|s| (400..=599).contains(s))
                        .ok_or_else(|| format!("--fail-status: not a status 400..599: {v:?}"))?,
                );
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument: {other:?}")),
        }
    }
    Ok(Args { listen, cfg })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mock-upstream: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let server = match MockUpstream::bind(args.listen, args.cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mock-upstream: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{}", server.addr());
        let _ = out.flush();
    }
    shutdown_signal().await;
    drop(server);
    ExitCode::SUCCESS
}
