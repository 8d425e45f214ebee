//! `cuttle completions SHELL` and `cuttle man DIR`: shell completions and man pages made
//! from the clap definition in [`crate::cli`], so they always match the installed binary.
//!
//! They are hidden subcommands rather than build-script output: a build script would have
//! to compile the whole command line a second time on every build, and its files would
//! sit in a target directory no installer looks in. An installer runs the installed
//! `cuttle` instead. Nothing here talks to cuttle-api.

use std::path::Path;

use clap::CommandFactory;

use crate::Cli;
use crate::error::Failure;

/// Writes the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "cuttle", &mut script);
    crate::output::print(&String::from_utf8_lossy(&script))
}

/// Writes one man page per visible command (`cuttle.1`, `cuttle-run.1`,
/// `cuttle-run-wait.1`, ...) into `dir`, creating it if needed, and lists the files on
/// stdout.
pub fn man_pages(dir: &Path) -> Result<(), Failure> {
    let shown = dir.display();
    std::fs::create_dir_all(dir).map_err(|error| {
        Failure::Invalid(format!(
            "man: cannot create {shown}: {error}; pick a directory you may write to"
        ))
    })?;
    clap_mangen::generate_to(Cli::command(), dir).map_err(|error| {
        Failure::Invalid(format!(
            "man: cannot write the pages into {shown}: {error}; pick a directory you may write to"
        ))
    })?;
    let mut pages: Vec<String> = std::fs::read_dir(dir)
        .map_err(Failure::Output)?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("cuttle") && name.ends_with(".1"))
        .collect();
    pages.sort();
    crate::output::print(&format!(
        "wrote {} man pages into {shown}: {}",
        pages.len(),
        pages.join(" ")
    ))
}
