//! The lock history and its audit: every lock and unlock of a node is appended to a
//! history (by the database, in the same transaction as the lock itself), and [`audit`]
//! replays that history to prove invariant 1: no node was ever held by two holders at
//! once, and what the nodes show now is what the history says.
//!
//! Pure: the caller loads the history and the nodes' current locks.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::{JobId, UnixMillis};

/// Whether an event took or gave back a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockAction {
    Lock,
    Unlock,
}

impl LockAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LockAction::Lock => "lock",
            LockAction::Unlock => "unlock",
        }
    }

    pub fn parse(text: &str) -> Option<LockAction> {
        match text {
            "lock" => Some(LockAction::Lock),
            "unlock" => Some(LockAction::Unlock),
            _ => None,
        }
    }
}

/// Who holds (or held) a node: an owner, and the job it was locked for, if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Holder {
    pub owner: String,
    pub job_id: Option<JobId>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.job_id {
            Some(job_id) => write!(f, "job {job_id} ({})", self.owner),
            None => write!(f, "{} (by hand)", self.owner),
        }
    }
}

/// One entry of the lock history, in the order the database committed them (`id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEvent {
    pub id: i64,
    pub node: String,
    pub action: LockAction,
    /// For a lock, who took the node; for an unlock, whose lock was removed.
    pub holder: Holder,
    /// Who asked: the unlocking person, `release of job N`, `reaper`, …
    pub by: String,
    pub at: UnixMillis,
}

/// What the audit found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    pub events: usize,
    pub nodes: usize,
    /// Nodes held right now according to the history.
    pub held_now: usize,
    /// Each breach of the invariant, as a sentence naming the node, holders and times.
    pub violations: Vec<String>,
}

impl AuditReport {
    pub fn clean(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Replays `events` (in id order) node by node. A violation is a lock of a node the
/// history shows held, an unlock of a node it shows free or held by another holder, or a
/// difference between the history's holders and `current` (each locked node's holder as
/// the nodes table shows it now).
pub fn audit(events: &[LockEvent], current: &HashMap<String, Holder>) -> AuditReport {
    let mut held: BTreeMap<&str, (&Holder, UnixMillis)> = BTreeMap::new();
    let mut seen: BTreeMap<&str, ()> = BTreeMap::new();
    let mut violations = Vec::new();
    let mut last_id = i64::MIN;
    for event in events {
        if event.id <= last_id {
            violations.push(format!(
                "history out of order at event {} (after {last_id})",
                event.id
            ));
        }
        last_id = event.id;
        seen.insert(&event.node, ());
        match event.action {
            LockAction::Lock => {
                if let Some((holder, since)) = held.get(event.node.as_str()) {
                    violations.push(format!(
                        "node {} was locked for {} at {} while {} held it (since {})",
                        event.node, event.holder, event.at.0, holder, since.0
                    ));
                }
                held.insert(&event.node, (&event.holder, event.at));
            }
            LockAction::Unlock => match held.remove(event.node.as_str()) {
                Some((holder, _)) if *holder == event.holder => {}
                Some((holder, _)) => violations.push(format!(
                    "node {} was unlocked as {}'s at {} but {} held it",
                    event.node, event.holder, event.at.0, holder
                )),
                None => violations.push(format!(
                    "node {} was unlocked at {} (as {}'s) while the history shows it free",
                    event.node, event.at.0, event.holder
                )),
            },
        }
    }
    for (node, holder) in current {
        match held.get(node.as_str()) {
            Some((history, _)) if *history == holder => {}
            Some((history, _)) => violations.push(format!(
                "node {node} is held by {holder} but the history says {history}"
            )),
            None => violations.push(format!(
                "node {node} is held by {holder} but the history shows no lock for it"
            )),
        }
    }
    for (node, (holder, _)) in &held {
        if !current.contains_key(*node) {
            violations.push(format!(
                "node {node} is free but the history says {holder} still holds it"
            ));
        }
    }
    AuditReport {
        events: events.len(),
        nodes: seen.len(),
        held_now: held.len(),
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, node: &str, action: LockAction, job: i64) -> LockEvent {
        LockEvent {
            id,
            node: node.into(),
            action,
            holder: Holder {
                owner: "alice".into(),
                job_id: Some(JobId(job)),
            },
            by: String::new(),
            at: UnixMillis(id * 10),
        }
    }

    #[test]
    fn a_clean_history_passes() {
        use LockAction::*;
        let events = [
            event(1, "n1", Lock, 1),
            event(2, "n2", Lock, 1),
            event(3, "n1", Unlock, 1),
            event(4, "n1", Lock, 2),
            event(5, "n2", Unlock, 1),
        ];
        let current = HashMap::from([(
            "n1".to_owned(),
            Holder {
                owner: "alice".into(),
                job_id: Some(JobId(2)),
            },
        )]);
        let report = audit(&events, &current);
        assert!(report.clean(), "{:?}", report.violations);
        assert_eq!((report.events, report.nodes, report.held_now), (5, 2, 1));
    }

    #[test]
    fn a_node_held_twice_is_caught() {
        use LockAction::*;
        let events = [
            event(1, "n1", Lock, 1),
            event(2, "n1", Lock, 2),
            event(3, "n1", Unlock, 2),
        ];
        let report = audit(&events, &HashMap::new());
        assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
        assert!(report.violations[0].contains("while job 1 (alice) held it"));
    }

    #[test]
    fn the_history_must_match_the_nodes_now() {
        use LockAction::*;
        let report = audit(&[event(1, "n1", Lock, 1)], &HashMap::new());
        assert!(report.violations[0].contains("is free but the history says"));
        let current = HashMap::from([(
            "n2".to_owned(),
            Holder {
                owner: "bob".into(),
                job_id: None,
            },
        )]);
        let report = audit(&[], &current);
        assert!(report.violations[0].contains("shows no lock"));
        let report = audit(&[event(1, "n1", Unlock, 1)], &HashMap::new());
        assert!(report.violations[0].contains("shows it free"));
    }
}
