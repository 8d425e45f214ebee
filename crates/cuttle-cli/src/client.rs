//! The connection to cuttle-api: one gRPC channel, opened eagerly with a 5 s limit so an
//! unreachable API is reported before anything else, and the admin token attached to
//! every call.
//!
//! This is the only module that knows about tonic transports; it must never print.

use std::time::Duration;

use cuttle_proto::v1::health_service_client::HealthServiceClient;
use cuttle_proto::v1::node_service_client::NodeServiceClient;
use cuttle_proto::v1::queue_service_client::QueueServiceClient;
use cuttle_proto::v1::run_service_client::RunServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::error::Failure;

/// How long to wait for cuttle-api to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer we accept. A run of thousands of jobs carries each job's YAML body, far
/// past tonic's 4 MiB default.
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// The channel with the token interceptor in front, as every client uses it.
pub type Transport = InterceptedService<Channel, BearerToken>;

/// Adds `authorization: Bearer TOKEN` to each call when a token was given.
#[derive(Debug, Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    /// The interceptor for `token`; an empty token (`CUTTLE_TOKEN=`) means none. Surrounding
    /// whitespace is dropped, as in a token pasted from the API's token file.
    pub fn new(token: Option<&str>) -> Result<BearerToken, Failure> {
        let Some(token) = token.map(str::trim).filter(|token| !token.is_empty()) else {
            return Ok(BearerToken(None));
        };
        let mut value: MetadataValue<Ascii> = format!("Bearer {token}").parse().map_err(|_| {
            Failure::Invalid(
                "token: the token must be printable ASCII without line breaks; check \
                     --token / CUTTLE_TOKEN"
                    .to_owned(),
            )
        })?;
        // Keeps the token out of any debug output of the request.
        value.set_sensitive(true);
        Ok(BearerToken(Some(value)))
    }
}

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
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
    pub async fn connect(url: &str, token: BearerToken) -> Result<Api, Failure> {
        // `CUTTLE_API=` (set but empty) means the default, as if it were unset.
        let url = url.trim();
        let url = if url.is_empty() {
            crate::cli::DEFAULT_API.to_owned()
        } else if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|_| {
                Failure::Invalid(format!(
                    "api: {url:?} is not a URL; use one like {}",
                    crate::cli::DEFAULT_API
                ))
            })?
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
    fn the_token_goes_into_the_authorization_header() {
        let mut token = BearerToken::new(Some("s3cret")).unwrap();
        let request = token.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer s3cret"
        );
    }

    #[test]
    fn no_or_empty_token_adds_nothing() {
        for token in [None, Some("")] {
            let mut token = BearerToken::new(token).unwrap();
            let request = token.call(tonic::Request::new(())).unwrap();
            assert!(request.metadata().get("authorization").is_none());
        }
    }

    #[test]
    fn a_token_with_a_line_break_is_refused() {
        assert!(BearerToken::new(Some("a\nb")).is_err());
    }
}
