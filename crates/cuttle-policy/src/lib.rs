//! cuttle's scheduling policy: which queued jobs of one machine type start now, as a pure
//! function of a snapshot. The real dispatcher and `cuttle-sim` call the same [`plan`].
//!
//! - **Order:** aged priority (lower first), then older, then within a suite. Aging is
//!   continuous in the order: a job's key is its start key (`priority × interval`, with
//!   points from 100 up counting a third and above teuthology's default a thirtieth:
//!   [`PRIORITY_BANDS`]) `− step × waited`, so a job that waited longer gains on every
//!   later one, without bound, and two jobs of one priority tie only when they were
//!   submitted together. This is what bounds every wait: once a job's key reaches 0 no
//!   job submitted later can pass it, and every job's key does within 6 days. Jobs submitted
//!   together (a suite) go smaller first if their priority is below teuthology's default,
//!   biggest first otherwise ([`suite_rank`]; the design brief said fewer nodes first, and
//!   before older, for all). Then the jobs not yet at the top go shortest time limit
//!   first within their class (urgent or not) until they have waited a day, each as if
//!   submitted when it would have ended ([`shortest_first_below_the_top`]): short work
//!   finishes first, a burst of urgent work runs its short jobs through the nodes as
//!   they free, and no job at the top is passed.
//! - **Aging on beanstalkd:** the priority shown there is the priority whose start key
//!   is the job's key after every whole `interval` it waited, down to `floor`
//!   (beanstalkd priorities cannot go below 0).
//! - **Head-of-line reservation:** the first job in order that does not fit becomes the
//!   head; it is never passed by a job that would delay its estimated start (the
//!   *shadow time*: the earliest time enough running jobs will have ended).
//! - **Backfill:** a later job starts now if it fits in the free nodes without touching
//!   the slot the head has booked from its shadow time (it ends before the shadow time,
//!   or only uses nodes the head will not need then), nor the slots the urgent jobs
//!   behind the head have booked ([`URGENT_BELOW`], [`RESERVATION_DEPTH`] in all):
//!   EASY's freedom for ordinary work, conservative backfill's protection for urgent
//!   work; the first job in order that has waited [`BOOKING_AGE_MS`] books too, so a
//!   wide job the holes never fit is not passed for ever. Candidates are tried more
//!   urgent first, then least node-time for their wait first ([`backfill_key`]: nodes ×
//!   estimate over the expansion factor), so the holes go to the jobs that fit them best
//!   and a job that has waited gains on fresh ones.
//!   While any running job has outlived its estimate,
//!   estimates are not trusted and backfill goes by time limits: a wrong history can then
//!   delay a head once (by at most one time limit), never again and again.
//! - **Never fits:** a job needing more nodes than the machine type has (minus the nodes
//!   held back for people) is buried with the reason.
//!
//! Nothing here reads a clock or does IO: `now` is in the snapshot. Times are Unix
//! milliseconds; durations are milliseconds.

use std::cmp::Ordering;

pub mod estimate;
pub mod forecast;

pub use estimate::Estimator;
pub use forecast::{Forecast, Likely, Wait, forecast, running_job};

/// Aging: how a waiting job's effective priority drops over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aging {
    /// Wait this long per step.
    pub interval_ms: i64,
    /// Priority points gained (subtracted) per interval.
    pub step: u32,
    /// Aging never goes below this priority. Keep it at or below every priority jobs are
    /// submitted with (0 does that), or the wait bound does not hold for jobs above it.
    pub floor: u32,
}

/// The policy's knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConfig {
    /// `None` turns aging off.
    pub aging: Option<Aging>,
    /// Backfill on or off (off: strict head-of-line with reservation).
    pub backfill: bool,
    /// Nodes of the machine type kept free for people (teuthology's `reserve_machines`).
    pub held_back_nodes: u32,
    /// Among jobs tied in the order (submitted together with the same priority: a suite),
    /// those with a priority below this start their smaller jobs first; the others their
    /// bigger jobs first. See [`suite_rank`].
    pub fewer_nodes_first_below: u32,
}

/// How many reserved jobs a dispatcher holds and plans over at once (its look-ahead
/// window), unless cuttle-api's `window` says otherwise. cuttle-sim plans over the same
/// number: over 48 workloads, 32 kept utilization above head-of-line's on only 29 (backfill
/// found too few candidates), 128 on 46, 256 on 48. Backfilling small jobs first finds
/// them deeper in the queue: on the traces and their loaded variants the geometric mean
/// of cuttle's mean wait over EASY's was 1.05 at 256, 0.98 at 512 and 0.95 at 1000
/// (docs/simulator.md, Finding 9).
pub const DEFAULT_WINDOW: usize = 1000;

/// teuthology's default job priority: work scheduled below it (sooner) has someone
/// waiting on it.
pub const TEUTHOLOGY_DEFAULT_PRIORITY: u32 = 1000;

/// The default aging: 3 points an hour, no floor. A default-priority (1000) job reaches
/// the top in 133 hours (about two weeks before [`PRIORITY_BANDS`]) and a priority-100 job
/// catches up with fresh priority-50 work after 17 hours, so urgent work keeps its lead
/// over a week-long backlog while nothing waits forever. cuttle-sim chose it: at 10, day-old priority-100 suites passed
/// fresh urgent runs on the lab week; at 5, urgent p95 wait was worse than strict
/// head-of-line on 10 of 41 generated workloads with urgent work, at 3 on 7, at 2 no
/// fewer.
pub const DEFAULT_AGING: Aging = Aging {
    interval_ms: 3_600_000,
    step: 3,
    floor: 0,
};

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            aging: Some(DEFAULT_AGING),
            backfill: true,
            held_back_nodes: 0,
            fewer_nodes_first_below: TEUTHOLOGY_DEFAULT_PRIORITY,
        }
    }
}

