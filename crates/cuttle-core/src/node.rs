//! Nodes (test machines) and who holds them.
//!
//! A node is locked by at most one holder at a time. The rule that makes that true under
//! concurrency lives in the database (one conditional UPDATE per lock request); this module
//! only describes the result and the permission rule for unlocking.

use serde::{Deserialize, Serialize};

use crate::{InvalidInput, JobId, MachineType, NodeName, Owner, UnixMillis};

/// Who holds a locked node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLock {
    pub owner: Owner,
    /// The job the node was locked for; `None` for a person's hand lock.
    pub job_id: Option<JobId>,
    pub since: UnixMillis,
}

/// A test machine as the lab knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: NodeName,
    pub machine_type: MachineType,
    /// A node that is down is never handed out, locked or not.
    pub up: bool,
    pub lock: Option<NodeLock>,
    /// Free text; for a down node, why it is down.
    pub description: String,
    pub os_type: String,
    pub os_version: String,
    /// Its ssh host key, `KEYTYPE BASE64` (teuthology's `targets` need it); empty when
    /// not known.
    pub ssh_key: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// Checks an ssh host key as a node record keeps it: `KEYTYPE BASE64` (a comment after
/// it, or the host name ssh-keyscan prints before it, is dropped). Empty clears it.
pub fn check_ssh_key(text: &str) -> Result<String, crate::InvalidInput> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(String::new());
    }
    let invalid = |why: &str| {
        crate::InvalidInput::new(
            "ssh key",
            format!(
                "{why}; give the node's host key as `KEYTYPE BASE64`, such as the output of `ssh-keyscan -t ed25519 NODE | cut -d' ' -f2-`"
            ),
        )
    };
    if text.len() > 16 * 1024 || text.chars().any(char::is_control) {
        return Err(invalid("it is over 16 KiB or holds control characters"));
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let is_type =
        |w: &str| w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-");
    let start = words
        .iter()
        .position(|w| is_type(w))
        .ok_or_else(|| invalid("it names no key type (ssh-ed25519, ssh-rsa, ecdsa-...)"))?;
    let key = words
        .get(start + 1)
        .ok_or_else(|| invalid("the key itself is missing"))?;
    let base64 = key.len() >= 16
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
    if !base64 || start > 1 {
        return Err(invalid("it is not `KEYTYPE BASE64`"));
    }
    Ok(format!("{} {key}", words[start]))
}

impl Node {
    /// Free to be locked right now.
    pub fn is_free(&self) -> bool {
        self.up && self.lock.is_none()
    }
}

/// Why an unlock was refused, decided from the node's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnlockRefused {
    #[error(
        "node {node} is locked by {holder}, not by {caller}; only its holder or an admin can unlock it"
    )]
    HeldBySomeoneElse {
        node: NodeName,
        holder: Owner,
        caller: Owner,
    },
    #[error(
        "node {node} is held by job {job_id} of run {run}, which has not ended; nobody unlocks a running job's node, admins included: end the job with `cuttle kill {run} --job {job_id}` and its supervisor gives the node back"
    )]
    HeldByLiveJob {
        node: NodeName,
        job_id: JobId,
        run: String,
    },
    #[error(
        "node {node} is not locked for job {job_id} (it is held by {holder}); a job's release gives back only that job's nodes"
    )]
    NotThisJobs {
        node: NodeName,
        job_id: JobId,
        holder: String,
    },
    #[error(
        "job {job_id} has not ended, so its nodes stay locked; report its final status first (its release follows the report)"
    )]
    JobNotEnded { node: NodeName, job_id: JobId },
    #[error(
        "node {node} is being given back by the release of job {job_id} (it may be nuking it now); wait for the release to finish, or, if it is stuck, until its supervisor has been silent for the grace"
    )]
    ReleaseInProgress { node: NodeName, job_id: JobId },
}

/// Who asks for an unlock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlocker {
    /// A person or a tool unlocking nodes by name; `is_admin` lets them unlock others'
    /// hand locks and the leftover locks of ended jobs, never a live job's.
    Person { owner: Owner, is_admin: bool },
    /// The release of one job's nodes (its supervisor, or the release-only supervisor
    /// its dispatcher starts for a job whose supervisor died).
    JobRelease { job_id: JobId },
}

/// The job a locked node is held for, as the database knows it right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldingJob {
    pub job_id: JobId,
    pub run: String,
    pub ended: bool,
    /// Ended, and its supervisor (or a release supervisor) heartbeat within the grace:
    /// the nodes are being nuked and unlocked right now.
    pub releasing: bool,
}

