//! The standard gRPC health service (`grpc.health.v1.Health`), for grpc-health-probe,
//! load balancers and Kubernetes-style checks: cuttle-api and each of its services are
//! SERVING while the database answers, NOT_SERVING while it does not, and NOT_SERVING
//! once shutdown begins. It needs no token. cuttle's own HealthService/GetHealth says
//! more (versions, beanstalkd); this one says only whether to send requests here.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::App;

/// How often the database is checked.
const EVERY: Duration = Duration::from_secs(5);

/// The services the health check names, besides the whole server ("").
pub const SERVICES: [&str; 9] = [
    "cuttle.v1.NodeService",
    "cuttle.v1.RunService",
    "cuttle.v1.HealthService",
    "cuttle.v1.DispatchService",
    "cuttle.v1.QueueService",
    "cuttle.v1.AdminService",
    "cuttle.v1.PresetService",
    "cuttle.v1.SuiteService",
    "cuttle.v1.AutoSuiteService",
];

async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}

/// Keeps the health service's answers in step with the database until `shutdown`.
pub async fn report_loop(app: App, reporter: HealthReporter, shutdown: CancellationToken) {
    let mut last = None;
    loop {
        let healthy = app.db(|store| store.ping()).await.is_ok();
        let status = if healthy {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if last != Some(healthy) {
            if !healthy {
                tracing::warn!("grpc.health.v1: NOT_SERVING (the database does not answer)");
            } else if last.is_some() {
                tracing::info!("grpc.health.v1: SERVING again");
            }
            set_all(&reporter, status).await;
            last = Some(healthy);
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
    set_all(&reporter, ServingStatus::NotServing).await;
}
