//! Who may do what. Every caller is someone: a user with a role (admin, developer), a
//! daemon with the service role, or anonymous (no token), and every RPC names the
//! [`Action`] it performs. [`authorize`] is the one rule table; cuttle-api checks it at
//! the top of every handler, and a test per RPC proves the wrong callers are refused.
//!
//! Pure: the API resolves the token to a [`Caller`] and loads whatever the action is
//! about (a run's owner, a node's holder) before asking.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{InvalidInput, Owner};

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Everything: nodes, any run, queue administration, tokens.
    Admin,
    /// Their own runs, jobs and hand locks.
    Developer,
    /// What dispatchers and supervisors do: leases, claims, locks for claimed jobs,
    /// dispatch records, heartbeats, reports, releases.
    Service,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Developer, Role::Service];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Service => "service",
        }
    }

    pub fn parse(text: &str) -> Result<Role, InvalidInput> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text.trim())
            .ok_or_else(|| {
                InvalidInput::new(
                    "role",
                    format!("{text:?} is not a role; use admin, developer or service"),
                )
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No token.
    Anonymous,
    /// A valid token's user and role.
    User { user: Owner, role: Role },
}

impl Caller {
    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Anonymous => None,
            Caller::User { role, .. } => Some(*role),
        }
    }

    pub fn user(&self) -> Option<&Owner> {
        match self {
            Caller::Anonymous => None,
            Caller::User { user, .. } => Some(user),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role() == Some(Role::Admin)
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Anonymous => f.write_str("an anonymous caller (no token)"),
            Caller::User { user, role } => write!(f, "{user} ({role})"),
        }
    }
}

/// A token as cuttle-api keeps it: never the secret, only who it is for and its first
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: i64,
    pub user: Owner,
    pub role: Role,
    /// The token's first characters, to tell tokens apart.
    pub prefix: String,
    pub created_at: crate::UnixMillis,
    pub created_by: String,
    pub revoked_at: Option<crate::UnixMillis>,
}

/// What a request does, with what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'a> {
    /// List or show anything (runs, jobs, nodes, queues, health, the lock history).
    Read,
    /// Schedule a run owned by `owner`.
    Schedule { owner: &'a Owner },
    /// Kill, or re-prioritize, jobs of a run owned by `owner`.
    ActOnRun { owner: &'a Owner },
    /// Lock nodes by hand for `owner`, or unlock nodes `owner` locked by hand.
    HandLock { owner: &'a Owner },
    /// Add or change nodes, mark them up, pause or resume a queue.
    AdministerLab,
    /// Mark a node down (a supervisor whose nuke failed does this).
    MarkNodeDown,
    /// A dispatcher's and a supervisor's work: leases, claims, locks for a claimed job,
    /// dispatch records, heartbeats, status and prepare reports, releases.
    Service,
    /// Create, list or revoke tokens.
    ManageTokens,
}

/// Why a request is refused, with what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(
        "this call needs a token: pass --token, set CUTTLE_TOKEN or put the token in ~/.config/cuttle/token (an admin creates one with `cuttle admin token create --user NAME --role developer`)"
    )]
    NoToken,
    #[error("{caller} may not {what}{hint}")]
    Forbidden {
        caller: String,
        what: String,
        hint: &'static str,
    },
}

/// The rule table. `open_reads`: whether anonymous callers may read.
pub fn authorize(caller: &Caller, action: &Action<'_>, open_reads: bool) -> Result<(), Denied> {
    let Caller::User { user, role } = caller else {
        return match action {
            Action::Read if open_reads => Ok(()),
            _ => Err(Denied::NoToken),
        };
    };
    let forbidden = |what: String, hint: &'static str| {
        Err(Denied::Forbidden {
            caller: caller.to_string(),
            what,
            hint,
        })
    };
    match (role, action) {
        (_, Action::Read) | (Role::Admin, _) => Ok(()),
        (Role::Service, Action::Service | Action::MarkNodeDown) => Ok(()),
        (Role::Service, other) => forbidden(
            describe(other),
            "; a service token only does what dispatchers and supervisors do",
        ),
        (
            Role::Developer,
            Action::Schedule { owner } | Action::ActOnRun { owner } | Action::HandLock { owner },
        ) => {
            if *owner == user {
                Ok(())
            } else {
                forbidden(
                    describe(action),
                    "; a developer acts on their own runs, jobs and locks only (an admin may act for anyone)",
                )
            }
        }
        (Role::Developer, other) => forbidden(describe(other), "; ask a lab admin"),
    }
}