/// A job waiting to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub id: u64,
    /// The priority it was submitted (or last re-prioritized) with; lower is sooner.
    pub priority: u32,
    pub n_nodes: u32,
    pub submitted_at: i64,
    /// How long it will probably run: its time limit, or less when the history of its
    /// description says so.
    pub estimate_ms: i64,
    /// How long it can run at most: it is ended at this limit.
    pub time_limit_ms: i64,
}

impl QueuedJob {
    /// A waiting job as the policy orders it: id, base priority, nodes and when it was
    /// submitted. Its estimate and limit are unknown until [`QueuedJob::timed`]: [`compare`]
    /// and aging never look at them (only [`ordered`] places jobs below the top by their
    /// limits, and untimed jobs all have the same). The one constructor the dispatcher,
    /// cuttle-api and cuttle-sim all use.
    pub fn new(id: u64, priority: u32, n_nodes: u32, submitted_at: i64) -> QueuedJob {
        QueuedJob {
            id,
            priority,
            n_nodes,
            submitted_at,
            estimate_ms: UNKNOWN_DURATION,
            time_limit_ms: UNKNOWN_DURATION,
        }
    }

    /// The same job with how long it probably runs and how long it may run at most.
    pub fn timed(self, estimate_ms: i64, time_limit_ms: i64) -> QueuedJob {
        QueuedJob {
            estimate_ms,
            time_limit_ms,
            ..self
        }
    }
}

/// The duration of a job not yet timed: long enough that planning never fits it anywhere
/// by mistake, small enough that adding it to a time cannot overflow.
pub const UNKNOWN_DURATION: i64 = i64::MAX / 4;

/// A job holding nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningJob {
    pub id: u64,
    pub n_nodes: u32,
    /// When it is expected to end (start + estimate; once past that, start + time limit;
    /// never before now).
    pub ends_by: i64,
    /// It has run longer than its estimate: estimates are not to be trusted right now.
    pub past_estimate: bool,
}

/// Everything [`plan`] looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub now: i64,
    /// Every node of the machine type, up or down, locked or not: the inventory. Only a
    /// job larger than it (less the nodes held back) is buried; one that fits it but not
    /// the nodes that are up waits for them.
    pub total_nodes: u32,
    /// Nodes up and not locked right now.
    pub free_nodes: u32,
    pub queued: Vec<QueuedJob>,
    pub running: Vec<RunningJob>,
}

/// Why a job starts now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartReason {
    /// It is next in order and fits.
    InOrder,
    /// It jumps ahead of the waiting head without delaying it.
    Backfill {
        head: u64,
        /// Ends (by its estimate) before the head's estimated start.
        ends_before_shadow: bool,
    },
}

/// One decision, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Start {
        job: u64,
        reason: StartReason,
    },
    /// The head waits for nodes; they are reserved for it from `estimated_start` on.
    Reserve {
        job: u64,
        estimated_start: i64,
    },
    /// It can never run here.
    Bury {
        job: u64,
        reason: String,
    },
}

/// A job's priority after aging, at `now`, in whole intervals and never below the floor:
/// the priority whose start key is the job's key then, what beanstalkd is told.
pub fn effective_priority(job: &QueuedJob, now: i64, aging: Option<Aging>) -> u32 {
    let Some(aging) = aging else {
        return job.priority;
    };
    if job.priority <= aging.floor || aging.interval_ms <= 0 {
        return job.priority;
    }
    // Wind the start key back by the intervals waited, and say which priority has that
    // key: beanstalkd sees the order the policy keeps.
    let steps = i128::from((now - job.submitted_at).max(0) / aging.interval_ms);
    let key = start_key(job.priority, aging.interval_ms)
        - steps * i128::from(aging.step) * i128::from(aging.interval_ms);
    let gained = if key <= 0 {
        u64::from(job.priority)
    } else {
        // The highest priority whose start key is at most `key`: binary search, keys grow
        // with the priority.
        let (mut low, mut high) = (0u32, job.priority);
        while low < high {
            let mid = low + (high - low).div_ceil(2);
            if start_key(mid, aging.interval_ms) <= key {
                low = mid;
            } else {
                high = mid - 1;
            }
        }
        u64::from(job.priority - low)
    };
    let lowered = u64::from(job.priority).saturating_sub(gained);
    u32::try_from(lowered.max(u64::from(aging.floor))).unwrap_or(aging.floor)
}

/// How much one priority point counts toward a job's start key, by band: `(from,
/// divisor)`, a point at or above `from` (up to the next band) counting `1 / divisor` of
/// a point below 100. Urgent work (below 100) keeps its full lead: a priority-100 job
/// catches up with fresh priority-50 work only after 17 hours at the default aging, as
/// before. Above it the points count less, so every job reaches the top within days, not
/// weeks ([`time_to_top`]: 133 h for teuthology's default 1000, 144 h for 2000, at 3
/// points an hour), which is what the stated wait bound is made of. With every point
/// counting the same, the bound of a priority-2000 job (691 h) was 5.5 times the longest
/// wait of the standard week.
pub const PRIORITY_BANDS: [(u32, u32); 3] = [(0, 1), (100, 3), (TEUTHOLOGY_DEFAULT_PRIORITY, 30)];

/// A job's starting key with aging on: `interval` for each priority point, divided by its
/// band's divisor ([`PRIORITY_BANDS`]). Grows with the priority, so the order of fresh
/// jobs is the priority order.
fn start_key(priority: u32, interval_ms: i64) -> i128 {
    let interval = i128::from(interval_ms);
    let mut key = 0;
    for (i, &(from, divisor)) in PRIORITY_BANDS.iter().enumerate() {
        let to = PRIORITY_BANDS
            .get(i + 1)
            .map_or(u32::MAX, |&(next, _)| next);
        let points = priority.min(to).saturating_sub(from);
        key += i128::from(points) * interval / i128::from(divisor);
    }
    key
}

