//! The connection to cuttle-api: one gRPC channel, opened eagerly with a 5 s limit so an
//! unreachable API is reported before anything else, and the admin token attached to
//! every call.
//!
//! This is the only module that knows about tonic transports; it must never print.

use std::time::Duration;

use cuttle_proto::v1::admin_service_client::AdminServiceClient;
use cuttle_proto::v1::auto_suite_service_client::AutoSuiteServiceClient;
use cuttle_proto::v1::health_service_client::HealthServiceClient;
use cuttle_proto::v1::node_service_client::NodeServiceClient;
use cuttle_proto::v1::preset_service_client::PresetServiceClient;
use cuttle_proto::v1::queue_service_client::QueueServiceClient;
use cuttle_proto::v1::run_service_client::RunServiceClient;
use cuttle_proto::v1::suite_service_client::SuiteServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::Failure;

/// How long to wait for cuttle-api to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer we accept. A run of thousands of jobs carries each job's YAML body, far
/// past tonic's 4 MiB default.
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// The channel with the token interceptor in front, as every client uses it.
pub type Transport = cuttle_proto::bearer::Authed;

/// The token interceptor (shared with the daemons).
pub use cuttle_proto::bearer::Bearer as BearerToken;

/// The interceptor for `token`, refusing one that cannot travel in a header.
pub fn bearer(token: Option<&str>) -> Result<BearerToken, Failure> {
    BearerToken::new(token).map_err(|_| {
        Failure::Invalid(
            "token: the token must be printable ASCII without line breaks; check --token, \
             CUTTLE_TOKEN or ~/.config/cuttle/token"
                .to_owned(),
        )
    })
}

/// An open connection to cuttle-api.
#[derive(Debug)]
pub struct Api {
    url: String,
    channel: Channel,
    token: BearerToken,
}

impl Api {
    /// Connects to `url` (a bare `host:port` means `http://host:port`), waiting at most
    /// [`CONNECT_TIMEOUT`].
    pub async fn connect(
        url: &str,
        token: BearerToken,
        ca_pem: Option<&[u8]>,
    ) -> Result<Api, Failure> {
        // `CUTTLE_API=` (set but empty) means the default, as if it were unset.
        let url = url.trim();
        let url = if url.is_empty() {
            crate::cli::DEFAULT_API.to_owned()
        } else if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        if Endpoint::from_shared(url.clone()).is_err() {
            return Err(Failure::Invalid(format!(
                "api: {url:?} is not a URL; use one like {}",
                crate::cli::DEFAULT_API
            )));
        }
        let endpoint = cuttle_proto::endpoint::endpoint(&url, ca_pem)
            .map_err(|error| Failure::Invalid(format!("api: {error}")))?
            .connect_timeout(CONNECT_TIMEOUT);
        let unreachable = |detail: String| Failure::Unreachable {
            url: url.clone(),
            detail,
        };
        let channel = match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(error)) => return Err(unreachable(root_cause(&error))),
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        };
        Ok(Api {
            url,
            channel,
            token,
        })
    }

    pub fn nodes(&self) -> NodeServiceClient<Transport> {
        NodeServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(MAX_ANSWER_BYTES)
    }

    pub fn runs(&self) -> RunServiceClient<Transport> {
        RunServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(MAX_ANSWER_BYTES)
    }

    pub fn queue(&self) -> QueueServiceClient<Transport> {
        QueueServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(MAX_ANSWER_BYTES)
    }

    pub fn admin(&self) -> AdminServiceClient<Transport> {
        AdminServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(MAX_ANSWER_BYTES)
    }

    pub fn presets(&self) -> PresetServiceClient<Transport> {
        PresetServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(MAX_ANSWER_BYTES)
    }

    pub fn autosuites(&self) -> AutoSuiteServiceClient<Transport> {
        AutoSuiteServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(MAX_ANSWER_BYTES)
    }

    pub fn suites(&self) -> SuiteServiceClient<Transport> {
        SuiteServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(MAX_ANSWER_BYTES)
            .max_encoding_message_size(MAX_ANSWER_BYTES)
    }

    pub fn health(&self) -> HealthServiceClient<Transport> {
        HealthServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(MAX_ANSWER_BYTES)
    }

    /// The failure for an error status of a call on this connection.
    pub fn failure(&self, status: tonic::Status) -> Failure {
        Failure::from_status(status, &self.url)
    }
}

/// The innermost error's message (`Connection refused (os error 111)`): tonic's outer
/// layers only say `transport error`.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_with_a_line_break_is_refused_with_where_it_came_from() {
        let Err(Failure::Invalid(message)) = bearer(Some("a\nb")) else {
            panic!("a token with a line break must be refused");
        };
        assert!(message.contains("~/.config/cuttle/token"), "{message}");
        assert!(bearer(Some("cuttle_abc")).unwrap().is_some());
    }
}
