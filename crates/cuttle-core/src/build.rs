//! Builds: the question teuthology-suite asks Shaman before it schedules ("are packages of
//! this ref, for this distro, flavor and arch, ready?"), what Shaman's answer means, and
//! the build-status webhook Jenkins calls when a build ends, with its HMAC signature.
//! Pure: the HTTP is cuttle-api's.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::InvalidInput;
use crate::autosuite::{BuildReport, WantedBuild};

/// teuthology's default OS version per distro (`teuthology.orchestra.opsys`), used when a
/// request names a distro without a version.
pub const DEFAULT_OS_VERSIONS: [(&str, &str); 9] = [
    ("ubuntu", "22.04"),
    ("fedora", "25"),
    ("centos", "9.stream"),
    ("opensuse", "15.6"),
    ("sle", "15.2"),
    ("rhel", "8.6"),
    ("rocky", "9.7"),
    ("alma", "9.7"),
    ("debian", "8.0"),
];

/// The distro teuthology-suite checks when a request names none (it uses CentOS).
pub const DEFAULT_DISTRO: &str = "centos";

/// One build, as Shaman's search API is asked about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildQuery {
    /// Shaman's project: `ceph`.
    pub project: String,
    /// The branch (Shaman's `ref`).
    pub branch: String,
    /// A commit; when set Shaman is asked for it instead of the branch's newest build.
    pub sha1: Option<String>,
    pub distro: String,
    pub distro_version: String,
    pub flavor: String,
    pub arch: String,
}

impl BuildQuery {
    /// The query for `build`, with teuthology-suite's defaults for what it leaves open:
    /// CentOS, the distro's default version, the `default` flavor, x86_64.
    pub fn for_build(build: &WantedBuild, arch: Option<&str>) -> BuildQuery {
        let distro = non_empty(&build.distro)
            .unwrap_or(DEFAULT_DISTRO)
            .to_lowercase();
        // teuthology treats rhel as centos when it asks for packages.
        let distro = if distro == "rhel" {
            "centos".to_owned()
        } else {
            distro
        };
        let distro_version = non_empty(&build.distro_version)
            .map(str::to_owned)
            .or_else(|| {
                DEFAULT_OS_VERSIONS
                    .iter()
                    .find(|(name, _)| *name == distro)
                    .map(|(_, version)| (*version).to_owned())
            })
            .unwrap_or_default();
        BuildQuery {
            project: "ceph".into(),
            branch: build.branch.clone(),
            sha1: non_empty(&build.sha1).map(str::to_owned),
            distro,
            distro_version,
            flavor: non_empty(&build.flavor).unwrap_or("default").to_owned(),
            arch: arch.and_then(non_empty).unwrap_or("x86_64").to_owned(),
        }
    }

    /// Shaman's `distros` value, `ubuntu/22.04/x86_64`: CentOS, Alma and Rocky by their
    /// major version only, as teuthology's ShamanProject asks.
    pub fn distros(&self) -> String {
        let version = match self.distro.as_str() {
            "centos" | "alma" | "rocky" => self
                .distro_version
                .split('.')
                .next()
                .unwrap_or_default()
                .to_owned(),
            _ => self.distro_version.clone(),
        };
        format!("{}/{}/{}", self.distro, version, self.arch)
    }

    /// The query string of `GET /api/search/`, in teuthology's order. `ready_only` adds
    /// `status=ready` (teuthology's own question); without it Shaman also lists builds
    /// in progress and failed ones.
    pub fn search_params(&self, ready_only: bool) -> Vec<(&'static str, String)> {
        let mut params = Vec::with_capacity(5);
        if ready_only {
            params.push(("status", "ready".to_owned()));
        }
        params.push(("project", self.project.clone()));
        params.push(("flavor", self.flavor.clone()));
        params.push(("distros", self.distros()));
        match &self.sha1 {
            Some(sha1) => params.push(("sha1", sha1.clone())),
            None => params.push(("ref", self.branch.clone())),
        }
        params
    }