/// A job's place in the order at `now`: its start key ([`start_key`]: `priority ×
/// interval` up to the default priority) minus `step × waited` (just the priority without
/// aging). Lower goes first. Continuous and unclamped, so a job that has waited longer
/// keeps gaining on every job submitted after it, and the order of two queued jobs never
/// changes with time.
pub fn aging_key(job: &QueuedJob, now: i64, aging: Option<Aging>) -> i128 {
    match aging {
        Some(aging) if aging.interval_ms > 0 => {
            start_key(job.priority, aging.interval_ms)
                - i128::from(aging.step) * i128::from((now - job.submitted_at).max(0))
        }
        _ => i128::from(job.priority),
    }
}

/// Where a job goes among the jobs it ties with on [`aging_key`] (in practice its suite:
/// jobs submitted together with the same priority). Lower goes first.
///
/// Work with a priority below `config.fewer_nodes_first_below` (teuthology's default,
/// 1000, unless configured: someone is waiting on it) starts its smaller jobs first, so
/// most of its results come soonest. Other work starts its biggest jobs first and lets
/// backfill fill the gaps with the small ones, as first-fit-decreasing packs bins: its
/// big jobs are never left to wait for the rest of their suite, which is how
/// teuthology's big jobs starved. cuttle-sim measured both over 48 workloads: smaller
/// first everywhere (the design brief's order) kept the biggest jobs' longest wait below
/// legacy teuthology's on 27; this rule on 48, at the cost of urgent p95 on 2 of 41
/// (docs/simulator.md, Finding 0).
pub fn suite_rank(job: &QueuedJob, config: &PolicyConfig) -> i64 {
    let nodes = i64::from(job.n_nodes);
    if job.priority < config.fewer_nodes_first_below {
        nodes
    } else {
        -nodes
    }
}

/// The dispatch order at `now`: aged priority ([`aging_key`]), then older, then the
/// order within a suite ([`suite_rank`]), then id. With aging on, jobs of one priority
/// tie on the key only if submitted together, so "older" first matters only with aging
/// off, where it keeps the suite rule inside a suite.
pub fn compare(a: &QueuedJob, b: &QueuedJob, now: i64, config: &PolicyConfig) -> Ordering {
    aging_key(a, now, config.aging)
        .cmp(&aging_key(b, now, config.aging))
        .then(a.submitted_at.cmp(&b.submitted_at))
        .then(suite_rank(a, config).cmp(&suite_rank(b, config)))
        .then(a.id.cmp(&b.id))
}

/// The queued jobs in dispatch order: [`compare`]'s, with the jobs not yet at the top
/// that have waited less than a day shortest limit first within their class
/// ([`shortest_first_below_the_top`]).
pub fn ordered<'a>(queued: &'a [QueuedJob], now: i64, config: &PolicyConfig) -> Vec<&'a QueuedJob> {
    let mut jobs: Vec<&QueuedJob> = queued.iter().collect();
    jobs.sort_by(|a, b| compare(a, b, now, config));
    shortest_first_below_the_top(&mut jobs, now, config);
    jobs
}

/// Reorders the jobs of `jobs` (in [`compare`]'s order) whose key has not reached the top
/// (0), each class among its own places: urgent work ([`URGENT_BELOW`]) among the places
/// urgent jobs hold, the rest among theirs. A job that has waited less than
/// [`BOOKING_AGE_MS`] is placed by its key plus its time limit's worth of aging, as if it
/// had been submitted when it would have ended had it started at once; one that has
/// waited longer by its key alone. So fresh short work goes before fresh long work
/// submitted up to the difference of their limits earlier (most jobs are short, and
/// finishing them first cuts the mean and p95 wait), and after a day a long job takes the
/// place its age gives it back (with the day-old booking, the widest and longest jobs are
/// not passed for ever). When a burst of urgent jobs meets a full lab, the short ones run
/// through the nodes as they free, instead of long ones holding them for hours.
///
/// The wait bound is untouched: a job at the top is never passed (only jobs behind it
/// are reordered, among themselves), and each class keeps the places it holds, so no
/// urgent job goes behind default work it was ahead of. Without
/// aging there is no top, and a stream of short jobs could pass a long one for ever: the
/// order is then [`compare`]'s. The limit, not the history estimate: it is what the user
/// stated, it does not change while the job waits, and a job that understates it is
/// ended at it. Untimed jobs ([`QueuedJob::new`]) all have the same limit, so their order
/// stays.
///
/// Measured in cuttle-sim (docs/simulator.md, Findings 11 and 12): over the 32 unseen
/// generated weeks cuttle's mean wait is no worse than EASY's on 28 (18 before), its p95
/// on 20 (18), its longest on 26 (27), its urgent p95 on 24 of 27 (22); on the
/// MetaCentrum log at 21 lab sizes its mean, p95, longest and urgent p95 are below EASY's
/// at 20, 16, 20 and 17 (17, 14, 19 and 9 before; the urgent rule was found on that log).
pub fn shortest_first_below_the_top(jobs: &mut [&QueuedJob], now: i64, config: &PolicyConfig) {
    let Some(aging) = config
        .aging
        .filter(|aging| aging.step > 0 && aging.interval_ms > 0)
    else {
        return;
    };
    for urgent in [true, false] {
        let (slots, mut class): (Vec<usize>, Vec<&QueuedJob>) = jobs
            .iter()
            .enumerate()
            .filter(|(_, job)| {
                (job.priority < URGENT_BELOW) == urgent && aging_key(job, now, config.aging) > 0
            })
            .map(|(slot, &job)| (slot, job))
            .unzip();
        // Stable: jobs with the same key keep compare's order (a suite's rank).
        class.sort_by_cached_key(|job| {
            let shift = if now - job.submitted_at < BOOKING_AGE_MS {
                job.time_limit_ms.max(0)
            } else {
                0
            };
            aging_key(job, now, config.aging) + i128::from(aging.step) * i128::from(shift)
        });
        for (slot, job) in slots.into_iter().zip(class) {
            jobs[slot] = job;
        }
    }
}