/// The unlock rule. A lock taken for a job is bound to it: only that job's release frees
/// it, and only once the job has ended; while the job lives nobody else may, admins
/// included (they kill the job instead). A hand lock is its holder's or an admin's to
/// undo, and so is the leftover lock of a job that ended. Unlocking a free node is a
/// no-op, so retries are safe. `holding` is the job the node is locked for, if any.
pub fn check_unlock(
    node: &Node,
    unlocker: &Unlocker,
    holding: Option<&HoldingJob>,
) -> Result<(), UnlockRefused> {
    let Some(lock) = &node.lock else {
        return Ok(());
    };
    match (unlocker, lock.job_id) {
        (Unlocker::JobRelease { job_id }, Some(held_for)) if held_for == *job_id => match holding {
            Some(job) if !job.ended => Err(UnlockRefused::JobNotEnded {
                node: node.name.clone(),
                job_id: *job_id,
            }),
            _ => Ok(()),
        },
        (Unlocker::JobRelease { job_id }, held_for) => Err(UnlockRefused::NotThisJobs {
            node: node.name.clone(),
            job_id: *job_id,
            holder: match held_for {
                Some(other) => format!("job {other}"),
                None => format!("{} by hand", lock.owner),
            },
        }),
        (Unlocker::Person { .. }, Some(job_id)) if holding.is_some_and(|job| !job.ended) => {
            Err(UnlockRefused::HeldByLiveJob {
                node: node.name.clone(),
                job_id,
                run: holding.map(|job| job.run.clone()).unwrap_or_default(),
            })
        }
        (Unlocker::Person { .. }, Some(job_id)) if holding.is_some_and(|job| job.releasing) => {
            Err(UnlockRefused::ReleaseInProgress {
                node: node.name.clone(),
                job_id,
            })
        }
        (Unlocker::Person { owner, is_admin }, _) => {
            if *is_admin || &lock.owner == owner {
                Ok(())
            } else {
                Err(UnlockRefused::HeldBySomeoneElse {
                    node: node.name.clone(),
                    holder: lock.owner.clone(),
                    caller: owner.clone(),
                })
            }
        }
    }
}

/// A request to lock some number of nodes of one machine type for one holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    pub machine_type: MachineType,
    pub count: crate::NodeCount,
    pub owner: Owner,
    pub job_id: Option<JobId>,
}

/// Why a job of `n_nodes` cannot start however the queue moves, given the machine type's
/// `total` nodes of which `up` are up and `held_back` are kept for people: `None` when the
/// nodes that are up could hold it. A job larger than the whole inventory is buried by
/// the policy; one that fits the inventory but not the up nodes waits, and this says so.
pub fn waiting_for_nodes(n_nodes: u32, total: u32, up: u32, held_back: u32) -> Option<String> {
    let usable = up.saturating_sub(held_back);
    if n_nodes <= usable {
        return None;
    }
    let down = total.saturating_sub(up);
    let held = if held_back > 0 {
        format!(", {held_back} held back for people")
    } else {
        String::new()
    };
    Some(if n_nodes > total.saturating_sub(held_back) {
        format!(
            "more nodes than the machine type has: needs {n_nodes}, it has {total}{held}; its dispatcher buries it"
        )
    } else {
        format!(
            "nodes to come up: needs {n_nodes}, {up} of {total} are up ({down} down{held}); bring nodes up with `cuttle node update NODE --up`"
        )
    })
}

