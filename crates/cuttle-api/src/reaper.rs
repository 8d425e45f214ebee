//! The reaper: every `reap_interval`, jobs whose supervisor stopped heartbeating for longer
//! than `supervisor_grace` become `dead` ("supervisor lost"), and jobs a dispatcher claimed
//! but never started (it lost its lease) go back to `queued` with their nodes freed.
//!
//! Silence is judged in cuttle-api's own monotonic time: a supervisor is lost only if its
//! last heartbeat is older than the grace *and* cuttle-api has been up, with its database
//! answering and the wall clock steady, for a whole grace ([`OutageClock`]). A database
//! outage, a restart of cuttle-api or a clock jump silences every supervisor at once and
//! is nobody's death.
//!
//! The reaper never runs lab commands: an ended job's nodes that may need a nuke are
//! handed to the tube's dispatcher (DispatchService/ClaimReleases), which owns the lab's
//! commands. All the rules are `cuttle_core::dispatch::decide_reap`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The last moment cuttle-api could not vouch for supervisors' silence: its start, a
/// failed database request, or a jump of the wall clock. Monotonic time only.
#[derive(Debug)]
pub struct OutageClock {
    last: Mutex<(Instant, &'static str)>,
}

impl OutageClock {
    pub fn new(started: Instant) -> OutageClock {
        OutageClock {
            last: Mutex::new((started, "cuttle-api started")),
        }
    }

    /// Notes an outage at `at` (never moves the clock back).
    pub fn note(&self, at: Instant, why: &'static str) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if at > last.0 {
            *last = (at, why);
        }
    }

    /// How long cuttle-api has been in good health at `now`, and what ended the last
    /// outage.
    pub fn healthy_for(&self, now: Instant) -> (Duration, &'static str) {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        (now.saturating_duration_since(last.0), last.1)
    }
}

/// Notices the wall clock jumping: between two ticks the wall clock and the monotonic
/// clock must advance alike (within `tolerance`).
#[derive(Debug)]
pub struct JumpDetector {
    last: Option<(Instant, i64)>,
    tolerance_ms: i64,
}

impl JumpDetector {
    pub fn new(tolerance: Duration) -> JumpDetector {
        JumpDetector {
            last: None,
            tolerance_ms: i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// The jump in milliseconds (wall minus monotonic advance) since the last call, if it
    /// is larger than the tolerance.
    pub fn observe(&mut self, mono: Instant, wall_ms: i64) -> Option<i64> {
        let previous = self.last.replace((mono, wall_ms));
        let (last_mono, last_wall) = previous?;
        let mono_ms = i64::try_from(mono.saturating_duration_since(last_mono).as_millis())
            .unwrap_or(i64::MAX);
        let jump = (wall_ms - last_wall) - mono_ms;
        (jump.abs() > self.tolerance_ms).then_some(jump)
    }
}

/// Runs reaper passes until `shutdown` is cancelled.
pub async fn reap_loop(app: App, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(app.settings().reap_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let grace = app.settings().supervisor_grace;
    let grace_ms = app.settings().supervisor_grace_ms();
    let mut jumps = JumpDetector::new(Duration::from_secs(2));
    let mut waiting_logged = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Ended suite runs get their report whatever the supervisors' health.
        crate::reports::report_ended_runs(&app).await;
        let mono = Instant::now();
        if let Some(jump_ms) = jumps.observe(mono, now().0) {
            tracing::warn!(
                jump_ms,
                "the wall clock jumped; judging no supervisor for one grace"
            );
            app.outages().note(mono, "the wall clock jumped");
        }
        // Silence may be our own: right after a start, a database outage or a clock jump,
        // supervisors could not reach us (or their heartbeats look old). Give them one
        // whole grace of good health before judging them.
        let (healthy_for, since) = app.outages().healthy_for(mono);
        if healthy_for < grace {
            if !waiting_logged && app.uptime() >= grace {
                tracing::info!(
                    reason = since,
                    "the reaper waits one grace before judging supervisors"
                );
                waiting_logged = true;
            }
            continue;
        }
        waiting_logged = false;
        // The health check again, and the clock, once the pass holds the database: a pass
        // that waited out an outage is called off, not run with stale silence.
        let judge = app.clone();
        let clock = move || (judge.outages().healthy_for(Instant::now()).0 >= grace).then(now);
        match app.db(move |store| store.reap_with(grace_ms, clock)).await {
            Ok(None) => {
                crate::metrics::reaper("called_off", 1);
                tracing::info!(
                    "reaper pass called off: cuttle-api was not healthy for a whole grace"
                );
            }
            Ok(Some(report)) => {
                crate::metrics::reaper("dead_supervisor_lost", report.supervisor_lost.len());
                crate::metrics::reaper("requeued_lease_lost", report.requeued.len());
                crate::metrics::reaper("nodes_freed", report.freed_nodes.len());
                for (job_id, reason) in &report.supervisor_lost {
                    tracing::warn!(%job_id, %reason, "job dead: supervisor lost");
                }
                for &job_id in &report.requeued {
                    tracing::warn!(%job_id, "job requeued: its dispatcher lost the lease before starting it");
                    put_again_if_lost(&app, job_id).await;
                }
                if !report.freed_nodes.is_empty() {
                    app.events().send(
                        None,
                        crate::events::Kind::NodesFreed,
                        report.freed_nodes.len(),
                    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_restarts_the_healthy_time_and_never_goes_back() {
        let start = Instant::now();
        let clock = OutageClock::new(start);
        let later = start + Duration::from_secs(100);
        assert_eq!(clock.healthy_for(later).0, Duration::from_secs(100));
        clock.note(start + Duration::from_secs(90), "db");
        assert_eq!(clock.healthy_for(later), (Duration::from_secs(10), "db"));
        clock.note(start + Duration::from_secs(10), "older");
        assert_eq!(clock.healthy_for(later).1, "db");
    }

    #[test]
    fn a_clock_jump_is_noticed_and_steady_time_is_not() {
        let start = Instant::now();
        let mut jumps = JumpDetector::new(Duration::from_secs(2));
        assert_eq!(jumps.observe(start, 1_000_000), None);
        assert_eq!(
            jumps.observe(start + Duration::from_secs(1), 1_001_000),
            None
        );
        assert_eq!(
            jumps.observe(start + Duration::from_secs(2), 1_122_000),
            Some(120_000)
        );
        assert_eq!(
            jumps.observe(start + Duration::from_secs(3), 1_023_000),
            Some(-100_000)
        );
    }
}
