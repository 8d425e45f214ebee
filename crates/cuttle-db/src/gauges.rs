//! What the lab looks like right now, counted for metrics: live jobs by machine type and
//! status, nodes by machine type and state, AutoSuites by state. Grouped counts, so a
//! scrape costs four small queries whatever the lab's size.

use std::collections::BTreeMap;

use diesel::dsl::count_star;
use diesel::prelude::*;

use cuttle_core::JobStatus;

use crate::schema::{autosuites, jobs, nodes};
use crate::{DbError, Store, with_conn};

/// A node's state for counting: down (whatever its lock), else locked or free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeState {
    Free,
    Locked,
    Down,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Free => "free",
            NodeState::Locked => "locked",
            NodeState::Down => "down",
        }
    }
}

/// The counts a scrape reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Jobs that have not ended, by (machine type, status name).
    pub live_jobs: BTreeMap<(String, &'static str), u64>,
    /// Nodes by (machine type, state).
    pub nodes: BTreeMap<(String, NodeState), u64>,
    /// AutoSuites by state.
    pub autosuites: BTreeMap<String, u64>,
}

impl Store {
    /// Counts the lab for a metrics scrape.
    pub fn gauges(&self) -> Result<Gauges, DbError> {
        let live: Vec<&str> = JobStatus::ALL
            .iter()
            .filter(|s| !s.is_terminal())
            .map(|s| s.as_str())
            .collect();
        let mut conn = self.conn()?;
        let (jobs, nodes, autosuites) = with_conn!(&mut *conn, |c| {
            let jobs: Vec<(String, String, i64)> = jobs::table
                .filter(jobs::status.eq_any(&live))
                .group_by((jobs::machine_type, jobs::status))
                .select((jobs::machine_type, jobs::status, count_star()))
                .load(c)?;
            let free: Vec<(String, bool, i64)> = nodes::table
                .filter(nodes::locked_by.is_null())
                .group_by((nodes::machine_type, nodes::up))
                .select((nodes::machine_type, nodes::up, count_star()))
                .load(c)?;
            let locked: Vec<(String, bool, i64)> = nodes::table
                .filter(nodes::locked_by.is_not_null())
                .group_by((nodes::machine_type, nodes::up))
                .select((nodes::machine_type, nodes::up, count_star()))
                .load(c)?;
            let nodes: Vec<(String, bool, bool, i64)> = free
                .into_iter()
                .map(|(t, up, n)| (t, up, false, n))
                .chain(locked.into_iter().map(|(t, up, n)| (t, up, true, n)))
                .collect();
            let autosuites: Vec<(String, i64)> = autosuites::table
                .group_by(autosuites::state)
                .select((autosuites::state, count_star()))
                .load(c)?;
            Ok::<_, diesel::result::Error>((jobs, nodes, autosuites))
        })?;
        let mut gauges = Gauges::default();
        for (machine_type, status, n) in jobs {
            let status = crate::jobs::parse_status(&status)
                .map_err(|e| DbError::Corrupt(format!("a job's status: {e}")))?;
            gauges
                .live_jobs
                .insert((machine_type, status.as_str()), n.unsigned_abs());
        }
        for (machine_type, up, locked, n) in nodes {
            let state = match (up, locked) {
                (false, _) => NodeState::Down,
                (true, true) => NodeState::Locked,
                (true, false) => NodeState::Free,
            };
            *gauges.nodes.entry((machine_type, state)).or_default() += n.unsigned_abs();
        }
        for (state, n) in autosuites {
            gauges.autosuites.insert(state, n.unsigned_abs());
        }
        Ok(gauges)
    }
}
