//! Who is calling: bearer tokens resolved to a [`Caller`] (user and role).
//!
//! Two kinds of token: the bootstrap admin token, which cuttle-api writes on first start
//! to a file only its owner can read (`DATA_DIR/admin.token`, mode 0600), and the tokens
//! an admin creates (`cuttle admin token create`), stored as their SHA-256 only. Neither
//! is ever logged. Comparisons are of digests, in constant time, and a resolved token is
//! cached for [`CACHE_TTL`] so a busy dispatcher costs no query per call; a revoke
//! empties the cache.
//!
//! What each caller may do is `cuttle_core::auth::authorize`; [`crate::App::authorize`]
//! puts the two together at the top of every handler.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::metadata::MetadataMap;

use cuttle_core::Owner;
use cuttle_core::auth::{Caller, Role};

#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Reads the token from `path`, creating the file with a fresh random token (mode
    /// 0600) when it does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<AdminToken> {
        if !path.exists() {
            let token = random_token()?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot create admin token file {}", path.display()))?;
            writeln!(file, "{token}")
                .with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a new admin token");
        }
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read admin token file {}", path.display()))?;
        let token = token.trim();
        anyhow::ensure!(
            token.len() >= 16,
            "admin token in {} is shorter than 16 characters; put a long random token there or delete the file to generate one",
            path.display()
        );
        Ok(AdminToken::from_secret(token))
    }

    pub fn from_secret(token: &str) -> AdminToken {
        AdminToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// True when the request carries `authorization: Bearer <the admin token>`.
    pub fn is_admin(&self, metadata: &MetadataMap) -> bool {
        matches!(presented_digest(metadata), Ok(Some(digest)) if self.matches(&digest))
    }

    fn matches(&self, digest: &[u8; 32]) -> bool {
        constant_time_eq(digest, &self.digest)
    }
}

/// The user name the bootstrap admin token acts as.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// How long a resolved token is trusted without asking the database again.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// Equal without stopping at the first difference: the time taken says nothing about
/// how much of a guess was right.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The SHA-256 of the bearer token on a request: `None` without an authorization
/// header; an error for a header that is not `Bearer TOKEN`.
pub fn presented_digest(metadata: &MetadataMap) -> Result<Option<[u8; 32]>, Status> {
    let Some(value) = metadata.get("authorization") else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            Status::unauthenticated(
                "the authorization header must be `Bearer TOKEN`; pass the token with --token or CUTTLE_TOKEN",
            )
        })?;
    Ok(Some(Sha256::digest(token.as_bytes()).into()))
}

/// The hex SHA-256 of a secret token, as the tokens table stores it.
pub fn digest_hex(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()).into())
}

/// How a change is signed in a job's timeline: the token's user, or, for an admin who
/// names someone (`--owner alice`), that name with the admin's own.
pub fn acting_as(caller: &Caller, given: &str) -> Option<String> {
    let user = caller.user()?;
    let given = given.trim();
    Some(
        if caller.is_admin() && !given.is_empty() && given != user.as_str() {
            format!("{given} (admin {user})")
        } else {
            user.to_string()
        },
    )
}

/// Hex of a digest, as the tokens table stores it.
pub fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Resolves tokens to callers: the bootstrap admin in memory, the rest from the
/// database through a short-lived cache.
#[derive(Debug)]
pub struct Authenticator {
    bootstrap: AdminToken,
    cache: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
    /// Bumped by every revoke: a lookup that began before one must not cache its answer.
    generation: std::sync::atomic::AtomicU64,
}

impl Authenticator {
    pub fn new(bootstrap: AdminToken) -> Authenticator {
        Authenticator {
            bootstrap,
            cache: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn bootstrap(&self) -> &AdminToken {
        &self.bootstrap
    }

    /// The caller for `digest` if cuttle-api knows without the database.
    pub fn known(&self, digest: &[u8; 32], now: Instant) -> Option<Caller> {
        if self.bootstrap.matches(digest) {
            return Some(Caller::User {
                user: Owner::parse(BOOTSTRAP_ADMIN).expect("a valid user name"),
                role: Role::Admin,
            });
        }
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(digest)
            .filter(|(_, at)| now.duration_since(*at) < CACHE_TTL)
            .map(|(caller, _)| caller.clone())
    }

    /// The revoke generation; read it before a database lookup and pass it to
    /// [`Authenticator::remember`].
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Caches a looked-up caller, unless a revoke happened since `generation` was read.
    pub fn remember(&self, digest: [u8; 32], caller: Caller, now: Instant, generation: u64) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation() != generation {
            return;
        }
        // Bounded: tokens are few, but a flood of distinct bad tokens must not grow it.
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(digest, (caller, now));
    }

    /// Forgets every cached token (after a revoke), and keeps lookups that were under
    /// way from caching what they found.
    pub fn forget_all(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cache.clear();
    }
}

/// A fresh secret token: `cuttle_` and 64 hex digits from the kernel's random source.
pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("cannot read /dev/urandom to generate a token")?;
    Ok(format!("cuttle_{}", hex(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_is_private_and_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/admin.token");
        let token = AdminToken::load_or_create(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let secret = std::fs::read_to_string(&path).unwrap();
        let mut metadata = MetadataMap::new();
        assert!(!token.is_admin(&metadata));
        metadata.insert(
            "authorization",
            format!("Bearer {}", secret.trim()).parse().unwrap(),
        );
        assert!(token.is_admin(&metadata));
        metadata.insert("authorization", "Bearer wrong".parse().unwrap());
        assert!(!token.is_admin(&metadata));
        // A second start reads the same token.
        let again = AdminToken::load_or_create(&path).unwrap();
        assert_eq!(again.digest, token.digest);
    }

    #[test]
    fn a_short_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        std::fs::write(&path, "abc\n").unwrap();
        let error = AdminToken::load_or_create(&path).unwrap_err();
        assert!(error.to_string().contains("shorter than 16"), "{error}");
    }
}
