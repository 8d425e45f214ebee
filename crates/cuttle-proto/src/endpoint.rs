//! How every cuttle client dials cuttle-api: `http://` in the clear (loopback, or a
//! network only the lab's hosts reach), `https://` over TLS verified against the lab's
//! CA certificate (cuttle-api's `tls_cert_file` must be signed by it and name the host
//! the URL names).

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// Why an endpoint cannot be built; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointError(pub String);

impl std::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EndpointError {}

/// The endpoint for `url`. `ca_pem` is the CA certificate (PEM) that signed cuttle-api's
/// certificate: required for an `https://` URL, refused for an `http://` one (a CA there
/// means the operator thinks the connection is encrypted, and it would not be).
pub fn endpoint(url: &str, ca_pem: Option<&[u8]>) -> Result<Endpoint, EndpointError> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| EndpointError(format!("{url:?} is not a URL ({e})")))?;
    let https = url.starts_with("https://");
    match (https, ca_pem) {
        (false, None) => Ok(endpoint),
        (false, Some(_)) => Err(EndpointError(format!(
            "a TLS CA file was given but {url} is plain http; use https://HOST:PORT (the host named in cuttle-api's certificate)"
        ))),
        (true, None) => Err(EndpointError(format!(
            "{url} uses TLS but no CA certificate was given to verify cuttle-api's certificate; pass the lab's CA file (--tls-ca-file / CUTTLE_TLS_CA_FILE / tls_ca_file)"
        ))),
        (true, Some(ca)) => endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
            .map_err(|e| EndpointError(format!("cannot set up TLS for {url}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_a_ca_and_a_ca_needs_tls() {
        assert!(endpoint("http://127.0.0.1:7171", None).is_ok());
        let error = endpoint("https://cuttle:7171", None).unwrap_err();
        assert!(error.0.contains("--tls-ca-file"), "{error}");
        let error = endpoint("http://cuttle:7171", Some(b"pem")).unwrap_err();
        assert!(error.0.contains("plain http"), "{error}");
        assert!(endpoint("not a url", None).is_err());
    }
}
