//! `cuttle health`: cuttle-api's version and the state of its database and beanstalkd.
//!
//! The API always answers health checks with OK at the gRPC level; this command turns a
//! false `database_ok` or `beanstalk_ok` into exit code 1 so monitoring scripts can use it.

use cuttle_proto::v1;

use crate::Context;
use crate::error::Failure;
use crate::output::{HealthJson, fields, print, print_json};

/// The health fields as `key: value` lines, named as in the proto.
pub fn health_text(health: &v1::GetHealthResponse) -> String {
    fields(&[
        ("version", health.version.clone()),
        ("database_backend", health.database_backend.clone()),
        ("database_ok", health.database_ok.to_string()),
        ("beanstalk_address", health.beanstalk_address.clone()),
        ("beanstalk_ok", health.beanstalk_ok.to_string()),
        ("detail", health.detail.clone()),
        ("uptime_s", health.uptime_s.to_string()),
    ])
}

/// Why the API is unhealthy, or `None` when its database and beanstalkd are both ok.
pub fn unhealthy_reason(health: &v1::GetHealthResponse) -> Option<String> {
    let mut broken = Vec::new();
    if !health.database_ok {
        broken.push("database is not ok");
    }
    if !health.beanstalk_ok {
        broken.push("beanstalkd is not ok");
    }
    if broken.is_empty() {
        return None;
    }
    let mut reason = broken.join(", ");
    if !health.detail.trim().is_empty() {
        reason = format!("{reason}: {}", health.detail.trim());
    }
    Some(reason)
}

/// Runs `cuttle health`: prints every field, then fails if something is not ok.
pub async fn run(context: &Context) -> Result<(), Failure> {
    let api = context.connect().await?;
    let health = api
        .health()
        .get_health(v1::GetHealthRequest {})
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        print_json(&HealthJson::from(&health))?;
    } else {
        print(&health_text(&health))?;
    }
    match unhealthy_reason(&health) {
        Some(reason) => Err(Failure::Unhealthy(reason)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_when_both_dependencies_are_ok() {
        let mut health = v1::GetHealthResponse {
            database_ok: true,
            beanstalk_ok: true,
            ..Default::default()
        };
        assert_eq!(unhealthy_reason(&health), None);
        health.beanstalk_ok = false;
        health.detail = "connection refused".into();
        assert_eq!(
            unhealthy_reason(&health).unwrap(),
            "beanstalkd is not ok: connection refused"
        );
        assert!(health_text(&health).contains("beanstalk_ok:       false"));
    }
}
