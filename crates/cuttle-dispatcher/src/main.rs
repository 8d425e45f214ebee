//! The cuttle-dispatcher binary: parse flags, read the config file, start logging, then
//! dispatch until SIGTERM/SIGINT. All the work is in the library.

use std::process::ExitCode;

use clap::Parser;

use cuttle_dispatcher::{Cli, FileConfig, Settings};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cuttle-dispatcher: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("cuttle-dispatcher: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let file: FileConfig = cuttle_runtime::config::load_file(cli.config.as_deref())?;
    let cwd = std::env::current_dir()?;
    let settings = Settings::resolve(cli, file, cwd)?;
    settings.lab.check_runner()?;
    cuttle_runtime::telemetry::init(
        settings.log_format,
        std::env::var("CUTTLE_LOG").ok().as_deref(),
    );
    let shutdown = cuttle_runtime::shutdown::on_signal()?;
    cuttle_dispatcher::run(settings, shutdown).await?;
    Ok(())
}
