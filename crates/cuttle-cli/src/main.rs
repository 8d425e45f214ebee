//! `cuttle`, the command-line client of cuttle-api. Only parses the command line, runs it
//! and turns a failure into one `cuttle: ...` line on stderr and an exit code; the work is
//! in the `cuttle_cli` library.

use std::process::ExitCode;

use clap::Parser;
use cuttle_cli::Cli;

fn main() -> ExitCode {
    // clap exits 2 on a usage error (and 0 for --help / --version) by itself.
    let cli = Cli::parse();
    match cuttle_cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("cuttle: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