fn describe(action: &Action<'_>) -> String {
    match action {
        Action::Read => "read".into(),
        Action::Schedule { owner } => format!("schedule runs for {owner}"),
        Action::ActOnRun { owner } => format!("act on {owner}'s runs and jobs"),
        Action::HandLock { owner } => format!("lock or unlock nodes as {owner}"),
        Action::AdministerLab => "add, change or mark nodes, or pause queues".into(),
        Action::MarkNodeDown => "mark nodes down".into(),
        Action::Service => "do a dispatcher's or supervisor's work".into(),
        Action::ManageTokens => "manage tokens".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: Role) -> Caller {
        Caller::User {
            user: Owner::parse(name).unwrap(),
            role,
        }
    }

    #[test]
    fn anonymous_callers_only_read_and_only_when_reads_are_open() {
        let alice = Owner::parse("alice").unwrap();
        assert!(authorize(&Caller::Anonymous, &Action::Read, true).is_ok());
        assert_eq!(
            authorize(&Caller::Anonymous, &Action::Read, false),
            Err(Denied::NoToken)
        );
        for action in [
            Action::Schedule { owner: &alice },
            Action::HandLock { owner: &alice },
            Action::Service,
            Action::AdministerLab,
            Action::ManageTokens,
        ] {
            assert_eq!(
                authorize(&Caller::Anonymous, &action, true),
                Err(Denied::NoToken)
            );
        }
    }

    #[test]
    fn developers_act_on_their_own_things_only() {
        let alice = Owner::parse("alice").unwrap();
        let bob = Owner::parse("bob").unwrap();
        let dev = user("alice", Role::Developer);
        assert!(authorize(&dev, &Action::Schedule { owner: &alice }, false).is_ok());
        assert!(authorize(&dev, &Action::ActOnRun { owner: &alice }, false).is_ok());
        let refused = authorize(&dev, &Action::ActOnRun { owner: &bob }, false).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("alice (developer) may not act on bob's runs")
        );
        assert!(authorize(&dev, &Action::HandLock { owner: &bob }, false).is_err());
        for action in [
            Action::AdministerLab,
            Action::MarkNodeDown,
            Action::Service,
            Action::ManageTokens,
        ] {
            assert!(authorize(&dev, &action, false).is_err(), "{action:?}");
        }
        assert!(authorize(&dev, &Action::Read, false).is_ok());
    }

    #[test]
    fn services_do_daemon_work_only_and_admins_everything() {
        let alice = Owner::parse("alice").unwrap();
        let service = user("dispatcher", Role::Service);
        assert!(authorize(&service, &Action::Service, false).is_ok());
        assert!(authorize(&service, &Action::MarkNodeDown, false).is_ok());
        for action in [
            Action::Schedule { owner: &alice },
            Action::ActOnRun { owner: &alice },
            Action::HandLock { owner: &alice },
            Action::AdministerLab,
            Action::ManageTokens,
        ] {
            assert!(authorize(&service, &action, false).is_err(), "{action:?}");
        }
        let admin = user("root", Role::Admin);
        for action in [
            Action::Schedule { owner: &alice },
            Action::ActOnRun { owner: &alice },
            Action::HandLock { owner: &alice },
            Action::AdministerLab,
            Action::Service,
            Action::ManageTokens,
        ] {
            assert!(authorize(&admin, &action, false).is_ok(), "{action:?}");
        }
    }

    #[test]
    fn roles_parse_with_a_helpful_error() {
        assert_eq!(Role::parse("service").unwrap(), Role::Service);
        assert!(
            Role::parse("root")
                .unwrap_err()
                .message
                .contains("admin, developer or service")
        );
    }
}
