//! `cuttle`, the command-line client of cuttle-api. Only parses the command line, runs it
//! and turns a failure into one `cuttle: ...` line on stderr and an exit code; the work is
//! in the `cuttle_cli` library.

use std::process::ExitCode;

use clap::Parser;
use cuttle_cli::Cli;

fn main() -> ExitCode {
    // clap exits 2 on a usage error (and 0 for --help / --version) by itself.
    let cli = Cli::parse();
    // The environment is read here, at the edge: the library takes the path.
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let xdg = std::env::var_os("XDG_CONFIG_HOME").map(std::path::PathBuf::from);
    let token_file = cuttle_proto::bearer::default_token_file(home.as_deref(), xdg.as_deref());
    match cuttle_cli::run(cli, token_file.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("cuttle: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
