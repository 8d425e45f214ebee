//! The reaper: every `reap_interval`, jobs whose supervisor stopped heartbeating for longer
//! than `supervisor_grace` become `dead` ("supervisor lost"), and jobs a dispatcher claimed
//! but never started (it lost its lease) go back to `queued` with their nodes freed.
//!
//! The reaper never runs lab commands: an ended job's nodes that may need a nuke are
//! handed to the tube's dispatcher (DispatchService/ClaimReleases), which owns the lab's
//! commands. All the rules are `cuttle_core::dispatch::decide_reap`.

use tokio_util::sync::CancellationToken;

use cuttle_core::JobId;

use crate::{App, now};

/// A requeued job's copy was reserved by the lost dispatcher; beanstalkd makes it ready
/// again when that connection closes, unless beanstalkd itself restarted without its
/// binlog meanwhile and lost it. Then the record's id names nothing and the job would
/// wait forever: forget the id, so the enqueue loop puts the job again.
async fn put_again_if_lost(app: &App, job_id: JobId) {
    let Ok((job, _)) = app.db(move |store| store.get_job(job_id)).await else {
        return;
    };
    let Some(beanstalk_id) = job.beanstalk_id else {
        return;
    };
    if crate::enqueue::forget_lost_copy(app, job_id, beanstalk_id, &job.config_yaml).await
        == Some(true)
    {
        tracing::warn!(%job_id, beanstalk_id, "beanstalkd lost the requeued job's copy; it is put again");
    }
}

/// Runs reaper passes until `shutdown` is cancelled.
pub async fn reap_loop(app: App, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(app.settings().reap_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let grace_ms = i64::try_from(app.settings().supervisor_grace.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Right after a start, silence may be our own: supervisors could not reach us
        // while we were down. Give them one grace from now before judging them.
        if app.uptime() < app.settings().supervisor_grace {
            continue;
        }
        match app.db(move |store| store.reap(grace_ms, now())).await {
            Ok(report) => {
                for (job_id, reason) in &report.supervisor_lost {
                    tracing::warn!(%job_id, %reason, "job dead: supervisor lost");
                }
                for &job_id in &report.requeued {
                    tracing::warn!(%job_id, "job requeued: its dispatcher lost the lease before starting it");
                    put_again_if_lost(&app, job_id).await;
                }
                if !report.freed_nodes.is_empty() {
                    let nodes: Vec<String> =
                        report.freed_nodes.iter().map(ToString::to_string).collect();
                    tracing::info!(nodes = %nodes.join(","), "freed nodes of jobs back in the queue");
                }
            }
            Err(status) => tracing::warn!(detail = status.message(), "reaper pass failed"),
        }
        crate::aging::age_queued_jobs(&app, 10_000).await;
    }
}
