//! The end of a suite run: when its last job ends (or its results timeout passes), its
//! report is written to the log and, when the run has an `--email` and the lab a
//! `mail_command`, mailed. This is the work of teuthology's last_in_suite job, done
//! without a node. Each report is claimed in the database first, so it is written once
//! even with several passes racing; a mail that fails is logged with the report.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use cuttle_core::suite::{ReportedJob, RunReport, run_report};

use crate::{App, now};

/// How long the mail command may take.
const MAIL_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes the report of every suite run that has ended or timed out.
pub async fn report_ended_runs(app: &App) {
    let runs = match app.db(|store| store.unreported_suite_runs()).await {
        Ok(runs) => runs,
        Err(status) => {
            tracing::warn!(
                detail = status.message(),
                "could not look for ended suite runs"
            );
            return;
        }
    };
    for (name, pins, created_at, living) in runs {
        let at = now();
        let timed_out = pins.results_timeout_s.is_some_and(|limit| {
            at.0 - created_at.0 >= i64::try_from(limit.saturating_mul(1000)).unwrap_or(i64::MAX)
        });
        if living > 0 && !timed_out {
            continue;
        }
        let claimed = name.clone();
        match app
            .db(move |store| store.claim_run_report(&claimed, at))
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(status) => {
                tracing::warn!(run = %name, detail = status.message(), "could not claim a run's report");
                continue;
            }
        }
        let loaded = name.clone();
        let jobs = match app.db(move |store| store.get_run(&loaded)).await {
            Ok((_, jobs)) => jobs,
            Err(status) => {
                tracing::warn!(run = %name, detail = status.message(), "could not load an ended run");
                continue;
            }
        };
        let reported: Vec<ReportedJob<'_>> = jobs
            .iter()
            .map(|j| ReportedJob {
                id: j.id.0,
                status: j.status,
                description: &j.spec.description,
                reason: j.reason.as_deref(),
            })
            .collect();
        let report = run_report(name.as_str(), &pins, &reported, timed_out);
        tracing::info!(run = %name, subject = %report.subject, report = %report.body, "suite run report");
        if let (Some(to), Some(command)) = (&pins.email, &app.settings().suites.mail_command) {
            let from = &app.settings().suites.mail_from;
            match send(command, from, to, &report).await {
                Ok(()) => tracing::info!(run = %name, %to, "results e-mail sent"),
                Err(error) => {
                    tracing::warn!(run = %name, %to, %error, "results e-mail failed; the report is in the log")
                }
            }
        }
    }
}

/// The message piped to the mail command.
pub fn message(from: &str, to: &str, report: &RunReport) -> String {
    format!(
        "From: {from}\nTo: {to}\nSubject: {}\n\n{}",
        report.subject, report.body
    )
}

async fn send(command: &str, from: &str, to: &str, report: &RunReport) -> Result<(), String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run mail_command {command:?}: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(message(from, to, report).as_bytes())
        .await
        .map_err(|e| format!("mail_command {command:?} did not take the message: {e}"))?;
    drop(stdin);
    let output = tokio::time::timeout(MAIL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            format!(
                "mail_command {command:?} took longer than {}s",
                MAIL_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("mail_command {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mail_command {command:?} exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
