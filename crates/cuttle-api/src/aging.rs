//! Aging on beanstalkd itself: a queued job whose effective priority (the policy's
//! `effective_priority`) has moved gets a copy with the new priority put on its tube, the
//! record switched to the copy, and the old copy deleted, so `cuttle queue list`,
//! `stats-job` and any other beanstalkd client see the true order. beanstalkc has no
//! `reserve-job`, so a copy is the only way to change the priority of a ready job we do
//! not hold. A dispatcher that meets an old copy discards it: the record names the live
//! one.
//!
//! Jobs in a dispatcher's window (`waiting`) are its business: it releases them with
//! their aged priority.

use cuttle_core::Job;

use crate::{App, now};

/// A job as the policy orders and ages it (its estimates play no part in either).
pub fn as_policy(job: &Job) -> cuttle_policy::QueuedJob {
    cuttle_policy::QueuedJob::new(
        u64::try_from(job.id.0).unwrap_or(0),
        job.spec.priority.get(),
        job.spec.n_nodes.get(),
        job.created_at.0,
    )
}

/// Replaces a queued job's beanstalkd copy with one at `priority`. Runs under the enqueue
/// lock so the retry loop never puts the same job at the same time. Logs and gives up on
/// failure: the job keeps its old copy, which is still live.
pub async fn requeue_copy(app: &App, job: &Job, priority: u32) {
    let Some(old_id) = job.beanstalk_id else {
        return;
    };
    let _guard = app.enqueuer().lock().await;
    let put = app
        .queue()
        .put(
            job.spec.machine_type.as_str(),
            job.config_yaml.clone().into_bytes(),
            priority,
            app.settings().job_ttr,
        )
        .await;
    let new_id = match put {
        Ok(id) => id,
        Err(error) => {
            tracing::warn!(job_id = %job.id, %error, "cannot put a copy with the new priority");
            return;
        }
    };
    let job_id = job.id;
    let switched = app
        .db(move |store| store.replace_beanstalk_copy(job_id, old_id, new_id, priority))
        .await;
    // Whichever copy the record does not name is stale: delete it (a dispatcher holding
    // it reserved discards it instead).
    let stale = if matches!(switched, Ok(true)) {
        old_id
    } else {
        new_id
    };
    if let Err(error) = app.queue().delete(stale).await {
        tracing::debug!(job_id = %job.id, stale, %error, "stale copy not deleted now; its dispatcher discards it");
    }
}

/// One aging pass: every queued job whose effective priority differs from its copy's
/// gets a new copy. At most `limit` jobs are looked at per pass, oldest first.
pub async fn age_queued_jobs(app: &App, limit: i64) {
    let Some(aging) = app.settings().policy.policy.aging else {
        return;
    };
    let mut copies = match app.db(move |store| store.queued_copies(limit)).await {
        Ok(copies) => copies,
        Err(status) => {
            tracing::warn!(detail = status.message(), "cannot list queued jobs to age");
            return;
        }
    };
    let at = now();
    // Copies are put again in the policy's order: beanstalkd serves equal priorities
    // first put, first out, so a suite keeps its order inside once aged.
    let policy = app.settings().policy.policy;
    copies.sort_by(|(a, _), (b, _)| {
        cuttle_policy::compare(&as_policy(a), &as_policy(b), at.0, &policy)
    });
    let mut aged = 0;
    for (job, live) in copies {
        let effective = cuttle_policy::effective_priority(&as_policy(&job), at.0, Some(aging));
        if effective != live {
            requeue_copy(app, &job, effective).await;
            aged += 1;
        }
    }
    if aged > 0 {
        tracing::info!(aged, "aged queued jobs on beanstalkd");
    }
}