    /// `ceph wip-x (ubuntu/22.04/x86_64, default)` for messages.
    pub fn describe(&self) -> String {
        let what = match &self.sha1 {
            Some(sha1) => format!("{} at {sha1}", self.branch),
            None => self.branch.clone(),
        };
        format!(
            "{} {what} ({}, flavor {})",
            self.project,
            self.distros(),
            self.flavor
        )
    }
}

/// Whether a build-status report is about the build `query` waits for: the same branch,
/// the same commit when one is pinned, and the same distro, major version and flavor
/// where the report names them (Jenkins reports each distro's build on its own).
pub fn report_matches(query: &BuildQuery, report: &BuildReport) -> bool {
    let distro = match report.distro.to_lowercase().as_str() {
        "rhel" => "centos".to_owned(),
        other => other.to_owned(),
    };
    let major = |version: &str| version.split('.').next().unwrap_or_default().to_lowercase();
    report.branch == query.branch
        && query
            .sha1
            .as_ref()
            .is_none_or(|sha1| sha1.eq_ignore_ascii_case(&report.sha1))
        && (distro.is_empty() || distro == query.distro)
        && (report.distro_version.is_empty()
            || major(&report.distro_version) == major(&query.distro_version))
        && (report.flavor.is_empty() || report.flavor.eq_ignore_ascii_case(&query.flavor))
}

fn non_empty(text: &str) -> Option<&str> {
    let text = text.trim();
    (!text.is_empty()).then_some(text)
}

/// Where a build stands, from Shaman's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildState {
    /// Packages exist: schedule with this sha1.
    Ready { sha1: String, url: String },
    /// Shaman knows the build but it is not ready yet (`requested`, `queued`, `building`).
    Building { status: String },
    /// The newest build failed.
    Failed { url: String },
    /// Shaman knows nothing of this ref (not pushed, or not yet picked up by Jenkins).
    Unknown,
}

/// Reads Shaman's answers: `ready` to the `status=ready` question, `all` to the same
/// question without it (only looked at when `ready` is empty). Each is the JSON list
/// Shaman returns, newest first.
pub fn classify(
    ready: &serde_json::Value,
    all: Option<&serde_json::Value>,
) -> Result<BuildState, String> {
    let list = |value: &serde_json::Value| -> Result<Vec<serde_json::Value>, String> {
        value.as_array().cloned().ok_or_else(|| {
            format!(
                "Shaman's search answer is not a JSON list: {}",
                short(value)
            )
        })
    };
    let text = |repo: &serde_json::Value, key: &str| {
        repo.get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if let Some(newest) = list(ready)?.first() {
        let sha1 = text(newest, "sha1");
        if sha1.is_empty() {
            return Err(format!(
                "Shaman's ready build has no sha1: {}",
                short(newest)
            ));
        }
        return Ok(BuildState::Ready {
            sha1,
            url: text(newest, "url"),
        });
    }
    let Some(all) = all else {
        return Ok(BuildState::Unknown);
    };
    let all = list(all)?;
    let Some(newest) = all.first() else {
        return Ok(BuildState::Unknown);
    };
    let status = text(newest, "status");
    Ok(match status.as_str() {
        "failed" => BuildState::Failed {
            url: build_url(newest),
        },
        // Ready here but not in the ready answer: it became ready in between.
        "ready" => BuildState::Ready {
            sha1: text(newest, "sha1"),
            url: text(newest, "url"),
        },
        _ => BuildState::Building {
            status: if status.is_empty() {
                "unknown".into()
            } else {
                status
            },
        },
    })
}

/// The Jenkins build a Shaman repo came from, else the repo's own URL.
fn build_url(repo: &serde_json::Value) -> String {
    repo.get("extra")
        .and_then(|extra| extra.get("build_url"))
        .and_then(serde_json::Value::as_str)
        .or_else(|| repo.get("url").and_then(serde_json::Value::as_str))
        .unwrap_or_default()
        .to_owned()
}

fn short(value: &serde_json::Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The header holding the webhook's UNIX time in seconds.
pub const TIMESTAMP_HEADER: &str = "x-cuttle-timestamp";
/// The header holding `sha256=HEX`, the HMAC-SHA256 of `TIMESTAMP.BODY`.
pub const SIGNATURE_HEADER: &str = "x-cuttle-signature";
/// How far a webhook's timestamp may be from now, either way.
pub const MAX_SKEW_S: i64 = 300;
/// The largest webhook body read; the payload is a few hundred bytes.
pub const MAX_WEBHOOK_BYTES: usize = 64 * 1024;

/// Why a webhook request is refused, each with the HTTP status it gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("no {0} header: sign the request (see docs/builds.md)")]
    Unsigned(&'static str),
    #[error(
        "{SIGNATURE_HEADER} does not match the body: check the shared secret, and sign `TIMESTAMP.BODY` exactly as sent"
    )]
    BadSignature,
    #[error(
        "{TIMESTAMP_HEADER} {0} is more than {MAX_SKEW_S} s away from this host's clock: a replay, or a clock to fix"
    )]
    Stale(String),
    #[error("the body is not a build status: {0}")]
    Malformed(String),
    #[error("status {0:?} is not completed or failed")]
    UnknownStatus(String),
}

