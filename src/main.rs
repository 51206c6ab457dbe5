//! The `tollgate` binary: parse the command line, load the config, hand over
//! to the library. Exit codes: 0 ok, 2 usage, 3 config, 4 database, 5 listen.

use clap::Parser;
use std::process::ExitCode;
use tollgate::cli::{
    AuditCommand, CacheCommand, Cli, Command, CostsArgs, DbArgs, KeysCommand, ModulesCommand,
    PricesCommand, ProvidersCommand, ReportCommand, ServeArgs, VaultCommand, VerifyArgs,
};
use tollgate::commands;
use tollgate::config::{Config, ConfigError, ProcessEnv};
use tollgate::{App, store};

/// mimalloc: the proxy allocates small, short-lived buffers on several
/// threads at once, where glibc's allocator showed up as ~15% of CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_CONFIG: u8 = 3;
const EXIT_DATABASE: u8 = 4;
const EXIT_LISTEN: u8 = 5;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Migrate(args) => migrate(args),
        Command::Report(ReportCommand::Costs(args)) => report_costs(args),
        Command::Audit(AuditCommand::Verify(args)) => audit_verify(args),
        Command::Audit(AuditCommand::Head(args)) => audit_head(args),
        Command::Keys(cmd) => keys(cmd),
        Command::Providers(ProvidersCommand::SetKey { db, provider }) => {
            set_provider_key(db, &provider)
        }
        Command::Vault(VaultCommand::Rotate { db, new_key_file }) => {
            rotate_vault(db, &new_key_file)
        }
        Command::Vault(VaultCommand::GenerateKey) => {
            println!("{}", commands::vault::generate());
            Ok(())
        }
        Command::Prices(cmd) => prices(cmd),
        Command::Modules(cmd) => modules(cmd),
        Command::Cache(cmd) => cache(cmd),
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
    let config_path = args
        .config
        .clone()
        .or_else(|| std::env::var_os("TOLLGATE_CONFIG").map(Into::into));
    let config = load(args.config.as_deref(), args.listen, args.db)?;
    warn_if_prices_stale(config.builtin_prices_max_age_days);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| (1, format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let listen = config.listen;
        let db = config.store.path.clone();
        let mut app = App::open(config, &ProcessEnv).map_err(|e| {
            let code = if e.is_config() { EXIT_CONFIG } else { EXIT_DATABASE };
            (code, e.to_string())
        })?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| (EXIT_LISTEN, format!("cannot listen on {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| (EXIT_LISTEN, e.to_string()))?;
        let metrics_addr = app.bind_metrics().await.map_err(|e| {
            (
                EXIT_LISTEN,
                format!("cannot listen on metrics.listen: {e}"),
            )
        })?;
        if let Some(metrics_addr) = metrics_addr {
            tracing::info!(%metrics_addr, "serving /metrics on its own listener");
        }
        // Before announcing readiness: a SIGTERM sent right after the
        // "listening on" line must drain, not kill the process.
        let signals = Signals::install()
            .map_err(|e| (1, format!("cannot install signal handlers: {e}")))?;
        tracing::info!(%addr, db = %db.display(), "tollgate ready");
        println!("listening on http://{addr}");
        if let Some(admin) = app.take_first_admin_key() {
            println!(
                "first run: created the admin credential (shown only now; it is stored hashed):\n{}",
                admin.expose()
            );
        }
        // Weak: the reloader must not keep the writer's queue open at shutdown.
        let reload = tokio::spawn(reload_on_sighup(
            std::sync::Arc::downgrade(app.state()),
            config_path,
            signals.hangup,
        ));
        app.serve(listener, shutdown_signal(signals.stop)).await;
        reload.abort();
        Ok(())
    })
}

/// The signal handlers `serve` needs, installed together before it says it
/// is listening (tokio installs a handler only when asked).
struct Signals {
    /// SIGTERM and SIGINT.
    stop: Vec<Signal>,
    hangup: Option<Signal>,
}

#[cfg(unix)]
type Signal = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Signal = std::convert::Infallible;

