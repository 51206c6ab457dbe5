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
