//! The command line.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "A single-binary LLM proxy that keeps the books"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve(ServeArgs),
    /// Create the database or bring its schema up to date, then exit.
    Migrate(DbArgs),
    /// Reports over the recorded requests.
    #[command(subcommand)]
    Report(ReportCommand),
    /// The audit ledger.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Client keys: issue, list, revoke.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Runtime-toggleable modules: list, switch on or off, reconfigure.
    #[command(subcommand)]
    Modules(ModulesCommand),
    /// The exact response cache: what it holds and saved; purge it.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Provider API keys stored encrypted in the database.
    #[command(subcommand)]
    Providers(ProvidersCommand),
    /// The master key that seals stored provider keys.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Prices: import a price list as overrides, list what is in force.
    #[command(subcommand)]
    Prices(PricesCommand),
}

#[derive(Debug, Subcommand)]
pub enum PricesCommand {
    /// Load a price list as database overrides: tollgate's TOML
    /// (`[prices."provider/model"]` tables or `[[price]]` entries) or
    /// LiteLLM's model_prices_and_context_window.json. Everything is checked
    /// before anything is written; the added and changed prices are written
    /// with one audit entry in one transaction, and reported as a diff.
    Import {
        #[command(flatten)]
        db: DbArgs,
        file: PathBuf,
        #[arg(long, value_enum, default_value = "auto")]
        format: crate::commands::prices::ImportFormat,
        /// Show the diff, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The prices in force (built-in, then config file, then database
    /// overrides), every rate, and where each price came from.
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Only this model (`model` or `provider/model`).
        #[arg(long)]
        model: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: crate::commands::prices::ListFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Issue a client key; it is printed once, alone on the last line.
    Create {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        name: String,
        /// Last valid day (YYYY-MM-DD, UTC) or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
        /// Models the key may use, comma-separated (default: any).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Change a key's limits (by id or display prefix): each flag given
    /// sets its limit, `none` clears it (the configured default applies);
    /// limits not named are left as they are.
    SetLimits {
        #[command(flatten)]
        db: DbArgs,
        id: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// List client keys (never the keys themselves). With --json, each
    /// key's spending in its budget window is shown from the costs recorded
    /// in the database (`spent_from: "recorded"`): reservations of requests
    /// in flight on a running server are not visible to this process, so
    /// `reserved` is 0 here; `GET /admin/v1/keys` shows the live numbers.
    List {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a client key by id or display prefix.
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        id: String,
    },
}

/// A key's own limits; without a flag, the configured default applies.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Requests per minute (a whole number from 1), or `none`.
    #[arg(long, value_name = "N|none", allow_hyphen_values = true)]
    pub rpm: Option<String>,
    /// Tokens (input + output) per minute, or `none`.
    #[arg(long, value_name = "N|none", allow_hyphen_values = true)]
    pub tpm: Option<String>,
    /// Requests in flight at once, or `none`.
    #[arg(long, value_name = "N|none", allow_hyphen_values = true)]
    pub max_parallel: Option<String>,
    /// Budget in USD, exact (at most 8 decimal places, e.g. 25.50), or `none`.
    #[arg(long, value_name = "DECIMAL|none", allow_hyphen_values = true)]
    pub budget_usd: Option<String>,
    /// The window the budget is spent in (needs a budget), or `none`.
    #[arg(long, value_name = "day|month|total|none", allow_hyphen_values = true)]
    pub budget_window: Option<String>,
}

impl LimitArgs {
    pub fn flags(self) -> crate::access::limits::LimitFlags {
        crate::access::limits::LimitFlags {
            rpm: self.rpm,
            tpm: self.tpm,
            max_parallel: self.max_parallel,
            budget_usd: self.budget_usd,
            budget_window: self.budget_window,
        }
    }
}

/// Module settings changed here are stored in the database, audited, win
/// over the config file's `[modules.NAME]` and reach a running gateway
/// within a second.
#[derive(Debug, Subcommand)]
pub enum ModulesCommand {
    /// Every module: on or off, its settings, and where they come from.
    List {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        json: bool,
    },
    /// Switch a module on.
    Enable {
        #[command(flatten)]
        db: DbArgs,
        name: String,
    },
    /// Switch a module off.
    Disable {
        #[command(flatten)]
        db: DbArgs,
        name: String,
    },
    /// Change a module's settings: `tollgate modules set rate_limit rpm=60`.
    Set {
        #[command(flatten)]
        db: DbArgs,
        name: String,
        #[arg(value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
    },
    /// Drop a module's runtime settings: the config file's apply again.
    Reset {
        #[command(flatten)]
        db: DbArgs,
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Entries and bytes stored, hits, misses and savings recorded.
    Stats {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        json: bool,
    },
    /// Deletes cached answers (all, or of a namespace and/or model),
    /// audited as `cache.purge`; a running gateway stops serving them
    /// within a second.
    Purge {
        #[command(flatten)]
        db: DbArgs,
        /// Only this namespace's entries (a client key id, or `shared`).
        #[arg(long)]
        namespace: Option<String>,
        /// Only entries of this (resolved) model.
        #[arg(long)]
        model: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// Store an API key for PROVIDER, read from standard input (never argv).
    SetKey {
        #[command(flatten)]
        db: DbArgs,
        provider: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Re-encrypt every stored provider key under a new master key, in one
    /// transaction (works while `serve` runs).
    Rotate {
        #[command(flatten)]
        db: DbArgs,
        /// File holding the new master key (base64 of 32 bytes).
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
    /// Print a new random master key (base64), for TOLLGATE_MASTER_KEY.
    GenerateKey,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Requests, tokens and exact costs, grouped. Reads only; works on a copy
    /// of the database or while `serve` runs.
    Costs(CostsArgs),
}

#[derive(Debug, Args)]
pub struct CostsArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// First day included: `7d` (the last 7 days, today included) or YYYY-MM-DD.
    #[arg(long, default_value = "30d")]
    pub since: String,
    /// Last day included, YYYY-MM-DD (default: today, UTC).
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, value_enum, default_value = "day")]
    pub by: crate::store::report_sql::GroupBy,
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::ledger::report::Format,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole chain, offline; exit 0 only when everything holds.
    Verify(VerifyArgs),
    /// Print the chain head as SEQ:HASH, to publish elsewhere.
    Head(DbArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// File holding the audit key (64 hex characters). Without it:
    /// $TOLLGATE_AUDIT_KEY, then audit.key_file from the config.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// A checkpoint file written by `serve` (repeatable).
    #[arg(long, value_name = "FILE")]
    pub checkpoints: Vec<PathBuf>,
    /// A head published earlier, SEQ:HASH (repeatable).
    #[arg(long, value_name = "SEQ:HASH")]
    pub anchor: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (default: $TOLLGATE_CONFIG, else the embedded defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on; overrides the config and $TOLLGATE_LISTEN.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Database file; overrides the config and $TOLLGATE_DB.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DbArgs {
    /// Config file (default: $TOLLGATE_CONFIG, else the embedded defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database file; overrides the config and $TOLLGATE_DB.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
}
