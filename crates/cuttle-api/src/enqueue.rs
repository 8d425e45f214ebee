//! Putting jobs on beanstalkd after they are recorded, and retrying the ones whose put
//! failed.
//!
//! **Invariant:** a job is recorded before it is put, and only one put is in flight per
//! job. All puts go through [`Enqueuer`]'s lock, held from the moment a run's jobs are
//! committed until their beanstalkd ids are recorded, so the retry loop never sees (and
//! re-puts) a job that a request is still putting. A job whose put failed stays `queued`
//! with no beanstalkd id and is put again by the retry loop: an accepted job is never
//! lost because beanstalkd blinked.
//!
//! Jobs are put in the policy's order, so among jobs of one priority beanstalkd's own
//! order (first put, first out) is the order inside a suite the policy wants, and a
//! dispatcher's look-ahead window sees a big suite's jobs in that order.

use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

use cuttle_core::{Job, JobId};
use cuttle_db::Store;
use cuttle_queue::QueueClient;

use crate::App;
use crate::aging::as_policy;

#[derive(Debug)]
pub struct Enqueuer {
    store: Store,
    queue: QueueClient,
    ttr: Duration,
    policy: cuttle_policy::PolicyConfig,
    lock: Mutex<()>,
    /// Told of every job put, so its tube's dispatcher plans at once.
    events: crate::events::Events,
}

/// Proof that the caller holds the enqueue lock.
#[derive(Debug)]
pub struct EnqueueGuard<'a>(#[allow(dead_code, reason = "held for its Drop")] MutexGuard<'a, ()>);

/// What a batch of puts achieved.
#[derive(Debug, Default)]
pub struct Enqueued {
    pub ids: Vec<(JobId, u64)>,
    /// Why the batch stopped early, if it did; the rest wait for the retry loop.
    pub failure: Option<String>,
}

impl Enqueuer {
    pub fn new(
        store: Store,
        queue: QueueClient,
        ttr: Duration,
        policy: cuttle_policy::PolicyConfig,
        events: crate::events::Events,
    ) -> Enqueuer {
        Enqueuer {
            store,
            queue,
            ttr,
            policy,
            lock: Mutex::new(()),
            events,
        }
    }

    pub async fn lock(&self) -> EnqueueGuard<'_> {
        EnqueueGuard(self.lock.lock().await)
    }

    /// Puts `jobs` (already recorded) on their tubes in the policy's order and records
    /// their ids. Stops at the first failed put; the rest stay pending for the retry loop.
    pub async fn put_all(&self, _guard: &EnqueueGuard<'_>, jobs: &[Job]) -> Enqueued {
        let mut outcome = Enqueued::default();
        let at = crate::now().0;
        let mut ordered: Vec<&Job> = jobs.iter().collect();
        let mut put_on: Vec<&cuttle_core::MachineType> = Vec::new();
        ordered
            .sort_by(|a, b| cuttle_policy::compare(&as_policy(a), &as_policy(b), at, &self.policy));
        for job in ordered {
            let put = self
                .queue
                .put(
                    job.spec.machine_type.as_str(),
                    job.config_yaml.clone().into_bytes(),
                    job.spec.priority.get(),
                    self.ttr,
                )
                .await;
            match put {
                Ok(beanstalk_id) => {
                    outcome.ids.push((job.id, beanstalk_id));
                    put_on.push(&job.spec.machine_type);
                }
                Err(error) => {
                    outcome.failure = Some(error.to_string());
                    break;
                }
            }
        }
        put_on.sort_unstable();
        for tube in put_on.chunk_by(|a, b| a == b) {
            self.events.send(
                Some(tube[0].clone()),
                crate::events::Kind::JobsQueued,
                tube.len(),
            );
        }
        if !outcome.ids.is_empty() {
            let store = self.store.clone();
            let ids = outcome.ids.clone();
            let recorded = tokio::task::spawn_blocking(move || store.set_beanstalk_ids(&ids)).await;
            match recorded {
                Ok(Ok(())) => {}
                // The jobs are on the tube but their ids are not recorded; the retry loop
                // will put them again, and the dispatcher drops the copy the record does
                // not name. Loud, because it means the database is failing.
                Ok(Err(error)) => {
                    tracing::error!(%error, "jobs were put on beanstalkd but their ids could not be recorded")
                }
                Err(error) => tracing::error!(%error, "recording beanstalkd ids failed"),
            }
        }
        outcome
    }
}

