//! The `cuttle-sim` binary: parses the command line and hands it to [`cuttle_sim::cli::run`];
//! all behaviour lives in the library so tests can drive it. It must stay this thin.

use std::process::ExitCode;

use clap::Parser;
use cuttle_sim::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    match run(&cli, &mut stdout.lock(), &mut stderr.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cuttle-sim: {error:#}");
            ExitCode::FAILURE
        }
    }
}
