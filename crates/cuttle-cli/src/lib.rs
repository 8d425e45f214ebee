//! The `cuttle` command-line client: parses nothing itself (see [`cli`]), but runs a parsed
//! command line against cuttle-api and prints the answer.
//!
//! Kept as a library so the binary stays a thin `main` and the request building, tables and
//! JSON shapes are unit-tested without a server. It never parses job YAML (cuttle-api does)
//! and never prints errors itself: they come back as [`Failure`] for `main` to report.

pub mod cli;
pub mod client;
pub mod error;
pub mod health;
pub mod kill;
pub mod nodes;
pub mod output;
pub mod queue;
pub mod runs;
pub mod schedule;
pub mod time;

pub use cli::Cli;
pub use error::Failure;

use cli::Command;
use client::{Api, BearerToken};

/// The global options every command needs.
#[derive(Debug)]
pub struct Context {
    /// cuttle-api's URL.
    pub api_url: String,
    /// Admin token, if any.
    pub token: Option<String>,
    /// Print JSON instead of text.
    pub json: bool,
}

impl Context {
    /// Connects to cuttle-api. Commands call this after validating their input, so bad
    /// input is reported even when the API is down.
    pub async fn connect(&self) -> Result<Api, Failure> {
        let token = BearerToken::new(self.token.as_deref())?;
        Api::connect(&self.api_url, token).await
    }
}

/// Runs a parsed command line to completion on a single-threaded runtime.
pub fn run(cli: Cli) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::Runtime)?;
    let context = Context {
        api_url: cli.api,
        token: cli.token,
        json: cli.json,
    };
    runtime.block_on(async {
        match cli.command {
            Command::Node(command) => nodes::run(&context, command).await,
            Command::Schedule(args) => schedule::run(&context, args).await,
            Command::Run(command) => runs::run(&context, command).await,
            Command::Job(command) => runs::job(&context, command).await,
            Command::Kill(args) => kill::run(&context, args).await,
            Command::Queue(command) => queue::run(&context, command).await,
            Command::Health => health::run(&context).await,
        }
    })
}