/// Checks a down-reason: marking a node down without saying why leaves the next operator
/// guessing.
pub fn check_down_reason(reason: &str) -> Result<String, InvalidInput> {
    let reason = crate::job::check_text("reason", reason)?;
    if reason.is_empty() {
        return Err(InvalidInput::new(
            "reason",
            "marking a node down needs a reason (for example --reason \"disk failing\")",
        ));
    }
    Ok(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_keys_are_one_key_type_and_its_base64() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        assert_eq!(check_ssh_key(key).unwrap(), key);
        assert_eq!(
            check_ssh_key(&format!("smithi001 {key}")).unwrap(),
            key,
            "ssh-keyscan's line"
        );
        assert_eq!(
            check_ssh_key(&format!("{key} root@smithi001")).unwrap(),
            key,
            "a comment"
        );
        assert_eq!(check_ssh_key("  ").unwrap(), "");
        for bad in [
            "AAAA",
            "ssh-ed25519",
            "ssh-ed25519 not*base64!!!!!!!!!!",
            "a b ssh-rsa AAAAAAAAAAAAAAAAAAAA",
            "ssh-rsa AAAAAAAAAAAAAAAAAA\nx",
        ] {
            assert!(check_ssh_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_ssh_key("ssh-rsa AAAAAAAAAAAAAAAAAAAA\u{7}").is_err());
    }

    fn node(lock_owner: Option<&str>) -> Node {
        Node {
            name: NodeName::parse("smithi001").unwrap(),
            machine_type: MachineType::parse("smithi").unwrap(),
            up: true,
            lock: lock_owner.map(|owner| NodeLock {
                owner: Owner::parse(owner).unwrap(),
                job_id: None,
                since: UnixMillis(0),
            }),
            description: String::new(),
            os_type: String::new(),
            os_version: String::new(),
            ssh_key: String::new(),
            created_at: UnixMillis(0),
            updated_at: UnixMillis(0),
        }
    }

    fn person(name: &str, is_admin: bool) -> Unlocker {
        Unlocker::Person {
            owner: Owner::parse(name).unwrap(),
            is_admin,
        }
    }

    #[test]
    fn holder_and_admin_may_unlock_others_may_not() {
        let held = node(Some("alice"));
        assert!(check_unlock(&held, &person("alice", false), None).is_ok());
        assert!(check_unlock(&held, &person("bob", true), None).is_ok());
        let error = check_unlock(&held, &person("bob", false), None).unwrap_err();
        assert!(error.to_string().contains("locked by alice"), "{error}");
        assert!(check_unlock(&node(None), &person("bob", false), None).is_ok());
        // A job's release never frees a hand lock.
        let release = Unlocker::JobRelease { job_id: JobId(7) };
        let error = check_unlock(&held, &release, None).unwrap_err();
        assert!(error.to_string().contains("alice by hand"), "{error}");
    }

    #[test]
    fn a_live_jobs_node_is_freed_by_nobody_but_its_ended_jobs_release() {
        let mut held = node(Some("alice"));
        held.lock.as_mut().unwrap().job_id = Some(JobId(7));
        let live = HoldingJob {
            job_id: JobId(7),
            run: "alice-run".into(),
            ended: false,
            releasing: false,
        };
        for who in [person("alice", false), person("root", true)] {
            let error = check_unlock(&held, &who, Some(&live)).unwrap_err();
            let text = error.to_string();
            assert!(text.contains("cuttle kill alice-run --job 7"), "{text}");
        }
        let own = Unlocker::JobRelease { job_id: JobId(7) };
        assert!(matches!(
            check_unlock(&held, &own, Some(&live)),
            Err(UnlockRefused::JobNotEnded { .. })
        ));
        let other = Unlocker::JobRelease { job_id: JobId(8) };
        assert!(check_unlock(&held, &other, Some(&live)).is_err());
        let ended = HoldingJob {
            ended: true,
            ..live
        };
        assert!(check_unlock(&held, &own, Some(&ended)).is_ok());
        assert!(check_unlock(&held, &other, Some(&ended)).is_err());
        // While its release runs, nobody but the release touches the nodes.
        let releasing = HoldingJob {
            ended: true,
            releasing: true,
            ..ended.clone()
        };
        assert!(matches!(
            check_unlock(&held, &person("root", true), Some(&releasing)),
            Err(UnlockRefused::ReleaseInProgress { .. })
        ));
        assert!(check_unlock(&held, &own, Some(&releasing)).is_ok());
        // A leftover lock of an ended job: its owner or an admin may clear it by hand.
        assert!(check_unlock(&held, &person("alice", false), Some(&ended)).is_ok());
        assert!(check_unlock(&held, &person("root", true), Some(&ended)).is_ok());
        assert!(check_unlock(&held, &person("bob", false), Some(&ended)).is_err());
    }

    #[test]
    fn a_job_waits_for_down_nodes_and_says_so() {
        assert_eq!(waiting_for_nodes(2, 4, 4, 0), None);
        let why = waiting_for_nodes(2, 4, 1, 0).unwrap();
        assert!(why.contains("needs 2, 1 of 4 are up (3 down)"), "{why}");
        assert!(
            waiting_for_nodes(5, 4, 4, 0)
                .unwrap()
                .contains("more nodes than the machine type has")
        );
        assert!(waiting_for_nodes(4, 4, 4, 1).unwrap().contains("held back"));
    }

    #[test]
    fn down_needs_a_reason() {
        assert!(check_down_reason(" ").is_err());
        assert_eq!(check_down_reason(" bad disk ").unwrap(), "bad disk");
    }

    #[test]
    fn free_means_up_and_unlocked() {
        assert!(node(None).is_free());
        assert!(!node(Some("alice")).is_free());
        let mut down = node(None);
        down.up = false;
        assert!(!down.is_free());
    }
}
