//! The `tollgate` binary: parse the command line, load the config, hand over
//! to the library. Exit codes: 0 ok, 2 usage, 3 config, 4 database, 5 listen.

use clap::Parser;
use std::process::ExitCode;
use tollgate::cli::{Cli, Command, DbArgs, ServeArgs};
use tollgate::config::{Config, ConfigError, ProcessEnv};
use tollgate::{App, store};

const EXIT_CONFIG: u8 = 3;
const EXIT_DATABASE: u8 = 4;
const EXIT_LISTEN: u8 = 5;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Migrate(args) => migrate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("tollgate: {message}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn load(
    config: Option<&std::path::Path>,
    listen: Option<String>,
    db: Option<std::path::PathBuf>,
) -> Result<Config, Failure> {
    let config_error = |e: ConfigError| (EXIT_CONFIG, e.to_string());
    let mut config = Config::load(config, &ProcessEnv).map_err(config_error)?;
    if let Some(listen) = listen {
        config.listen = listen.parse().map_err(|_| {
            (
                EXIT_CONFIG,
                format!("--listen {listen:?} is not an IP:port address"),
            )
        })?;
    }
    if let Some(db) = db {
        config.store.path = db;
    }
    Ok(config)
}

fn serve(args: ServeArgs) -> Result<(), Failure> {
    let config = load(args.config.as_deref(), args.listen, args.db)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| (1, format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let listen = config.listen;
        let db = config.store.path.clone();
        let app = App::open(config, &ProcessEnv).map_err(|e| (EXIT_DATABASE, e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| (EXIT_LISTEN, format!("cannot listen on {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| (EXIT_LISTEN, e.to_string()))?;
        tracing::info!(%addr, db = %db.display(), "tollgate ready");
        println!("listening on http://{addr}");
        app.serve(listener, shutdown_signal()).await;
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}

fn migrate(args: DbArgs) -> Result<(), Failure> {
    let config = load(args.config.as_deref(), None, args.db)?;
    let db_error = |e: store::StoreError| (EXIT_DATABASE, e.to_string());
    let mut conn = store::open(&config.store, store::OpenMode::ReadWrite).map_err(db_error)?;
    let applied = store::migrate(&mut conn).map_err(|e| db_error(e.into()))?;
    println!(
        "{}: schema version {} ({} migration{} applied)",
        config.store.path.display(),
        store::SCHEMA_VERSION,
        applied.len(),
        if applied.len() == 1 { "" } else { "s" }
    );
    Ok(())
}