/// When `needed` nodes will be free at the earliest, given `free` now and the running
/// jobs' expected ends; and how many nodes beyond `needed` are free then. `None` if the
/// running jobs can never free enough.
pub fn shadow(needed: u32, free: u32, running: &[RunningJob], now: i64) -> Option<(i64, u32)> {
    if free >= needed {
        return Some((now, free - needed));
    }
    let mut ends: Vec<&RunningJob> = running.iter().collect();
    ends.sort_by_key(|job| job.ends_by);
    let mut available = free;
    let mut i = 0;
    while i < ends.len() {
        let at = ends[i].ends_by.max(now);
        // Everything ending at the same instant frees its nodes together.
        while i < ends.len() && ends[i].ends_by.max(now) == at {
            available += ends[i].n_nodes;
            i += 1;
        }
        if available >= needed {
            return Some((at, available - needed));
        }
    }
    None
}

/// Decides which jobs start now. Decisions come in the order they should be acted on.
pub fn plan(snapshot: &Snapshot, config: &PolicyConfig) -> Vec<Decision> {
    let now = snapshot.now;
    let capacity = snapshot.total_nodes.saturating_sub(config.held_back_nodes);
    let mut round = Round {
        now,
        free: snapshot
            .free_nodes
            .saturating_sub(config.held_back_nodes.min(snapshot.free_nodes)),
        running: snapshot.running.clone(),
        bookings: Vec::new(),
        head: None,
        decisions: Vec::new(),
    };
    // An estimate that was wrong once may be wrong again: until that job ends, plan with
    // what is certain.
    let trust_estimates = !snapshot.running.iter().any(|job| job.past_estimate);
    let duration = |job: &QueuedJob| {
        if trust_estimates {
            job.estimate_ms.min(job.time_limit_ms)
        } else {
            job.time_limit_ms
        }
    };
    // The head books the earliest slot it fits in, and so do the urgent jobs behind it, up
    // to RESERVATION_DEPTH in all: a later job starts now only if it fits without touching
    // any booking, so it delays none of them. The other jobs behind the head are backfill
    // candidates, tried after the ordered pass.
    let mut candidates: Vec<&QueuedJob> = Vec::new();
    let mut long_waiter_seen = false;
    for job in ordered(&snapshot.queued, now, config) {
        if job.n_nodes > capacity {
            round.decisions.push(Decision::Bury {
                job: job.id,
                reason: format!(
                    "needs {} nodes but the machine type has {} to give (total {}, {} held back for people)",
                    job.n_nodes, capacity, snapshot.total_nodes, config.held_back_nodes
                ),
            });
            continue;
        }
        // Behind the head, urgent jobs book, and so does the first job in order that has
        // waited BOOKING_AGE_MS, unless that one is the head or starts: a wide job the
        // holes never fit gets its slot.
        let long_waiting = !long_waiter_seen && now - job.submitted_at >= BOOKING_AGE_MS;
        long_waiter_seen |= long_waiting;
        let books = round.head.is_none() || job.priority < URGENT_BELOW || long_waiting;
        if !books {
            if config.backfill {
                candidates.push(job);
                continue;
            }
            // Strict head-of-line: nothing passes the head.
            break;
        }
        if round.free == 0 && round.bookings.len() >= RESERVATION_DEPTH {
            // Nothing more can start now, and nothing more books: the candidates cannot
            // start either, and the rest of a long queue need not be looked at.
            break;
        }
        let took = duration(job);
        if round.try_start(job, took) {
            continue;
        }
        if round.head.is_some() && !config.backfill {
            break;
        }
        if round.bookings.len() >= RESERVATION_DEPTH {
            continue;
        }
        // Locks held by people may never come back: no slot, no booking.
        let at = round
            .lab()
            .earliest_start(job.n_nodes, took)
            .unwrap_or(i64::MAX);
        if at != i64::MAX {
            round.bookings.push(Booking {
                start: at,
                end: at.saturating_add(took),
                n_nodes: job.n_nodes,
            });
        }
        if round.head.is_none() {
            round.decisions.push(Decision::Reserve {
                job: job.id,
                estimated_start: at,
            });
            round.head = Some((job.id, at));
            if !config.backfill {
                break;
            }
        }
    }
    // Backfill: more urgent first, then the least node-time for the wait
    // ([`backfill_key`]), then the dispatch order (the sort is stable).
    let mut candidates: Vec<(u32, f64, &QueuedJob)> = candidates
        .into_iter()
        .map(|job| (job.priority, backfill_key(job, duration(job), now), job))
        .collect();
    candidates.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    for (_, _, job) in candidates {
        if round.free == 0 {
            break;
        }
        round.try_start(job, duration(job));
    }
    round.decisions
}

/// One planning round's state: what is free, what runs (including what this round
/// started), what is booked, the head and the decisions so far.
struct Round {
    now: i64,
    free: u32,
    running: Vec<RunningJob>,
    bookings: Vec<Booking>,
    /// The head: (job, its estimated start).
    head: Option<(u64, i64)>,
    decisions: Vec<Decision>,
}

impl Round {
    fn lab(&self) -> Lab<'_> {
        Lab {
            now: self.now,
            free: self.free,
            running: &self.running,
            bookings: &self.bookings,
        }
    }

    /// Starts `job` if it can run `took` from now without touching a booking: in order
    /// before any job waits, else as backfill around the head.
    fn try_start(&mut self, job: &QueuedJob, took: i64) -> bool {
        if !self.lab().fits_now(job.n_nodes, took) {
            return false;
        }
        let ends = self.now + took;
        self.free -= job.n_nodes;
        self.running.push(RunningJob {
            id: job.id,
            n_nodes: job.n_nodes,
            ends_by: ends,
            past_estimate: false,
        });
        let reason = match self.head {
            None => StartReason::InOrder,
            Some((head, shadow_at)) => StartReason::Backfill {
                head,
                ends_before_shadow: ends <= shadow_at,
            },
        };
        self.decisions.push(Decision::Start {
            job: job.id,
            reason,
        });
        true
    }
}

