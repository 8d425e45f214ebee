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
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
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
}

/// The unlock rule: the holder may unlock, an admin may unlock anything, and unlocking a
/// node that is already free is a no-op (so retries are safe).
pub fn check_unlock(
    node: &Node,
    caller: &Owner,
    caller_is_admin: bool,
) -> Result<(), UnlockRefused> {
    match &node.lock {
        Some(lock) if !caller_is_admin && &lock.owner != caller => {
            Err(UnlockRefused::HeldBySomeoneElse {
                node: node.name.clone(),
                holder: lock.owner.clone(),
                caller: caller.clone(),
            })
        }
        _ => Ok(()),
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
            created_at: UnixMillis(0),
            updated_at: UnixMillis(0),
        }
    }

    #[test]
    fn holder_and_admin_may_unlock_others_may_not() {
        let alice = Owner::parse("alice").unwrap();
        let bob = Owner::parse("bob").unwrap();
        let held = node(Some("alice"));
        assert!(check_unlock(&held, &alice, false).is_ok());
        assert!(check_unlock(&held, &bob, true).is_ok());
        let error = check_unlock(&held, &bob, false).unwrap_err();
        assert!(error.to_string().contains("locked by alice"), "{error}");
        assert!(check_unlock(&node(None), &bob, false).is_ok());
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
