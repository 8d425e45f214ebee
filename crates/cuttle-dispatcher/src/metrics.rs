//! The dispatcher's Prometheus metrics, served as `GET /metrics` on `--metrics-listen`
//! (prometheus-client's text format), every series labelled with the machine type.
//!
//! What only the dispatcher sees: the jobs it holds, how long they waited for nodes
//! (lock wait), how long a start takes once the policy says go (dispatch latency), nodes
//! left idle while jobs wait, supervisors alive, and what it did (started, buried,
//! requeued, released). The lab's own counts (jobs by state, nodes) are cuttle-api's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// One dispatcher's metrics. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub window_jobs: Gauge,
    pub lease_held: Gauge,
    pub paused: Gauge,
    pub supervisors_alive: Gauge,
    pub started: Counter,
    pub buried: Counter,
    pub requeued: Counter,
    pub releases: Counter,
    pub lock_wait: Histogram,
    pub dispatch_seconds: Histogram,
    pub idle_node_seconds: Counter<f64, AtomicU64>,
}

impl Metrics {
    /// The metrics of the dispatcher of `machine_type`.
    pub fn new(machine_type: &str) -> Metrics {
        let mut registry = Registry::with_prefix_and_labels(
            "cuttle_dispatcher",
            [(
                std::borrow::Cow::Borrowed("machine_type"),
                std::borrow::Cow::Owned(machine_type.to_owned()),
            )]
            .into_iter(),
        );
        let fields = Metrics {
            registry: Arc::new(Registry::default()),
            window_jobs: Gauge::default(),
            lease_held: Gauge::default(),
            paused: Gauge::default(),
            supervisors_alive: Gauge::default(),
            started: Counter::default(),
            buried: Counter::default(),
            requeued: Counter::default(),
            releases: Counter::default(),
            // 10 ms to about 5.5 days: a job may wait long for its nodes.
            lock_wait: Histogram::new(exponential_buckets(0.01, 4.0, 12)),
            // 1 ms to about 33 s.
            dispatch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            idle_node_seconds: Counter::default(),
        };
        registry.register(
            "window_jobs",
            "jobs this dispatcher holds reserved, waiting for the policy to start them",
            fields.window_jobs.clone(),
        );
        registry.register(
            "lease_held",
            "1 while this dispatcher holds its tube's lease (is the active one), 0 standing by",
            fields.lease_held.clone(),
        );
        registry.register(
            "paused",
            "1 while its queue is paused",
            fields.paused.clone(),
        );
        registry.register(
            "supervisors_alive",
            "supervisors this dispatcher started that have not exited (jobs and releases)",
            fields.supervisors_alive.clone(),
        );
        registry.register(
            "jobs_started",
            "jobs started (nodes locked, supervisor recorded)",
            fields.started.clone(),
        );
        registry.register(
            "jobs_buried",
            "jobs buried because they can never run here",
            fields.buried.clone(),
        );
        registry.register(
            "jobs_requeued",
            "jobs handed back to the queue (a supervisor that would not start, a dispatch not recorded)",
            fields.requeued.clone(),
        );
        registry.register(
            "releases",
            "release supervisors started for ended jobs whose own supervisor vanished",
            fields.releases.clone(),
        );
        registry.register(
            "lock_wait_seconds",
            "how long each started job waited in the window, from its reservation to its nodes locked",
            fields.lock_wait.clone(),
        );
        registry.register(
            "dispatch_seconds",
            "how long a start took once the policy said go: lock, spawn and record",
            fields.dispatch_seconds.clone(),
        );
        registry.register(
            "idle_node_seconds",
            "node-seconds nodes stayed free while jobs waited in the window without starting",
            fields.idle_node_seconds.clone(),
        );
        // The fields share their values with what was registered.
        Metrics {
            registry: Arc::new(registry),
            ..fields
        }
    }

    /// The scrape's text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Serves `/metrics` on `addr` until `shutdown`; the bound address is returned once
    /// listening (port 0 picks one).
    pub async fn serve(
        &self,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot serve metrics on {addr}; is something else listening there? pick another --metrics-listen")
        })?;
        let bound = listener.local_addr()?;
        let metrics = self.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        );
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the metrics listener failed");
            }
        });
        tracing::info!(addr = %bound, "serving metrics at /metrics");
        Ok(bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_carries_the_machine_type() {
        let metrics = Metrics::new("smithi");
        metrics.started.inc();
        metrics.window_jobs.set(7);
        metrics.lock_wait.observe(1.5);
        metrics.idle_node_seconds.inc_by(2.5);
        let text = metrics.render();
        for line in [
            "cuttle_dispatcher_jobs_started_total{machine_type=\"smithi\"} 1",
            "cuttle_dispatcher_window_jobs{machine_type=\"smithi\"} 7",
            "cuttle_dispatcher_lock_wait_seconds_count{machine_type=\"smithi\"} 1",
            "cuttle_dispatcher_idle_node_seconds_total{machine_type=\"smithi\"} 2.5",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