/// Where a backfill candidate goes among those of its priority (lower first): its
/// node-time (nodes × `took`) divided by its expansion factor ((waited + took) / took).
/// Small jobs fill holes best and waste the least of them, so they go first when fresh;
/// a job's key falls as it waits, so a long or wide job is not passed over forever (the
/// longest waits of the KTH trace and the loaded variants were 15–33 % above EASY's with
/// node-time alone, docs/simulator.md, Finding 9).
fn backfill_key(job: &QueuedJob, took: i64, now: i64) -> f64 {
    let took = took.max(60_000) as f64;
    let waited = (now - job.submitted_at).max(0) as f64;
    f64::from(job.n_nodes) * took * took / (waited + took)
}

/// How many waiting jobs (the head first, then urgent ones) book a slot; jobs behind them
/// may start only where they delay none of them.
pub const RESERVATION_DEPTH: usize = 16;

/// The first job in order that has waited this long books a slot if it is behind the
/// head (one such job at a time: none if that job is the head or starts). Without it the
/// biggest jobs of two of the 32 unseen generated weeks waited longer than under
/// teuthology's legacy workers (goal 2 of docs/simulator.md; one with it, as before);
/// booking every such job (the rule before) cost 2–10 % of mean wait.
pub const BOOKING_AGE_MS: i64 = 24 * 3_600_000;

/// Jobs with a priority below this (urgent work: someone is waiting on it now) book a slot
/// behind the head, as conservative backfill books every job; the others are backfilled
/// around the bookings, EASY's way. Measured in cuttle-sim (docs/simulator.md, Finding
/// 9): it lowered the urgent p95 wait on 10 of 14 traces and variants where it changed.
pub const URGENT_BELOW: u32 = 100;

/// Nodes promised to a waiting job from `start` to `end`.
#[derive(Debug, Clone, Copy)]
struct Booking {
    start: i64,
    end: i64,
    n_nodes: u32,
}

/// The lab's future as one planning round sees it: free nodes now, when running jobs
/// give theirs back, and what waiting jobs have booked.
struct Lab<'a> {
    now: i64,
    free: u32,
    running: &'a [RunningJob],
    bookings: &'a [Booking],
}

impl Lab<'_> {
    /// Nodes free at instant `t` (never negative).
    fn free_at(&self, t: i64) -> i64 {
        let returned: i64 = self
            .running
            .iter()
            .filter(|job| job.ends_by.max(self.now) <= t)
            .map(|job| i64::from(job.n_nodes))
            .sum();
        let booked: i64 = self
            .bookings
            .iter()
            .filter(|b| b.start <= t && t < b.end)
            .map(|b| i64::from(b.n_nodes))
            .sum();
        i64::from(self.free) + returned - booked
    }

    /// The fewest nodes free at any instant of `[from, to)`: free nodes only grow between
    /// bookings' starts, so those and `from` are the instants to look at.
    fn free_during(&self, from: i64, to: i64) -> u32 {
        let lowest = std::iter::once(from)
            .chain(
                self.bookings
                    .iter()
                    .map(|b| b.start)
                    .filter(|&start| from < start && start < to),
            )
            .map(|t| self.free_at(t))
            .min()
            .unwrap_or(0);
        u32::try_from(lowest.max(0)).unwrap_or(0)
    }

    /// Whether `n_nodes` can start now and run `took` without touching a booking.
    fn fits_now(&self, n_nodes: u32, took: i64) -> bool {
        n_nodes <= self.free && self.free_during(self.now, self.now + took) >= n_nodes
    }

    /// The earliest instant from now at which `n_nodes` are free for `took`.
    fn earliest_start(&self, n_nodes: u32, took: i64) -> Option<i64> {
        let mut candidates: Vec<i64> = std::iter::once(self.now)
            .chain(self.running.iter().map(|job| job.ends_by.max(self.now)))
            .chain(self.bookings.iter().map(|b| b.end))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .find(|&t| self.free_during(t, t.saturating_add(took)) >= n_nodes)
    }
}

/// How long aging takes to bring a job of `priority` to the top: to an order key of 0,
/// below which no job submitted later can start (keys start at `priority × interval`,
/// never below 0).
pub fn time_to_top(priority: u32, aging: Aging) -> i64 {
    if aging.step == 0 {
        return i64::MAX;
    }
    let points = u128::try_from(start_key(priority, aging.interval_ms.max(1))).unwrap_or(0);
    i64::try_from(points.div_ceil(u128::from(aging.step))).unwrap_or(i64::MAX)
}

