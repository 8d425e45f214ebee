//! The admin token. Holding it lets a caller act for anyone (unlock others' nodes).
//!
//! The token lives in a file only its owner can read (generated on first start); the
//! daemon keeps only its SHA-256 in memory and never logs it. Full per-user tokens and
//! roles are a later step; until then a caller without the admin token is trusted to name
//! itself with `owner`, as teuthology's lock server trusts its callers.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;

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
        let Some(presented) = metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        // Comparing digests, not tokens, keeps the comparison time independent of how
        // much of the secret a guess got right.
        digest == self.digest
    }
}

fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("cannot read /dev/urandom to generate the admin token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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
