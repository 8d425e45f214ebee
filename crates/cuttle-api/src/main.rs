//! The cuttle-api binary: parse flags, read the config file, start logging, open the
//! database, bind, serve until SIGTERM/SIGINT. All the work is in the library.

use std::process::ExitCode;

use clap::Parser;

use cuttle_api::{Cli, FileConfig, Settings};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cuttle-api: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("cuttle-api: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let file: FileConfig = cuttle_runtime::config::load_file(cli.config.as_deref())?;
    let settings = Settings::resolve(cli, file, std::env::var_os("HOME").map(Into::into))?;
    cuttle_runtime::telemetry::init_daemon(
        "cuttle-api",
        settings.log_format,
        std::env::var("CUTTLE_LOG").ok().as_deref(),
        &[],
    );
    let shutdown = cuttle_runtime::shutdown::on_signal()?;
    let api = cuttle_api::spawn(settings, shutdown.clone()).await?;
    // Migrated and both listeners bound: systemd may start what comes after cuttle-api.
    let _watchdog = cuttle_runtime::notify::ready_and_watch(&shutdown);
    api.wait().await
}
