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
    // Every journal entry of this dispatcher carries its machine type.
    cuttle_runtime::telemetry::init_daemon(
        "cuttle-dispatcher",
        settings.log_format,
        std::env::var("CUTTLE_LOG").ok().as_deref(),
        &[("MACHINE_TYPE", settings.machine_type.as_str())],
    );
    let shutdown = cuttle_runtime::shutdown::on_signal()?;
    // Ready once configured: it waits for cuttle-api, beanstalkd and its lease on its own.
    let _watchdog = cuttle_runtime::notify::ready_and_watch(&shutdown);
    cuttle_dispatcher::run(settings, shutdown).await?;
    Ok(())
}
