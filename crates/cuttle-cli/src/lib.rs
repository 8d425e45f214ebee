//! The `cuttle` command-line client: parses nothing itself (see [`cli`]), but runs a parsed
//! command line against cuttle-api and prints the answer.
//!
//! Kept as a library so the binary stays a thin `main` and the request building, tables and
//! JSON shapes are unit-tested without a server. It never parses job YAML (cuttle-api does)
//! and never prints errors itself: they come back as [`Failure`] for `main` to report.

pub mod admin;
pub mod autosuite;
pub mod cli;
pub mod client;
pub mod docs;
pub mod error;
pub mod health;
pub mod kill;
pub mod nodes;
pub mod output;
pub mod preset;
pub mod queue;
pub mod runs;
pub mod schedule;
pub mod suite;
pub mod time;

pub use cli::Cli;
pub use error::Failure;

use cli::Command;
use client::Api;

/// The global options every command needs.
#[derive(Debug)]
pub struct Context {
    /// cuttle-api's URL.
    pub api_url: String,
    /// The caller's API token, if any.
    pub token: Option<String>,
    /// The CA certificate that signed cuttle-api's TLS certificate (`https://` URLs).
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Print JSON instead of text.
    pub json: bool,
    /// Whether statuses on stdout are coloured.
    pub paint: output::Paint,
}

impl Context {
    /// Connects to cuttle-api. Commands call this after validating their input, so bad
    /// input is reported even when the API is down.
    pub async fn connect(&self) -> Result<Api, Failure> {
        let token = client::bearer(self.token.as_deref())?;
        let ca = match &self.tls_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|error| {
                Failure::Invalid(format!(
                    "tls-ca-file: cannot read {}: {error}",
                    path.display()
                ))
            })?),
            None => None,
        };
        Api::connect(&self.api_url, token, ca.as_deref()).await
    }
}

/// The token to send: `--token`, then `CUTTLE_TOKEN` (both in `cli.token`), then the
/// first line of `token_file` (`~/.config/cuttle/token`) when it exists.
pub fn resolve_token(
    given: Option<String>,
    token_file: Option<&std::path::Path>,
) -> Result<Option<String>, Failure> {
    if let Some(token) = given.filter(|token| !token.trim().is_empty()) {
        return Ok(Some(token));
    }
    let Some(path) = token_file else {
        return Ok(None);
    };
    cuttle_proto::bearer::read_token_file(path)
        .map_err(|error| Failure::Invalid(format!("token: {error}")))
}

/// Runs a parsed command line to completion on a single-threaded runtime. `token_file`
/// is where a token is read from when neither --token nor CUTTLE_TOKEN gives one.
pub fn run(cli: Cli, token_file: Option<&std::path::Path>) -> Result<(), Failure> {
    // Completions and man pages describe the command line itself: no token, no API.
    match &cli.command {
        Command::Completions(args) => return docs::completions(args.shell),
        Command::Man(args) => return docs::man_pages(&args.dir),
        _ => {}
    }
    let token = resolve_token(cli.token, token_file)?;
    let no_color = std::env::var("NO_COLOR").ok();
    let paint = output::Paint::resolve(
        cli.color,
        no_color.as_deref(),
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::Runtime)?;
    let context = Context {
        api_url: cli.api,
        token,
        tls_ca_file: cli.tls_ca_file,
        json: cli.json,
        paint,
    };
    runtime.block_on(async {
        match cli.command {
            Command::Node(command) => nodes::run(&context, command).await,
            Command::Schedule(args) => schedule::run(&context, args).await,
            Command::Suite(args) => suite::run(&context, *args).await,
            Command::Preset(command) => preset::run(&context, command).await,
            Command::Autosuite(command) => autosuite::run(&context, command).await,
            Command::Run(command) => runs::run(&context, command).await,
            Command::Job(command) => runs::job(&context, command).await,
            Command::Kill(args) => kill::run(&context, args).await,
            Command::Queue(command) => queue::run(&context, command).await,
            Command::Health => health::run(&context).await,
            Command::Admin(command) => admin::run(&context, command).await,
            Command::Completions(_) | Command::Man(_) => Ok(()),
        }
    })
}