impl WebhookError {
    /// The HTTP status to answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            WebhookError::Unsigned(_) | WebhookError::BadSignature | WebhookError::Stale(_) => 401,
            WebhookError::Malformed(_) => 400,
            WebhookError::UnknownStatus(_) => 422,
        }
    }
}

/// `sha256=HEX` for `body` sent at `timestamp` (UNIX seconds): what a caller puts in
/// [`SIGNATURE_HEADER`].
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks a webhook's headers against its raw body, at `now_s` (UNIX seconds). The
/// comparison takes the same time whatever the signature.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_s: i64,
) -> Result<(), WebhookError> {
    let timestamp = timestamp
        .map(str::trim)
        .ok_or(WebhookError::Unsigned(TIMESTAMP_HEADER))?;
    let signature = signature
        .map(str::trim)
        .ok_or(WebhookError::Unsigned(SIGNATURE_HEADER))?;
    let hex = signature
        .strip_prefix("sha256=")
        .ok_or(WebhookError::BadSignature)?;
    let given = decode_hex(hex).ok_or(WebhookError::BadSignature)?;
    // The signature first: an unsigned stranger learns nothing about the clock.
    mac(secret, timestamp, body)
        .verify_slice(&given)
        .map_err(|_| WebhookError::BadSignature)?;
    let at: i64 = timestamp
        .parse()
        .map_err(|_| WebhookError::Stale(format!("{timestamp:?}")))?;
    if (now_s - at).abs() > MAX_SKEW_S {
        return Err(WebhookError::Stale(at.to_string()));
    }
    Ok(())
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// The webhook's JSON: what ceph-build's `submit_final_status` knows at the end of a build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    url: String,
    #[serde(rename = "ref")]
    branch: String,
    status: String,
    #[serde(default)]
    distro: String,
    #[serde(default)]
    distro_version: String,
    #[serde(default)]
    flavor: String,
    #[serde(default)]
    sha1: String,
}

/// Reads a (verified) webhook body into a build report.
pub fn parse_webhook(body: &[u8]) -> Result<BuildReport, WebhookError> {
    let payload: Payload =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let ready = match payload.status.as_str() {
        "completed" => true,
        "failed" => false,
        other => return Err(WebhookError::UnknownStatus(other.to_owned())),
    };
    let check = |field: &'static str, value: &str, required: bool| -> Result<(), WebhookError> {
        if required && value.trim().is_empty() {
            return Err(WebhookError::Malformed(format!("{field} is empty")));
        }
        if value.len() > 1024 || value.chars().any(char::is_control) {
            return Err(WebhookError::Malformed(format!(
                "{field} is over 1024 bytes or holds control characters"
            )));
        }
        Ok(())
    };
    check("url", &payload.url, false)?;
    check("ref", &payload.branch, true)?;
    check("distro", &payload.distro, false)?;
    check("distro_version", &payload.distro_version, false)?;
    check("flavor", &payload.flavor, false)?;
    check("sha1", &payload.sha1, false)?;
    if !payload.sha1.is_empty() && !is_sha1(&payload.sha1) {
        return Err(WebhookError::Malformed(format!(
            "sha1 {:?} is not 40 hex digits",
            payload.sha1
        )));
    }
    Ok(BuildReport {
        branch: payload.branch,
        sha1: payload.sha1.to_lowercase(),
        distro: payload.distro,
        distro_version: payload.distro_version,
        flavor: payload.flavor,
        ready,
        url: payload.url,
    })
}

