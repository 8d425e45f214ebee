//! HealthService: is cuttle-api up, and can it reach its database and beanstalkd?

use std::time::Duration;

use tonic::{Request, Response, Status};

use cuttle_proto::v1::health_service_server::HealthService;
use cuttle_proto::v1::{GetHealthRequest, GetHealthResponse};

use crate::{App, observe};

#[derive(Debug)]
pub struct HealthApi {
    app: App,
}

impl HealthApi {
    pub fn new(app: App) -> HealthApi {
        HealthApi { app }
    }
}

#[tonic::async_trait]
impl HealthService for HealthApi {
    async fn get_health(
        &self,
        request: Request<GetHealthRequest>,
    ) -> Result<Response<GetHealthResponse>, Status> {
        observe("HealthService/GetHealth", async {
            self.app
                .authorize(request.metadata(), cuttle_core::auth::Action::Read)
                .await?;
            let mut problems = Vec::new();
            let database_ok = match self.app.db(|store| store.ping()).await {
                Ok(()) => true,
                Err(status) => {
                    problems.push(format!("database: {}", status.message()));
                    false
                }
            };
            let beanstalk =
                tokio::time::timeout(Duration::from_secs(3), self.app.queue().stats()).await;
            let beanstalk_ok = match beanstalk {
                Ok(Ok(_)) => true,
                Ok(Err(error)) => {
                    problems.push(error.to_string());
                    false
                }
                Err(_) => {
                    problems.push(format!(
                        "beanstalkd at {} did not answer within 3s",
                        self.app.queue().addr()
                    ));
                    false
                }
            };
            Ok(GetHealthResponse {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                database_backend: self.app.store().backend().as_str().to_owned(),
                database_ok,
                beanstalk_address: self.app.queue().addr().to_owned(),
                beanstalk_ok,
                detail: problems.join("; "),
                uptime_s: self.app.uptime().as_secs(),
            })
        })
        .await
    }
}
