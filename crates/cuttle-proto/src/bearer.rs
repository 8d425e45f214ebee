//! The client side of API tokens: an interceptor that puts `authorization: Bearer TOKEN`
//! on every call, shared by the CLI, the dispatcher and the supervisor, and the order in
//! which a token is looked for. The token is marked sensitive so it never shows in debug
//! output of a request.

use std::path::{Path, PathBuf};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A channel with the token interceptor in front, as every cuttle client uses it.
pub type Authed = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer TOKEN` to each call when there is a token.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(<redacted>)"
        } else {
            "Bearer(none)"
        })
    }
}

/// A secret token held by a daemon: its Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from its text (trimmed); `None` when empty.
    pub fn new(text: &str) -> Option<Token> {
        let text = text.trim();
        (!text.is_empty()).then(|| Token(text.to_owned()))
    }

    /// The secret itself, for the one header or environment variable that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A token that cannot travel in a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadToken;

impl std::fmt::Display for BadToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the token must be printable ASCII without line breaks")
    }
}

impl std::error::Error for BadToken {}

impl Bearer {
    /// No token: calls go out anonymous.
    pub fn none() -> Bearer {
        Bearer(None)
    }

    /// The interceptor for `token`; an empty token means none. Surrounding whitespace is
    /// dropped, as in a token pasted from a file.
    pub fn new(token: Option<&str>) -> Result<Bearer, BadToken> {
        let Some(token) = token.map(str::trim).filter(|token| !token.is_empty()) else {
            return Ok(Bearer(None));
        };
        let mut value: MetadataValue<Ascii> =
            format!("Bearer {token}").parse().map_err(|_| BadToken)?;
        value.set_sensitive(true);
        Ok(Bearer(Some(value)))
    }

    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }

    /// The interceptor for a daemon's token.
    pub fn for_token(token: Option<&Token>) -> Result<Bearer, BadToken> {
        Bearer::new(token.map(Token::expose))
    }
}

impl Interceptor for Bearer {
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

/// Where a person's token lives when neither `--token` nor `CUTTLE_TOKEN` gives one:
/// `~/.config/cuttle/token` (under `$XDG_CONFIG_HOME` when set).
pub fn default_token_file(home: Option<&Path>, xdg_config_home: Option<&Path>) -> Option<PathBuf> {
    match (xdg_config_home, home) {
        (Some(config), _) if !config.as_os_str().is_empty() => {
            Some(config.join("cuttle").join("token"))
        }
        (_, Some(home)) => Some(home.join(".config").join("cuttle").join("token")),
        _ => None,
    }
}

/// Reads a token file: its first non-empty line, trimmed. `Ok(None)` when the file does
/// not exist; an error naming the file when it cannot be read.
pub fn read_token_file(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(str::to_owned)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(std::io::Error::new(
            error.kind(),
            format!("cannot read the token file {}: {error}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_into_the_authorization_header() {
        let mut token = Bearer::new(Some(" s3cret\n")).unwrap();
        let request = token.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer s3cret"
        );
        assert_eq!(format!("{token:?}"), "Bearer(<redacted>)");
    }

    #[test]
    fn no_or_empty_token_adds_nothing_and_a_bad_one_is_refused() {
        for token in [None, Some(""), Some("  ")] {
            let mut token = Bearer::new(token).unwrap();
            let request = token.call(tonic::Request::new(())).unwrap();
            assert!(request.metadata().get("authorization").is_none());
        }
        assert_eq!(Bearer::new(Some("a\nb")).unwrap_err(), BadToken);
    }

    #[test]
    fn token_files_are_found_and_read() {
        assert_eq!(
            default_token_file(Some(Path::new("/home/a")), None),
            Some(PathBuf::from("/home/a/.config/cuttle/token"))
        );
        assert_eq!(
            default_token_file(Some(Path::new("/home/a")), Some(Path::new("/x"))),
            Some(PathBuf::from("/x/cuttle/token"))
        );
        let dir = std::env::temp_dir().join(format!("cuttle-bearer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        assert_eq!(read_token_file(&file).unwrap(), None);
        std::fs::write(&file, "\n  cuttle_abc  \n").unwrap();
        assert_eq!(
            read_token_file(&file).unwrap().as_deref(),
            Some("cuttle_abc")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