/// A full git commit id.
pub fn is_sha1(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks a branch name an AutoSuite waits on: what git allows in a ref, roughly, and
/// short enough to show.
pub fn check_branch(branch: &str) -> Result<(), InvalidInput> {
    let bad = branch.is_empty()
        || branch.len() > 255
        || branch.starts_with('-')
        || branch.contains("..")
        || branch
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
    if bad {
        return Err(InvalidInput::new(
            "branch",
            format!(
                "{branch:?} is not a git branch name; give the ceph-ci branch you pushed (-c wip-...)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(branch: &str) -> WantedBuild {
        WantedBuild {
            branch: branch.into(),
            ..WantedBuild::default()
        }
    }

    #[test]
    fn the_query_is_teuthologys() {
        let query = BuildQuery::for_build(&wanted("wip-x"), None);
        let params = query.search_params(true);
        assert_eq!(
            params,
            vec![
                ("status", "ready".to_owned()),
                ("project", "ceph".to_owned()),
                ("flavor", "default".to_owned()),
                ("distros", "centos/9/x86_64".to_owned()),
                ("ref", "wip-x".to_owned()),
            ]
        );
        let ubuntu = BuildQuery::for_build(
            &WantedBuild {
                distro: "Ubuntu".into(),
                sha1: "a".repeat(40),
                flavor: "crimson".into(),
                ..wanted("wip-x")
            },
            Some("aarch64"),
        );
        assert_eq!(ubuntu.distros(), "ubuntu/22.04/aarch64");
        assert_eq!(ubuntu.search_params(false).last().unwrap().0, "sha1");
        let rhel = WantedBuild {
            distro: "rhel".into(),
            distro_version: "8.6".into(),
            ..wanted("b")
        };
        assert_eq!(
            BuildQuery::for_build(&rhel, None).distros(),
            "centos/8/x86_64"
        );
    }

    #[test]
    fn shamans_answers_say_where_a_build_stands() {
        let ready = serde_json::json!([
            {"sha1": "b".repeat(40), "status": "ready", "url": "https://chacra/r/1"},
            {"sha1": "a".repeat(40), "status": "ready", "url": "https://chacra/r/0"}
        ]);
        assert_eq!(
            classify(&ready, None).unwrap(),
            BuildState::Ready {
                sha1: "b".repeat(40),
                url: "https://chacra/r/1".into()
            }
        );
        let none = serde_json::json!([]);
        assert_eq!(classify(&none, None).unwrap(), BuildState::Unknown);
        assert_eq!(classify(&none, Some(&none)).unwrap(), BuildState::Unknown);
        let building = serde_json::json!([{"sha1": "c", "status": "building"}]);
        assert_eq!(
            classify(&none, Some(&building)).unwrap(),
            BuildState::Building {
                status: "building".into()
            }
        );
        let failed = serde_json::json!([{"status": "failed", "url": "u", "extra": {"build_url": "https://jenkins/job/1"}}]);
        assert_eq!(
            classify(&none, Some(&failed)).unwrap(),
            BuildState::Failed {
                url: "https://jenkins/job/1".into()
            }
        );
        assert!(classify(&serde_json::json!({"error": 1}), None).is_err());
        assert!(classify(&serde_json::json!([{"status": "ready"}]), None).is_err());
    }

    #[test]
    fn a_signature_holds_only_for_its_secret_body_and_time() {
        let body = br#"{"url":"u","ref":"wip-x","status":"completed"}"#;
        let now = 1_800_000_000;
        let ts = now.to_string();
        let signature = sign(b"s3cret", &ts, body);
        assert!(signature.starts_with("sha256=") && signature.len() == 7 + 64);
        assert_eq!(
            verify(b"s3cret", Some(&ts), Some(&signature), body, now),
            Ok(())
        );
        assert_eq!(
            verify(b"s3cret", Some(&ts), Some(&signature), body, now + 299),
            Ok(())
        );
        let err = |r: Result<(), WebhookError>| r.unwrap_err().http_status();
        assert_eq!(
            err(verify(b"other", Some(&ts), Some(&signature), body, now)),
            401
        );
        assert_eq!(
            err(verify(b"s3cret", Some(&ts), Some(&signature), b"{}", now)),
            401
        );
        assert_eq!(
            err(verify(b"s3cret", None, Some(&signature), body, now)),
            401
        );
        assert_eq!(err(verify(b"s3cret", Some(&ts), None, body, now)), 401);
        assert_eq!(
            err(verify(b"s3cret", Some(&ts), Some("sha256=zz"), body, now)),
            401
        );
        // Replayed later, or signed with another timestamp than the header says.
        assert!(matches!(
            verify(b"s3cret", Some(&ts), Some(&signature), body, now + 301),
            Err(WebhookError::Stale(_))
        ));
        let later = (now + 10).to_string();
        assert_eq!(
            verify(b"s3cret", Some(&later), Some(&signature), body, now),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn a_webhook_body_is_read_strictly() {
        let report = parse_webhook(
            br#"{"url":"https://jenkins/1","ref":"wip-x","status":"completed","distro":"ubuntu","distro_version":"22.04","flavor":"default","sha1":"ABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCD"}"#,
        )
        .unwrap();
        assert!(report.ready);
        assert_eq!(report.sha1, "abcdefabcdefabcdefabcdefabcdefabcdefabcd");
        assert!(
            !parse_webhook(br#"{"url":"u","ref":"b","status":"failed"}"#)
                .unwrap()
                .ready
        );
        let status = |body: &[u8]| parse_webhook(body).unwrap_err().http_status();
        assert_eq!(status(b"not json"), 400);
        assert_eq!(status(br#"{"url":"u","ref":"","status":"failed"}"#), 400);
        assert_eq!(status(br#"{"url":"u","ref":"b","status":"started"}"#), 422);
        assert_eq!(
            status(br#"{"url":"u","ref":"b","status":"failed","x":1}"#),
            400
        );
        assert_eq!(
            status(br#"{"url":"u","ref":"b","status":"failed","sha1":"12"}"#),
            400
        );
    }

    #[test]
    fn a_report_matches_the_build_a_query_waits_for() {
        let query = BuildQuery::for_build(
            &WantedBuild {
                distro: "ubuntu".into(),
                ..wanted("wip-x")
            },
            None,
        );
        let report = BuildReport {
            branch: "wip-x".into(),
            sha1: "a".repeat(40),
            distro: "Ubuntu".into(),
            distro_version: "22.04".into(),
            flavor: "default".into(),
            ready: true,
            url: "https://jenkins/1".into(),
        };
        assert!(report_matches(&query, &report));
        let other = |change: fn(&mut BuildReport)| {
            let mut changed = report.clone();
            change(&mut changed);
            report_matches(&query, &changed)
        };
        assert!(!other(|r| r.branch = "wip-y".into()));
        assert!(
            !other(|r| r.distro = "centos".into()),
            "another distro's build"
        );
        assert!(!other(|r| r.distro_version = "24.04".into()));
        assert!(!other(|r| r.flavor = "crimson".into()));
        assert!(
            other(|r| r.distro = String::new()),
            "a report without a distro"
        );
        // A pinned commit waits for that commit's build only.
        let pinned = BuildQuery {
            sha1: Some("b".repeat(40)),
            ..query.clone()
        };
        assert!(!report_matches(&pinned, &report));
        // The default is teuthology's: CentOS 9.
        let default = BuildQuery::for_build(&wanted("wip-x"), None);
        assert!(!report_matches(&default, &report));
        let centos = BuildReport {
            distro: "centos".into(),
            distro_version: "9".into(),
            ..report.clone()
        };
        assert!(report_matches(&default, &centos));
    }

    #[test]
    fn branches_are_checked() {
        assert!(check_branch("wip-sage-testing-2026-11-29").is_ok());
        for bad in ["", "-c", "a..b", "a b", "a\nb", "x:y"] {
            assert!(check_branch(bad).is_err(), "{bad:?}");
        }
    }
}