impl Signals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            stop: vec![
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ],
            hangup: Some(signal(SignalKind::hangup())?),
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            stop: Vec::new(),
            hangup: None,
        })
    }
}

/// Resolves on the first SIGTERM or SIGINT (on other platforms: Ctrl-C).
async fn shutdown_signal(stop: Vec<Signal>) {
    #[cfg(unix)]
    {
        let waits = stop.into_iter().map(|mut s| {
            Box::pin(async move {
                s.recv().await;
            })
        });
        futures_util::future::select_all(waits).await;
    }
    #[cfg(not(unix))]
    {
        let _ = stop;
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown signal received");
}

/// SIGHUP re-reads the price overrides from the config file.
async fn reload_on_sighup(
    state: std::sync::Weak<tollgate::state::AppState>,
    path: Option<std::path::PathBuf>,
    hangup: Option<Signal>,
) {
    #[cfg(unix)]
    {
        let Some(mut hup) = hangup else {
            return;
        };
        while hup.recv().await.is_some() {
            let Some(state) = state.upgrade() else { return };
            match state
                .reads
                .read(tollgate::store::access_sql::provider_keys)
                .await
            {
                Ok(rows) => match state.vault.sync(&rows) {
                    Ok(n) => tracing::info!(added = n, "provider keys reloaded"),
                    Err(e) => tracing::error!(error = %e, "provider keys not reloaded"),
                },
                Err(e) => tracing::error!(error = %e, "provider keys not reloaded"),
            }
            let Some(path) = &path else {
                tracing::warn!(
                    "SIGHUP: no config file to reload prices from (start with --config)"
                );
                continue;
            };
            match tollgate::app::reload_prices(&state, path).await {
                Ok(n) => tracing::info!(models = n, file = %path.display(), "prices reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "prices not reloaded; the old table stays in force")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (state, path, hangup);
}

/// Opens an existing database for reading only (never creates one).
fn open_existing(args: &DbArgs) -> Result<rusqlite::Connection, Failure> {
    let config = load(args.config.as_deref(), None, args.db.clone())?;
    if !config.store.path.exists() {
        return Err((
            EXIT_DATABASE,
            format!("no database at {}", config.store.path.display()),
        ));
    }
    store::open(&config.store, store::OpenMode::ReadOnly)
        .map_err(|e| (EXIT_DATABASE, e.to_string()))
}

fn report_costs(args: CostsArgs) -> Result<(), Failure> {
    use tollgate::ledger::report;
    let conn = open_existing(&args.db)?;
    let today = time::OffsetDateTime::now_utc().date();
    let since = report::parse_since(&args.since, today).map_err(|e| (2, e))?;
    let until = match &args.until {
        Some(u) => {
            report::format_day(report::parse_day(u).map_err(|e| (2, format!("--until {e}")))?)
        }
        None => report::format_day(today),
    };
    let rows = store::report_sql::cost_report(&conn, args.by, &since, &until)
        .map_err(|e| (EXIT_DATABASE, format!("cannot read the cost rollups: {e}")))?;
    let savings = store::report_sql::cache_savings(&conn, &since, &until)
        .map_err(|e| (EXIT_DATABASE, format!("cannot read the cache savings: {e}")))?;
    let out =
        report::render(args.format, args.by, &since, &until, &rows, savings).map_err(|e| (1, e))?;
    print!("{out}");
    Ok(())
}

fn audit_verify(args: VerifyArgs) -> Result<(), Failure> {
    use tollgate::audit::{self, checkpoint};
    let config = load(args.db.config.as_deref(), None, args.db.db.clone())?;
    // An explicit --key-file wins over $TOLLGATE_AUDIT_KEY, which wins over the config.
    let no_env = |_: &str| None;
    let key = match &args.key_file {
        Some(file) => audit::load_key(Some(file), &no_env),
        None => audit::load_key(config.audit.key_file.as_deref(), &ProcessEnv),
    }
    .map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    let mut anchors = Vec::new();
    for a in &args.anchor {
        anchors.push(
            a.parse()
                .map_err(|_| (2, format!("--anchor {a:?}: expected SEQ:HASH (64 hex)")))?,
        );
    }
    for file in &args.checkpoints {
        let text = std::fs::read_to_string(file)
            .map_err(|e| (EXIT_CONFIG, format!("cannot read {}: {e}", file.display())))?;
        let parsed = checkpoint::parse_file(&text)
            .map_err(|e| (EXIT_CONFIG, format!("{}: {e}", file.display())))?;
        anchors.extend(parsed.into_iter().map(|(a, _)| a));
    }
    let conn = open_existing(&args.db)?;
    match audit::verify_database(&conn, key, anchors) {
        Ok(v) => {
            match v.head {
                Some(head) => println!("ok: {} entries checked, head {head}", v.entries),
                None => println!("ok: 0 entries checked (empty ledger)"),
            }
            Ok(())
        }
        Err(audit::VerifyError::Failed(f)) => {
            println!("FAILED at seq {}: {:?}: {}", f.seq, f.kind, f.message);
            Err((1, "audit verification failed".into()))
        }
        Err(e) => Err((EXIT_DATABASE, e.to_string())),
    }
}

fn audit_head(args: DbArgs) -> Result<(), Failure> {
    let conn = open_existing(&args)?;
    match store::audit_sql::head(&conn).map_err(|e| (EXIT_DATABASE, e.to_string()))? {
        Some((seq, hash)) => {
            println!("{}", tollgate::audit::checkpoint::Anchor { seq, hash });
            Ok(())
        }
        None => Err((1, "the audit ledger is empty".into())),
    }
}

fn admin_db(
    db: &DbArgs,
) -> Result<
    (
        tollgate::config::Config,
        rusqlite::Connection,
        tollgate::audit::encoding::ChainKey,
    ),
    Failure,
> {
    let config = load(db.config.as_deref(), None, db.db.clone())?;
    let (conn, key) = commands::open_for_admin(&config, &ProcessEnv)?;
    Ok((config, conn, key))
}

fn keys(cmd: KeysCommand) -> Result<(), Failure> {
    match cmd {
        KeysCommand::Create {
            db,
            name,
            expires,
            models,
            limits,
        } => {
            let edit = tollgate::access::limits::LimitsEdit::from_flags(&limits.flags())
                .map_err(|e| (2, e))?;
            let (_, mut conn, key) = admin_db(&db)?;
            for line in
                commands::keys::create(&mut conn, &key, &name, expires.as_deref(), models, &edit)?
            {
                println!("{line}");
            }
        }
        KeysCommand::SetLimits { db, id, limits } => {
            let edit = tollgate::access::limits::LimitsEdit::from_flags(&limits.flags())
                .map_err(|e| (2, e))?;
            let (_, mut conn, key) = admin_db(&db)?;
            println!(
                "{}",
                commands::keys::set_limits(&mut conn, &key, &id, &edit)?
            );
        }
        KeysCommand::List { db, json } => {
            let conn = open_existing(&db)?;
            print!("{}", commands::keys::list(&conn, json)?);
        }
        KeysCommand::Revoke { db, id } => {
            let (_, mut conn, key) = admin_db(&db)?;
            println!("{}", commands::keys::revoke(&mut conn, &key, &id)?);
        }
    }
    Ok(())
}

fn modules(cmd: ModulesCommand) -> Result<(), Failure> {
    use commands::modules::{list, patch_from_pairs, reset, set};
    let switch = |on: bool| serde_json::json!({ "enabled": on });
    let line = match cmd {
        ModulesCommand::List { db, json } => {
            let config = load(db.config.as_deref(), None, db.db.clone())?;
            let conn = open_existing(&db)?;
            print!("{}", list(&config.modules, &conn, json)?);
            return Ok(());
        }
        ModulesCommand::Enable { db, name } => {
            let (config, mut conn, key) = admin_db(&db)?;
            set(&config.modules, &mut conn, &key, &name, &switch(true))?
        }
        ModulesCommand::Disable { db, name } => {
            let (config, mut conn, key) = admin_db(&db)?;
            set(&config.modules, &mut conn, &key, &name, &switch(false))?
        }
        ModulesCommand::Set { db, name, settings } => {
            let patch = patch_from_pairs(&settings)?;
            let (config, mut conn, key) = admin_db(&db)?;
            set(&config.modules, &mut conn, &key, &name, &patch)?
        }
        ModulesCommand::Reset { db, name } => {
            let (config, mut conn, key) = admin_db(&db)?;
            reset(&config.modules, &mut conn, &key, &name)?
        }
    };
    println!("{line}");
    Ok(())
}

fn cache(cmd: CacheCommand) -> Result<(), Failure> {
    let out = match cmd {
        CacheCommand::Stats { db, json } => commands::cache::stats(&open_existing(&db)?, json)?,
        CacheCommand::Purge {
            db,
            namespace,
            model,
        } => {
            let (_, mut conn, key) = admin_db(&db)?;
            commands::cache::purge(&mut conn, &key, namespace, model)?
        }
    };
    print!("{out}");
    Ok(())
}

fn set_provider_key(db: DbArgs, provider: &str) -> Result<(), Failure> {
    let mut plaintext = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut plaintext)
        .map_err(|e| (1, format!("cannot read the key from standard input: {e}")))?;
    let (config, mut conn, key) = admin_db(&db)?;
    let out = commands::vault::set_key(&mut conn, &key, &config, &ProcessEnv, provider, plaintext)?;
    println!("{out}");
    Ok(())
}

fn rotate_vault(db: DbArgs, new_key_file: &std::path::Path) -> Result<(), Failure> {
    let text = std::fs::read_to_string(new_key_file).map_err(|e| {
        (
            EXIT_CONFIG,
            format!("cannot read {}: {e}", new_key_file.display()),
        )
    })?;
    let (config, mut conn, key) = admin_db(&db)?;
    println!(
        "{}",
        commands::vault::rotate(&mut conn, &key, &config, &ProcessEnv, &text)?
    );
    Ok(())
}

fn warn_if_prices_stale(max_age_days: u64) {
    use commands::prices::as_of;
    let today = time::OffsetDateTime::now_utc().date();
    match as_of::builtin_as_of() {
        Some(date) => {
            if let Some(warning) = as_of::staleness_warning(date, today, max_age_days) {
                tracing::warn!("{warning}");
            }
        }
        None => tracing::warn!("the built-in price table states no as-of date"),
    }
}

fn prices(cmd: PricesCommand) -> Result<(), Failure> {
    use commands::prices;
    match cmd {
        PricesCommand::Import {
            db,
            file,
            format,
            dry_run,
        } => {
            let opts = prices::ImportOptions {
                file: &file,
                format,
                dry_run,
                actor: commands::actor(),
            };
            let out = if dry_run {
                let config = load(db.config.as_deref(), None, db.db.clone())?;
                let mut conn = if config.store.path.exists() {
                    Some(open_existing(&db)?)
                } else {
                    None
                };
                prices::import(&opts, conn.as_mut(), None, &config.prices)?
            } else {
                let (config, mut conn, key) = admin_db(&db)?;
                prices::import(&opts, Some(&mut conn), Some(&key), &config.prices)?
            };
            print!("{out}");
        }
        PricesCommand::List { db, model, format } => {
            let config = load(db.config.as_deref(), None, db.db.clone())?;
            let stored = if config.store.path.exists() {
                store::access_sql::price_overrides(&open_existing(&db)?).map_err(|e| {
                    (
                        EXIT_DATABASE,
                        format!("cannot read the price overrides: {e}"),
                    )
                })?
            } else {
                Default::default()
            };
            let in_force =
                prices::InForce::load(&config.prices, &stored).map_err(|e| (EXIT_CONFIG, e))?;
            let today = time::OffsetDateTime::now_utc().date();
            match prices::list(&in_force, model.as_deref(), format, today) {
                Some(out) => print!("{out}"),
                None => {
                    return Err((
                        1,
                        format!("no price in force for {:?}", model.unwrap_or_default()),
                    ));
                }
            }
        }
    }
    Ok(())
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
