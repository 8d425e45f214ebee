//! cuttle-api's Prometheus metrics, served as `GET /metrics` on the HTTP listener
//! (prometheus-client's text format).
//!
//! Two kinds: what happens (RPC latency by method and outcome, webhook answers, counted
//! as they happen in this process) and what is (live jobs, nodes, AutoSuites, counted
//! from the database at each scrape, so every cuttle-api reports the same lab and a
//! restart loses nothing).

use std::sync::{Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use cuttle_db::gauges::Gauges;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rpc {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Action {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Answer {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    machine_type: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    machine_type: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TubeLabels {
    machine_type: String,
}

/// The process's metrics.
#[derive(Debug)]
struct Metrics {
    registry: Registry,
    rpc_seconds: Family<Rpc, Histogram>,
    webhook: Family<Answer, Counter>,
    reaper: Family<Action, Counter>,
    jobs: Family<JobLabels, Gauge>,
    nodes: Family<NodeLabels, Gauge>,
    autosuites: Family<StateLabels, Gauge>,
    lease_held: Family<TubeLabels, Gauge>,
    paused: Family<TubeLabels, Gauge>,
}

fn metrics() -> &'static Mutex<Metrics> {
    static METRICS: OnceLock<Mutex<Metrics>> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("cuttle");
        let rpc_seconds = Family::<Rpc, Histogram>::new_with_constructor(|| {
            // 1 ms to about 33 s.
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "rpc_duration_seconds",
            "gRPC calls answered, by method and outcome code, and how long they took",
            rpc_seconds.clone(),
        );
        let webhook = Family::<Answer, Counter>::default();
        registry.register(
            "webhook_requests",
            "build-status webhook requests, by the HTTP status they were answered with",
            webhook.clone(),
        );
        let reaper = Family::<Action, Counter>::default();
        registry.register(
            "reaper_actions",
            "what the reaper did: dead_supervisor_lost (jobs), requeued_lease_lost (jobs), nodes_freed (nodes), called_off (passes skipped after an outage)",
            reaper.clone(),
        );
        let jobs = Family::<JobLabels, Gauge>::default();
        registry.register(
            "jobs",
            "jobs that have not ended, by machine type and status (queued: on the tube; waiting: reserved by a dispatcher; running)",
            jobs.clone(),
        );
        let nodes = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "nodes",
            "nodes by machine type and state (free, locked, down)",
            nodes.clone(),
        );
        let autosuites = Family::<StateLabels, Gauge>::default();
        registry.register("autosuites", "AutoSuites by state", autosuites.clone());
        let lease_held = Family::<TubeLabels, Gauge>::default();
        registry.register(
            "tube_lease_held",
            "1 when a dispatcher holds the tube's lease now, else 0 (nobody dispatches it)",
            lease_held.clone(),
        );
        let paused = Family::<TubeLabels, Gauge>::default();
        registry.register("tube_paused", "1 when the tube is paused", paused.clone());
        Mutex::new(Metrics {
            registry,
            rpc_seconds,
            webhook,
            reaper,
            jobs,
            nodes,
            autosuites,
            lease_held,
            paused,
        })
    })
}

/// Counts one answered gRPC call.
pub fn rpc(method: &str, code: tonic::Code, seconds: f64) {
    let labels = Rpc {
        method: method.to_owned(),
        code: format!("{code:?}"),
    };
    let metrics = metrics().lock().expect("metrics lock");
    metrics.rpc_seconds.get_or_create(&labels).observe(seconds);
}

/// Counts one webhook request by the HTTP status it got.
pub fn webhook(status: u16) {
    let labels = Answer {
        status: status.to_string(),
    };
    let metrics = metrics().lock().expect("metrics lock");
    metrics.webhook.get_or_create(&labels).inc();
}

/// Counts `n` reaper actions of one kind.
pub fn reaper(action: &str, n: usize) {
    let labels = Action {
        action: action.to_owned(),
    };
    let metrics = metrics().lock().expect("metrics lock");
    // Created even at 0, so a dashboard sees the series before the first action.
    metrics
        .reaper
        .get_or_create(&labels)
        .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
}

/// The text a scrape answers: the lab as `gauges` and `tubes` show it at `now`, and
/// the process's counts.
pub fn render(
    gauges: &Gauges,
    tubes: &[cuttle_core::dispatch::Tube],
    now: cuttle_core::UnixMillis,
) -> String {
    let metrics = metrics().lock().expect("metrics lock");
    // A machine type or state that disappeared must not linger at its last value.
    metrics.jobs.clear();
    metrics.nodes.clear();
    metrics.autosuites.clear();
    metrics.lease_held.clear();
    metrics.paused.clear();
    for tube in tubes {
        let labels = TubeLabels {
            machine_type: tube.machine_type.to_string(),
        };
        let held = tube.live_lease(now).is_some();
        metrics
            .lease_held
            .get_or_create(&labels)
            .set(i64::from(held));
        metrics
            .paused
            .get_or_create(&labels)
            .set(i64::from(tube.paused));
    }
    for ((machine_type, status), n) in &gauges.live_jobs {
        let labels = JobLabels {
            machine_type: machine_type.clone(),
            status: (*status).to_owned(),
        };
        metrics.jobs.get_or_create(&labels).set(gauge_value(*n));
    }
    for ((machine_type, state), n) in &gauges.nodes {
        let labels = NodeLabels {
            machine_type: machine_type.clone(),
            state: state.as_str().to_owned(),
        };
        metrics.nodes.get_or_create(&labels).set(gauge_value(*n));
    }
    for (state, n) in &gauges.autosuites {
        let labels = StateLabels {
            state: state.clone(),
        };
        metrics
            .autosuites
            .get_or_create(&labels)
            .set(gauge_value(*n));
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &metrics.registry);
    text
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