/// The wait bound the policy states for a job of `priority`, with aging on.
///
/// Argument: after `time_to_top(priority)` the job's order key is at most 0, and every job
/// submitted later starts with a key of at least 0 and ages at the same rate, so only the
/// `ahead` jobs before it in the order at that moment (all submitted earlier; the order of
/// two queued jobs never changes with time, so the jobs behind it stay behind) can start
/// before it.
/// Each of them becomes the head in turn, and a head waits at most for the jobs running
/// when it became head (each ends within `max_time_limit_ms`) plus backfilled jobs started
/// before its estimated start (each also ends within `max_time_limit_ms` of its start):
/// `2 × max_time_limit_ms` per head. `None` when aging is off, or ages by 0 points: then a
/// steady stream of more urgent jobs can delay a job forever.
pub fn wait_bound(
    priority: u32,
    ahead: usize,
    max_time_limit_ms: i64,
    config: &PolicyConfig,
) -> Option<i64> {
    let aging = config.aging.filter(|aging| aging.step > 0)?;
    let heads = i64::try_from(ahead).unwrap_or(i64::MAX).saturating_add(1);
    Some(
        time_to_top(priority, aging)
            .saturating_add(heads.saturating_mul(2).saturating_mul(max_time_limit_ms)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, priority: u32, n_nodes: u32, submitted_at: i64, estimate_ms: i64) -> QueuedJob {
        QueuedJob {
            id,
            priority,
            n_nodes,
            submitted_at,
            estimate_ms,
            time_limit_ms: estimate_ms,
        }
    }

    fn started(decisions: &[Decision]) -> Vec<u64> {
        decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Start { job, .. } => Some(*job),
                _ => None,
            })
            .collect()
    }

    const HOUR: i64 = 3_600_000;

    #[test]
    fn order_is_priority_then_older_then_the_suite_rank() {
        let no_aging = PolicyConfig {
            aging: None,
            ..PolicyConfig::default()
        };
        let jobs = [
            job(1, 1000, 3, 0, HOUR),
            job(2, 1000, 1, 5, HOUR),
            job(3, 500, 5, 9, HOUR),
            job(4, 1000, 1, 1, HOUR),
            job(5, 500, 2, 9, HOUR),
            job(6, 1000, 2, 1, HOUR),
        ];
        let order: Vec<u64> = ordered(&jobs, 10, &no_aging).iter().map(|j| j.id).collect();
        // Priority 500 (below 1000), submitted together: fewer nodes first. Priority
        // 1000: older first, and among jobs submitted together more nodes first.
        assert_eq!(order, [5, 3, 1, 6, 4, 2]);
        // Fewer nodes first for every priority is one setting away.
        let fewer_first = PolicyConfig {
            fewer_nodes_first_below: u32::MAX,
            ..no_aging
        };
        let order: Vec<u64> = ordered(&jobs, 10, &fewer_first)
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(order, [5, 3, 1, 4, 6, 2]);
    }

    #[test]
    fn aging_lowers_priority_by_steps_to_the_floor() {
        let aging = Some(Aging {
            interval_ms: HOUR,
            step: 100,
            floor: 200,
        });
        let j = job(1, 1000, 1, 0, HOUR);
        assert_eq!(effective_priority(&j, HOUR - 1, aging), 1000);
        // A start key of 100 + 900 / 3 = 400 points; 100 gained an hour. Points from 100
        // to 1000 count a third: 300 points left is priority 100 + 200 × 3 = 700.
        assert_eq!(effective_priority(&j, HOUR, aging), 700);
        assert_eq!(effective_priority(&j, 2 * HOUR, aging), 400);
        assert_eq!(effective_priority(&j, 3 * HOUR, aging), 200, "the floor");
        assert_eq!(effective_priority(&j, 100 * HOUR, aging), 200);
        assert_eq!(effective_priority(&j, 100 * HOUR, None), 1000);
        // Above the default, 30 points count as one: 2000 starts 1000 / 30 = 33⅓ points
        // above 1000's key, 433⅓; an hour later 333⅓ is priority 100 + 233⅓ × 3 = 800.
        let low = job(2, 2000, 1, 0, HOUR);
        assert_eq!(effective_priority(&low, HOUR, aging), 800);
        let ten = Some(Aging {
            interval_ms: HOUR,
            step: 10,
            floor: 0,
        });
        assert_eq!(effective_priority(&low, HOUR, ten), 1700);
        // The order and beanstalkd agree: the order of start keys is the priority order.
        for p in 0..3000 {
            assert!(start_key(p, HOUR) < start_key(p + 1, HOUR), "{p}");
        }
    }

    #[test]
    fn aging_lets_an_old_job_pass_a_new_urgent_one_only_after_enough_time() {
        let config = PolicyConfig {
            aging: Some(Aging {
                interval_ms: HOUR,
                step: 10,
                floor: 0,
            }),
            ..PolicyConfig::default()
        };
        let old_big = job(1, 1000, 5, 0, HOUR);
        let urgent_small = |at: i64| job(2, 50, 1, at, HOUR);
        // Start keys 400 (100 + 900 / 3) and 50 points apart: the old job passes urgent
        // jobs submitted over 35 h after it.
        let first = |at: i64| ordered(&[urgent_small(at), old_big.clone()], at, &config)[0].id;
        assert_eq!(first(34 * HOUR), 2);
        assert_eq!(first(36 * HOUR), 1);
        // Jobs submitted together with the same priority: the bigger first at the
        // default priority, the smaller first for urgent work, however long they wait.
        let same = [job(3, 1000, 5, 7, HOUR), job(4, 1000, 1, 7, HOUR)];
        assert_eq!(ordered(&same, 10 * HOUR, &config)[0].id, 3);
        let urgent = [job(3, 50, 5, 7, HOUR), job(4, 50, 1, 7, HOUR)];
        assert_eq!(ordered(&urgent, 10 * HOUR, &config)[0].id, 4);
    }

    #[test]
    fn jobs_below_the_top_go_shortest_limit_first_within_their_class() {
        // Default aging, 3 points an hour: keys in hours are 50 − 3 × waited for priority
        // 50, 400 − 3 × waited for 1000.
        let now = 200 * HOUR;
        let top = job(1, 50, 1, now - 17 * HOUR, 24 * HOUR); // key −1: at the top
        let old_long = job(2, 50, 1, now - 5 * HOUR, 24 * HOUR); // key 35
        let normal = job(3, 1000, 1, now - 120 * HOUR, HOUR); // key 40
        let fresh_short = job(4, 50, 1, now, HOUR); // key 50
        let queue = [
            fresh_short.clone(),
            normal.clone(),
            old_long.clone(),
            top.clone(),
        ];
        let ids = |config: &PolicyConfig| -> Vec<u64> {
            ordered(&queue, now, config).iter().map(|j| j.id).collect()
        };
        // The short urgent job takes the long one's place (35 + 3 × 24 > 50 + 3 × 1); the
        // job at the top and the normal job between them keep theirs.
        assert_eq!(ids(&PolicyConfig::default()), [1, 4, 3, 2]);
        // Without aging nothing reaches a top that stops the passing: compare's order.
        let no_aging = PolicyConfig {
            aging: None,
            ..PolicyConfig::default()
        };
        assert_eq!(ids(&no_aging), [1, 2, 4, 3]);
        // A lab with one node free and a burst of urgent jobs: the short one starts,
        // though the long one was submitted first.
        let snapshot = lab_at(
            now,
            (4, 1),
            (3, now + 10 * HOUR),
            vec![old_long, fresh_short],
        );
        assert_eq!(started(&plan(&snapshot, &PolicyConfig::default())), [4]);
        // Default-priority work the same way among its own places, until a job has
        // waited a day: a 30 h job 20 h old (key 340 + 90) goes after a fresh 1 h job (400
        // + 3); 25 h old (key 325) it goes first, its limit no longer counted.
        let fresh = job(5, 1000, 1, now, HOUR);
        for (waited, first) in [(20, 5), (25, 6)] {
            let long = job(6, 1000, 1, now - waited * HOUR, 30 * HOUR);
            let pair = [long, fresh.clone()];
            let order = ordered(&pair, now, &PolicyConfig::default());
            assert_eq!(order[0].id, first, "the long job {waited} h old");
        }
    }

    #[test]
    fn the_head_reserves_and_backfill_never_delays_it() {
        // 4 nodes; 3 busy until t=10h; the head needs 3.
        let snapshot = lab_at(
            0,
            (4, 1),
            (3, 10 * HOUR),
            vec![
                job(1, 100, 3, 0, HOUR),
                job(2, 1000, 1, 1, HOUR),
                job(3, 1000, 1, 2, 20 * HOUR), // would still run at the shadow, but fits in the extra node
            ],
        );
        let decisions = plan(&snapshot, &PolicyConfig::default());
        assert_eq!(
            decisions[0],
            Decision::Reserve {
                job: 1,
                estimated_start: 10 * HOUR
            }
        );
        // At the shadow 4 nodes are free, the head needs 3: one extra node. Both jobs
        // behind the head fit (job 2 ends before the shadow, job 3 in the extra node);
        // job 2 has less node-time and takes it, and job 3 then finds no free node.
        assert_eq!(started(&decisions), [2]);
        let strict = PolicyConfig {
            backfill: false,
            ..PolicyConfig::default()
        };
        assert!(started(&plan(&snapshot, &strict)).is_empty());
    }

    /// A lab of `total_nodes` at `now`, `free_nodes` free, one job (id 9) running on
    /// `busy_nodes` until `busy_until`, and `queued` waiting.
    fn lab_at(
        now: i64,
        (total_nodes, free_nodes): (u32, u32),
        (busy_nodes, busy_until): (u32, i64),
        queued: Vec<QueuedJob>,
    ) -> Snapshot {
        Snapshot {
            now,
            total_nodes,
            free_nodes,
            queued,
            running: vec![RunningJob {
                id: 9,
                n_nodes: busy_nodes,
                ends_by: busy_until,
                past_estimate: false,
            }],
        }
    }

    #[test]
    fn backfill_tries_more_urgent_first_then_the_least_node_time() {
        // 3 nodes: 1 busy until 10 h, 2 free; the urgent head needs all 3. Every job
        // behind it needs 1 node and ends before the shadow; two of them can start.
        let snapshot = lab_at(
            0,
            (3, 2),
            (1, 10 * HOUR),
            vec![
                job(1, 50, 3, 0, HOUR),
                job(2, 1000, 1, 1, 5 * HOUR),
                job(3, 500, 1, 2, 8 * HOUR),
                job(4, 1000, 1, 3, 2 * HOUR),
                job(5, 1000, 2, 4, HOUR),
            ],
        );
        // Priority 500 first, however long; then among priority 1000 the least node-time:
        // job 4 (2 node-hours) before job 5 (2 nodes × 1 h, tied, but later in order)
        // and job 2 (5). Only one node is left for them.
        assert_eq!(started(&plan(&snapshot, &PolicyConfig::default())), [3, 4]);
    }

    #[test]
    fn behind_the_head_urgent_and_day_old_jobs_book_and_others_do_not() {
        // 5 nodes: 3 busy until 1 h, 2 free. The urgent head needs 3 from 1 h (2 extra
        // nodes then); the next urgent job needs 4 for an hour and books 2 h to 3 h. A
        // 2-node, 3-hour job behind them fits the head's extra nodes but would still run
        // at 2 h: it would delay the second urgent job, so it waits.
        let queued = |second: u32| {
            vec![
                job(1, 50, 3, 0, HOUR),
                job(2, second, 4, 1, HOUR),
                job(3, 1000, 2, 2, 3 * HOUR),
            ]
        };
        let snapshot = lab_at(0, (5, 2), (3, HOUR), queued(50));
        let decisions = plan(&snapshot, &PolicyConfig::default());
        assert!(decisions.contains(&Decision::Reserve {
            job: 1,
            estimated_start: HOUR
        }));
        assert!(started(&decisions).is_empty(), "{decisions:?}");
        // The same second job at the default priority books nothing: EASY's freedom,
        // the third job starts (it delays only that one).
        let ordinary = Snapshot {
            queued: queued(1000),
            ..snapshot.clone()
        };
        assert_eq!(started(&plan(&ordinary, &PolicyConfig::default())), [3]);
        // Unless it has waited a day: the first such job in order books too.
        let mut long_waiting = queued(1000);
        long_waiting[1].submitted_at = -BOOKING_AGE_MS;
        let long_waiting = Snapshot {
            queued: long_waiting,
            ..snapshot
        };
        assert!(started(&plan(&long_waiting, &PolicyConfig::default())).is_empty());
    }

    #[test]
    fn a_backfill_candidate_that_waited_gains_on_fresh_ones() {
        // 3 nodes: 1 busy until 30 h, 2 free; the urgent head needs all 3. A 2-node,
        // 4-hour job and a 1-node, 2-hour job both fit before the shadow.
        let snapshot = |wide_submitted: i64| {
            lab_at(
                20 * HOUR,
                (3, 2),
                (1, 30 * HOUR),
                vec![
                    job(1, 50, 3, 20 * HOUR, HOUR),
                    job(2, 1000, 2, wide_submitted, 4 * HOUR),
                    job(3, 1000, 1, 20 * HOUR, 2 * HOUR),
                ],
            )
        };
        // Fresh, the smaller node-time goes first (2 node-hours before 8), and the wide
        // job no longer fits.
        let config = PolicyConfig::default();
        assert_eq!(started(&plan(&snapshot(20 * HOUR), &config)), [3]);
        // Having waited 20 h, the wide job's key is 8 / (24 / 4) = 1.3 node-hours, the
        // fresh job's 2: the wide job goes first and takes both nodes.
        assert_eq!(started(&plan(&snapshot(0), &config)), [2]);
    }

    #[test]
    fn jobs_that_fit_the_inventory_wait_for_down_nodes_instead_of_dying() {
        // 4 nodes, 3 of them down: only one is up and free. Ten 2-node jobs wait (none is
        // buried), and a 1-node job behind them starts on the node that is up.
        let mut queued: Vec<QueuedJob> = (1..=10).map(|id| job(id, 100, 2, 0, HOUR)).collect();
        queued.push(job(11, 1000, 1, 1, HOUR));
        let snapshot = Snapshot {
            now: 0,
            total_nodes: 4,
            free_nodes: 1,
            queued,
            running: vec![],
        };
        let decisions = plan(&snapshot, &PolicyConfig::default());
        assert!(
            !decisions.iter().any(|d| matches!(d, Decision::Bury { .. })),
            "{decisions:?}"
        );
        assert!(decisions.contains(&Decision::Reserve {
            job: 1,
            estimated_start: i64::MAX
        }));
        assert_eq!(started(&decisions), [11]);
    }

    #[test]
    fn a_job_bigger_than_the_lab_is_buried_and_held_back_nodes_count() {
        let snapshot = Snapshot {
            now: 0,
            total_nodes: 5,
            free_nodes: 5,
            queued: vec![job(1, 1000, 5, 0, HOUR), job(2, 1000, 3, 0, HOUR)],
            running: vec![],
        };
        let config = PolicyConfig {
            held_back_nodes: 1,
            ..PolicyConfig::default()
        };
        let decisions = plan(&snapshot, &config);
        assert!(
            decisions.iter().any(
                |d| matches!(d, Decision::Bury { job: 1, reason } if reason.contains("held back"))
            ),
            "{decisions:?}"
        );
        assert_eq!(started(&decisions), [2]);
    }

    #[test]
    fn shadow_accumulates_ends_in_time_order() {
        let running = [
            RunningJob {
                id: 1,
                n_nodes: 2,
                ends_by: 50,
                past_estimate: false,
            },
            RunningJob {
                id: 2,
                n_nodes: 1,
                ends_by: 20,
                past_estimate: false,
            },
            RunningJob {
                id: 3,
                n_nodes: 1,
                ends_by: 20,
                past_estimate: false,
            },
        ];
        assert_eq!(shadow(2, 0, &running, 0), Some((20, 0)));
        assert_eq!(shadow(3, 0, &running, 0), Some((50, 1)));
        assert_eq!(shadow(5, 0, &running, 0), None);
        assert_eq!(shadow(1, 2, &running, 0), Some((0, 1)));
    }

    #[test]
    fn the_bound_covers_aging_and_heads() {
        let config = PolicyConfig::default();
        // A start key of 400 points at 3 an hour: 133⅓ h to the top, then 3 heads of at
        // most 2 × 2 h.
        assert_eq!(
            wait_bound(1000, 2, 2 * HOUR, &config),
            Some(400 * HOUR / 3 + 12 * HOUR)
        );
        // Priority 2000 only 33⅓ points later.
        assert_eq!(
            time_to_top(2000, DEFAULT_AGING),
            (400 * HOUR + 1000 * HOUR / 30) / 3
        );
        let no_aging = PolicyConfig {
            aging: None,
            ..config
        };
        assert_eq!(wait_bound(1000, 2, 2 * HOUR, &no_aging), None);
        // Aging by 0 points a step is no aging: no bound, not one of 292 million years.
        let zero_step = PolicyConfig {
            aging: Some(Aging {
                step: 0,
                ..DEFAULT_AGING
            }),
            ..config
        };
        assert_eq!(wait_bound(1000, 2, 2 * HOUR, &zero_step), None);
    }

    #[test]
    fn an_overrun_makes_backfill_go_by_time_limits() {
        // 2 nodes, both busy until 16 h (one by a job past its estimate); the head needs 2.
        let short_by_history = QueuedJob {
            estimate_ms: HOUR,
            time_limit_ms: 10 * HOUR,
            ..job(2, 1000, 1, 0, HOUR)
        };
        let snapshot = |past_estimate: bool| Snapshot {
            now: 14 * HOUR,
            total_nodes: 2,
            free_nodes: 1,
            queued: vec![job(1, 0, 2, 0, HOUR), short_by_history.clone()],
            running: vec![RunningJob {
                id: 9,
                n_nodes: 1,
                ends_by: 16 * HOUR,
                past_estimate,
            }],
        };
        let config = PolicyConfig::default();
        assert_eq!(
            started(&plan(&snapshot(false), &config)),
            [2],
            "trusted: 1 h fits before 16 h"
        );
        assert!(
            started(&plan(&snapshot(true), &config)).is_empty(),
            "distrusted: 10 h does not"
        );
    }
}