/// Which beanstalkd process answered: its pid and uptime. A different pid, or an uptime
/// that went backwards, means beanstalkd restarted (and, without its binlog, lost every
/// job it held).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BeanstalkdInstance {
    pid: u64,
    uptime: u64,
}

impl BeanstalkdInstance {
    async fn current(queue: &QueueClient) -> Option<BeanstalkdInstance> {
        let stats = queue.stats().await.ok()?;
        Some(BeanstalkdInstance {
            pid: stats.get("pid")?.parse().ok()?,
            uptime: stats.get("uptime")?.parse().ok()?,
        })
    }

    fn restarted_since(self, earlier: BeanstalkdInstance) -> bool {
        self.pid != earlier.pid || self.uptime < earlier.uptime
    }
}

/// Asks beanstalkd for copy `beanstalk_id` of job `job_id`, which was put with `body`. If
/// beanstalkd has no such job, or that id now holds another body (a beanstalkd restarted
/// without its binlog numbers jobs from 1 again), the copy is lost: the id is forgotten so
/// the retry loop puts the job again. `Some(true)` if forgotten, `Some(false)` if the copy
/// is there (or the job moved on), `None` if beanstalkd could not be asked.
pub async fn forget_lost_copy(
    app: &App,
    job_id: JobId,
    beanstalk_id: u64,
    body: &str,
) -> Option<bool> {
    match app.queue().peek(beanstalk_id).await {
        Ok(Some(found)) if found == body.as_bytes() => Some(false),
        Ok(_) => {
            let forget = app
                .db(move |store| store.forget_beanstalk_id(job_id, beanstalk_id))
                .await;
            Some(matches!(forget, Ok(true)))
        }
        Err(_) => None,
    }
}

/// After beanstalkd restarted: every queued or waiting job whose copy beanstalkd no longer
/// has ([`forget_lost_copy`]) has its id forgotten, so the retry loop puts it again once it
/// is queued.
/// Returns how many were forgotten.
async fn reconcile(app: &App) -> usize {
    let mut forgotten = 0;
    let mut after = JobId(0);
    loop {
        let page = match app
            .db(move |store| store.unstarted_with_beanstalk_ids(after, 500))
            .await
        {
            Ok(page) => page,
            Err(status) => {
                tracing::warn!(
                    detail = status.message(),
                    "cannot list queued jobs to reconcile"
                );
                return forgotten;
            }
        };
        let Some(&(last, _, _)) = page.last() else {
            return forgotten;
        };
        after = last;
        for (job_id, beanstalk_id, body) in page {
            match forget_lost_copy(app, job_id, beanstalk_id, &body).await {
                Some(true) => forgotten += 1,
                Some(false) => {}
                // Unreachable again: try at the next restart check.
                None => return forgotten,
            }
        }
    }
}

/// Every `enqueue_retry`, puts queued jobs that have no beanstalkd id yet. It also
/// notices a beanstalkd restart (and checks once at start, for one that happened while
/// cuttle-api was down) and reconciles queued jobs whose copies were lost.
pub async fn retry_loop(app: App, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(app.settings().enqueue_retry);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Option<BeanstalkdInstance> = None;
    let mut reconciled_at_start = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let enqueuer = app.enqueuer();
        let guard = enqueuer.lock().await;
        if let Some(now) = BeanstalkdInstance::current(app.queue()).await {
            let restarted = seen.is_some_and(|earlier| now.restarted_since(earlier));
            if restarted || !reconciled_at_start {
                let forgotten = reconcile(&app).await;
                if forgotten > 0 || restarted {
                    tracing::warn!(
                        forgotten,
                        pid = now.pid,
                        "beanstalkd lost queued jobs (restarted without its binlog?); putting them again"
                    );
                }
                reconciled_at_start = true;
            }
            seen = Some(now);
        }
        let pending = match app.db(|store| store.jobs_awaiting_enqueue(500)).await {
            Ok(pending) => pending,
            Err(status) => {
                tracing::warn!(
                    detail = status.message(),
                    "cannot look for jobs awaiting enqueue"
                );
                continue;
            }
        };
        if pending.is_empty() {
            continue;
        }
        let outcome = enqueuer.put_all(&guard, &pending).await;
        tracing::info!(
            put = outcome.ids.len(),
            pending = pending.len(),
            failure = outcome.failure.as_deref().unwrap_or(""),
            "retried jobs awaiting enqueue"
        );
    }
}
