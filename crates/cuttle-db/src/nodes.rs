//! The `nodes` table: inventory, up/down, and locks.
//!
//! **Invariant:** a node is held by at most one holder at any instant. Every lock is a
//! single conditional `UPDATE … WHERE locked_by IS NULL` inside a write transaction, and the
//! transaction is rolled back unless it locked exactly what was asked for, so no request
//! ever ends holding part of its nodes. Nothing here reads a node and then writes it on the
//! strength of what it read.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

use cuttle_core::audit::LockAction;
use cuttle_core::node::{HoldingJob, UnlockRefused, Unlocker, check_unlock};
use cuttle_core::{JobId, LockRequest, MachineType, Node, NodeLock, NodeName, Owner, UnixMillis};

use crate::dispatch::DispatchTx;
use crate::lock_history::{Changed, LockHistoryTx};
use crate::schema::{jobs, nodes, runs};
use crate::{DbConnection, DbError, LockError, Store, with_conn, write_tx};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = nodes)]
struct NodeRow {
    name: String,
    machine_type: String,
    up: bool,
    locked_by: Option<String>,
    locked_job_id: Option<i64>,
    locked_since: Option<i64>,
    description: String,
    os_type: String,
    os_version: String,
    created_at: i64,
    updated_at: i64,
    ssh_key: String,
}

impl NodeRow {
    fn into_node(self) -> Result<Node, DbError> {
        let corrupt =
            |e: cuttle_core::InvalidInput| DbError::Corrupt(format!("node {}: {e}", self.name));
        let lock = match self.locked_by.as_deref() {
            Some(owner) => Some(NodeLock {
                owner: Owner::parse(owner).map_err(corrupt)?,
                job_id: self.locked_job_id.map(JobId),
                since: UnixMillis(self.locked_since.unwrap_or(self.updated_at)),
            }),
            None => None,
        };
        Ok(Node {
            name: NodeName::parse(&self.name).map_err(corrupt)?,
            machine_type: MachineType::parse(&self.machine_type).map_err(corrupt)?,
            up: self.up,
            lock,
            description: self.description,
            os_type: self.os_type,
            os_version: self.os_version,
            ssh_key: self.ssh_key,
            created_at: UnixMillis(self.created_at),
            updated_at: UnixMillis(self.updated_at),
        })
    }
}

fn into_nodes(rows: Vec<NodeRow>) -> Result<Vec<Node>, DbError> {
    rows.into_iter().map(NodeRow::into_node).collect()
}

/// A node to add.
#[derive(Debug, Clone)]
pub struct NewNode {
    pub name: NodeName,
    pub machine_type: MachineType,
    pub description: String,
    pub os_type: String,
    pub os_version: String,
    /// `KEYTYPE BASE64` (checked with `cuttle_core::node::check_ssh_key`), or empty.
    pub ssh_key: String,
}

/// Descriptive changes to a node; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct NodeChanges {
    pub machine_type: Option<MachineType>,
    pub description: Option<String>,
    pub os_type: Option<String>,
    pub os_version: Option<String>,
    pub ssh_key: Option<String>,
}

/// The columns an update writes; `None` fields are left out of the UPDATE.
#[derive(AsChangeset)]
#[diesel(table_name = nodes)]
struct NodeChangeset<'a> {
    machine_type: Option<&'a str>,
    description: Option<&'a str>,
    os_type: Option<&'a str>,
    os_version: Option<&'a str>,
    ssh_key: Option<&'a str>,
    updated_at: i64,
}

/// Which nodes to list; every `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct NodeFilter {
    pub machine_type: Option<MachineType>,
    pub locked: Option<bool>,
    pub up: Option<bool>,
    pub locked_by: Option<Owner>,
}

/// What an unlock did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnlockOutcome {
    pub unlocked: Vec<NodeName>,
    pub already_unlocked: Vec<NodeName>,
    /// The machine types of the nodes unlocked, each once: whose dispatchers to tell.
    pub machine_types: Vec<cuttle_core::MachineType>,
}

/// Result row of the lock UPDATE's RETURNING clause.
#[derive(QueryableByName)]
struct LockedName {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Per-backend text of the one statement that takes locks.
///
/// PostgreSQL: the candidate rows are picked once in a `MATERIALIZED` CTE. The obvious
/// `WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` is wrong there: the planner may
/// re-run the subquery while updating and lock more than `n` rows (our tests caught it
/// locking 5 of 5 for a request of 3). `SKIP LOCKED` makes concurrent lockers pick
/// different rows instead of queueing on the same ones, and the outer `locked_by IS NULL`
/// re-checks each row under its row lock.
///
/// SQLite: writers are serialised by `BEGIN IMMEDIATE`, so a plain subquery is safe.
const LOCK_N_POSTGRES: &str = "WITH picked AS MATERIALIZED ( \
        SELECT id FROM nodes WHERE machine_type = $4 AND up AND locked_by IS NULL \
        ORDER BY name LIMIT $5 FOR UPDATE SKIP LOCKED) \
     UPDATE nodes SET locked_by = $1, locked_job_id = $2, locked_since = $3, updated_at = $3 \
     FROM picked WHERE nodes.id = picked.id AND nodes.locked_by IS NULL AND nodes.up \
     RETURNING nodes.name AS name";
const LOCK_N_SQLITE: &str = "UPDATE nodes SET locked_by = ?1, locked_job_id = ?2, locked_since = ?3, updated_at = ?3 \
     WHERE locked_by IS NULL AND up AND id IN ( \
        SELECT id FROM nodes WHERE machine_type = ?4 AND up AND locked_by IS NULL \
        ORDER BY name LIMIT ?5) \
     RETURNING name";

/// The lock statement in each backend's dialect; the only per-backend part of
/// `lock_nodes`.
trait LockSql {
    fn lock_n_sql(&self) -> &'static str;
}

impl LockSql for diesel::sqlite::SqliteConnection {
    fn lock_n_sql(&self) -> &'static str {
        LOCK_N_SQLITE
    }
}

impl LockSql for diesel::pg::PgConnection {
    fn lock_n_sql(&self) -> &'static str {
        LOCK_N_POSTGRES
    }
}

impl Store {
    pub fn add_node(&self, node: &NewNode, now: UnixMillis) -> Result<Node, DbError> {
        let mut conn = self.conn()?;
        let row = with_conn!(&mut *conn, |c| diesel::insert_into(nodes::table)
            .values((
                nodes::name.eq(node.name.as_str()),
                nodes::machine_type.eq(node.machine_type.as_str()),
                nodes::up.eq(true),
                nodes::description.eq(&node.description),
                nodes::os_type.eq(&node.os_type),
                nodes::os_version.eq(&node.os_version),
                nodes::ssh_key.eq(&node.ssh_key),
                nodes::created_at.eq(now.0),
                nodes::updated_at.eq(now.0),
            ))
            .returning(NodeRow::as_returning())
            .get_result(c))
        .map_err(|e| match e {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ) => DbError::AlreadyExists {
                what: "node",
                name: node.name.to_string(),
                hint: "; use `cuttle node update` to change it",
            },
            other => DbError::Query(other),
        })?;
        row.into_node()
    }

    pub fn get_node(&self, name: &NodeName) -> Result<Node, DbError> {
        let mut conn = self.conn()?;
        find_node(&mut conn, name)?.into_node()
    }

    pub fn update_node(
        &self,
        name: &NodeName,
        changes: &NodeChanges,
        now: UnixMillis,
    ) -> Result<Node, DbError> {
        // Only the given fields are written, in one conditional UPDATE: a field read here
        // and written back could undo a concurrent MarkNode, and a lock taken between a
        // read and the write could see its node move to another machine type.
        let changeset = NodeChangeset {
            machine_type: changes.machine_type.as_ref().map(MachineType::as_str),
            description: changes.description.as_deref(),
            os_type: changes.os_type.as_deref(),
            os_version: changes.os_version.as_deref(),
            ssh_key: changes.ssh_key.as_deref(),
            updated_at: now.0,
        };
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        let row: NodeRow = write_tx!(conn, |c| {
            let target = nodes::table.filter(nodes::name.eq(name.as_str()));
            let updated: Option<NodeRow> = match &changes.machine_type {
                None => diesel::update(target)
                    .set(&changeset)
                    .returning(NodeRow::as_returning())
                    .get_result(c)
                    .optional()?,
                // A locked node keeps its machine type (moving it to the type it already
                // has is no move).
                Some(new_type) => diesel::update(
                    target.filter(
                        nodes::locked_by
                            .is_null()
                            .or(nodes::machine_type.eq(new_type.as_str())),
                    ),
                )
                .set(&changeset)
                .returning(NodeRow::as_returning())
                .get_result(c)
                .optional()?,
            };
            match (updated, &changes.machine_type) {
                (Some(row), _) => Ok(row),
                (None, None) => Err(not_found_node(name.as_str())),
                (None, Some(new_type)) => {
                    // Nothing matched: say whether the node is missing or locked.
                    let current = c.find_node(name)?;
                    Err(DbError::NodeLocked {
                        node: name.to_string(),
                        holder: current.locked_by.unwrap_or_else(|| "someone".to_owned()),
                        action: format!("moving it to machine type {new_type}"),
                    })
                }
            }
        })?;
        row.into_node()
    }

    /// Marks a node up or down. `reason` becomes the description (required for down; the
    /// caller validates it). A lock on the node is left alone.
    pub fn mark_node(
        &self,
        name: &NodeName,
        up: bool,
        reason: Option<&str>,
        now: UnixMillis,
    ) -> Result<Node, DbError> {
        let mut conn = self.conn()?;
        let rows: Vec<NodeRow> = with_conn!(&mut *conn, |c| {
            let target = nodes::table.filter(nodes::name.eq(name.as_str()));
            // A node put back in service starts with a clean record of prepares.
            if up {
                diesel::update(target)
                    .set(nodes::prepare_strikes.eq(0))
                    .execute(c)?;
            }
            match reason {
                Some(reason) => diesel::update(target)
                    .set((
                        nodes::up.eq(up),
                        nodes::description.eq(reason),
                        nodes::updated_at.eq(now.0),
                    ))
                    .returning(NodeRow::as_returning())
                    .get_results(c),
                None => diesel::update(target)
                    .set((nodes::up.eq(up), nodes::updated_at.eq(now.0)))
                    .returning(NodeRow::as_returning())
                    .get_results(c),
            }
        })?;
        rows.into_iter()
            .next()
            .ok_or_else(|| not_found_node(name.as_str()))?
            .into_node()
    }

    pub fn list_nodes(&self, filter: &NodeFilter) -> Result<Vec<Node>, DbError> {
        let mut conn = self.conn()?;
        let rows: Vec<NodeRow> = with_conn!(&mut *conn, |c| {
            let mut query = nodes::table
                .select(NodeRow::as_select())
                .order(nodes::name)
                .into_boxed();
            if let Some(machine_type) = &filter.machine_type {
                query = query.filter(nodes::machine_type.eq(machine_type.as_str()));
            }
            match filter.locked {
                Some(true) => query = query.filter(nodes::locked_by.is_not_null()),
                Some(false) => query = query.filter(nodes::locked_by.is_null()),
                None => {}
            }
            if let Some(up) = filter.up {
                query = query.filter(nodes::up.eq(up));
            }
            if let Some(owner) = &filter.locked_by {
                query = query.filter(nodes::locked_by.eq(owner.as_str()));
            }
            query.load(c)
        })?;
        into_nodes(rows)
    }

    /// How many nodes the machine type has in all (up or down) and how many are up.
    pub fn node_counts(&self, machine_type: &MachineType) -> Result<(u32, u32), DbError> {
        let mut conn = self.conn()?;
        let (total, up): (i64, i64) = with_conn!(&mut *conn, |c| {
            let of_type = nodes::table.filter(nodes::machine_type.eq(machine_type.as_str()));
            let total: i64 = of_type.count().get_result(c)?;
            let up: i64 = of_type.filter(nodes::up.eq(true)).count().get_result(c)?;
            Ok::<_, diesel::result::Error>((total, up))
        })?;
        let as_u32 = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok((as_u32(total), as_u32(up)))
    }

    /// How many nodes (up or down, locked or not) the machine type has; 0 if none.
    pub fn count_nodes_of_type(&self, machine_type: &MachineType) -> Result<u32, DbError> {
        let mut conn = self.conn()?;
        let total: i64 = with_conn!(&mut *conn, |c| nodes::table
            .filter(nodes::machine_type.eq(machine_type.as_str()))
            .count()
            .get_result(c))?;
        Ok(u32::try_from(total).unwrap_or(u32::MAX))
    }

    /// The nodes currently locked for each of these jobs, names sorted; a job holding no
    /// node is absent from the map. One query per 500 jobs, so showing a large run does not
    /// cost a query per job.
    pub fn nodes_locked_for_jobs(
        &self,
        job_ids: &[JobId],
    ) -> Result<HashMap<JobId, Vec<NodeName>>, DbError> {
        // Well below SQLite's limit on bound parameters per statement.
        const CHUNK: usize = 500;
        let mut conn = self.conn()?;
        let mut held: HashMap<JobId, Vec<NodeName>> = HashMap::new();
        for chunk in job_ids.chunks(CHUNK) {
            let ids: Vec<i64> = chunk.iter().map(|id| id.0).collect();
            let rows: Vec<(Option<i64>, String)> = with_conn!(&mut *conn, |c| nodes::table
                .filter(nodes::locked_job_id.eq_any(&ids))
                .select((nodes::locked_job_id, nodes::name))
                .order(nodes::name)
                .load(c))?;
            for (job_id, name) in rows {
                let name = NodeName::parse(&name).map_err(|e| DbError::Corrupt(e.to_string()))?;
                if let Some(job_id) = job_id {
                    held.entry(JobId(job_id)).or_default().push(name);
                }
            }
        }
        Ok(held)
    }

    /// Locks exactly `request.count` free nodes of the machine type, or none.
    pub fn lock_nodes(&self, request: &LockRequest, now: UnixMillis) -> Result<Vec<Node>, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        let locked: Vec<NodeRow> = write_tx!(conn, |c| c.lock_count(request, now))?;
        into_nodes(locked)
    }

    /// Locks the nodes of each of these jobs, which `holder` must have claimed (each
    /// `waiting` and claimed by it), as its own all-or-nothing [`Store::lock_nodes`] for
    /// the job's node count and owner: one answer per job, in order. One write
    /// transaction for all, and a savepoint per job, so a job refused (ended, not claimed,
    /// not enough free nodes) leaves nothing locked for itself and changes nothing for the
    /// others.
    pub fn lock_nodes_of_claimed_jobs(
        &self,
        holder: &str,
        job_ids: &[JobId],
        now: UnixMillis,
    ) -> Result<Vec<Result<Vec<Node>, DbError>>, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        let answers: Vec<Result<Vec<NodeRow>, DbError>> = write_tx!(conn, |c| {
            Ok(job_ids
                .iter()
                .map(|job_id| {
                    c.transaction(|c| {
                        let job = c.load_claimed(*job_id, holder)?;
                        let request = LockRequest {
                            machine_type: job.spec.machine_type,
                            count: job.spec.n_nodes,
                            owner: job.owner,
                            job_id: Some(job.id),
                        };
                        c.lock_count(&request, now)
                    })
                })
                .collect())
        })?;
        Ok(answers
            .into_iter()
            .map(|answer| answer.and_then(into_nodes))
            .collect())
    }

    /// Locks exactly these nodes, or none.
    pub fn lock_named_nodes(
        &self,
        names: &[NodeName],
        owner: &Owner,
        job_id: Option<JobId>,
        now: UnixMillis,
    ) -> Result<Vec<Node>, DbError> {
        let wanted: Vec<&str> = names.iter().map(NodeName::as_str).collect();
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        let rows: Vec<NodeRow> = write_tx!(conn, |c| {
            c.check_job_exists(job_id)?;
            if let Some(job_id) = job_id {
                let count = u32::try_from(wanted.len()).unwrap_or(u32::MAX);
                if let Some(held) = c.nodes_held_by_job(job_id, count)? {
                    if held.iter().all(|row| wanted.contains(&row.name.as_str())) {
                        return Ok(held);
                    }
                    return Err(LockError::JobHoldsOthers {
                        job_id,
                        requested: count,
                        held: held.into_iter().map(|row| row.name).collect(),
                    }
                    .into());
                }
            }
            let locked: Vec<NodeRow> = diesel::update(
                nodes::table
                    .filter(nodes::name.eq_any(&wanted))
                    .filter(nodes::locked_by.is_null())
                    .filter(nodes::up.eq(true)),
            )
            .set((
                nodes::locked_by.eq(owner.as_str()),
                nodes::locked_job_id.eq(job_id.map(|id| id.0)),
                nodes::locked_since.eq(now.0),
                nodes::updated_at.eq(now.0),
            ))
            .returning(NodeRow::as_returning())
            .get_results(c)?;
            if locked.len() == wanted.len() {
                c.record_lock_events(LockAction::Lock, &changed(&locked), &lock_by(job_id), now)?;
                return Ok(locked);
            }
            // Explain the shortfall; the transaction rolls back, so nothing stays locked.
            let found: Vec<NodeRow> = nodes::table
                .filter(nodes::name.eq_any(&wanted))
                .select(NodeRow::as_select())
                .load(c)?;
            let unknown: Vec<String> = wanted
                .iter()
                .filter(|name| !found.iter().any(|row| row.name == **name))
                .map(|name| (*name).to_owned())
                .collect();
            if !unknown.is_empty() {
                return Err(LockError::UnknownNodes { names: unknown }.into());
            }
            let just_locked: Vec<&str> = locked.iter().map(|row| row.name.as_str()).collect();
            let unavailable = found
                .iter()
                .filter(|row| !just_locked.contains(&row.name.as_str()));
            let mut held = Vec::new();
            let mut down = Vec::new();
            for row in unavailable {
                match &row.locked_by {
                    Some(holder) => held.push((row.name.clone(), holder.clone())),
                    None => down.push(row.name.clone()),
                }
            }
            Err(LockError::Unavailable { locked: held, down }.into())
        })?;
        into_nodes(rows)
    }

    /// Unlocks nodes as `unlocker` may (see `cuttle_core::node::check_unlock`: a job's
    /// nodes only by that job's release once it ended, hand locks by their holder or an
    /// admin). Already-free nodes are reported, not refused, so a retried unlock succeeds.
    /// If any node may not be unlocked, nothing is.
    ///
    /// `release_grace_ms`: an ended job whose supervisor heartbeat within it is still
    /// releasing its nodes, and people may not unlock them meanwhile.
    pub fn unlock_nodes(
        &self,
        names: &[NodeName],
        unlocker: &Unlocker,
        release_grace_ms: i64,
        now: UnixMillis,
    ) -> Result<UnlockOutcome, DbError> {
        let wanted: Vec<&str> = names.iter().map(NodeName::as_str).collect();
        let by = match unlocker {
            Unlocker::Person {
                owner,
                is_admin: true,
            } => format!("{owner} (admin)"),
            Unlocker::Person { owner, .. } => owner.to_string(),
            Unlocker::JobRelease { job_id } => format!("release of job {job_id}"),
        };
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let rows: Vec<NodeRow> = nodes::table
                .filter(nodes::name.eq_any(&wanted))
                .select(NodeRow::as_select())
                .load(c)?;
            let unknown: Vec<&str> = wanted
                .iter()
                .filter(|name| !rows.iter().any(|row| row.name == **name))
                .copied()
                .collect();
            if !unknown.is_empty() {
                return Err(DbError::NotFound {
                    what: if unknown.len() == 1 { "node" } else { "nodes" },
                    name: unknown.join(", "),
                });
            }
            let job_ids: Vec<i64> = rows.iter().filter_map(|row| row.locked_job_id).collect();
            let holding = c.holding_jobs(&job_ids, now.0 - release_grace_ms)?;
            let nodes_now = into_nodes(rows)?;
            let refused: Vec<UnlockRefused> = nodes_now
                .iter()
                .filter_map(|node| {
                    let job = node
                        .lock
                        .as_ref()
                        .and_then(|lock| lock.job_id)
                        .and_then(|id| holding.get(&id));
                    check_unlock(node, unlocker, job).err()
                })
                .collect();
            if !refused.is_empty() {
                return Err(DbError::UnlockRefused { refused });
            }
            let mut outcome = UnlockOutcome::default();
            let mut released = Vec::new();
            for node in nodes_now {
                let Some(lock) = node.lock else {
                    outcome.already_unlocked.push(node.name);
                    continue;
                };
                // Conditional on the lock we just checked (holder and job): if it changed
                // hands in between, this touches nothing and the node is reported as not
                // ours.
                let target = nodes::table
                    .filter(nodes::name.eq(node.name.as_str()))
                    .filter(nodes::locked_by.eq(lock.owner.as_str()));
                let cleared = (
                    nodes::locked_by.eq(None::<String>),
                    nodes::locked_job_id.eq(None::<i64>),
                    nodes::locked_since.eq(None::<i64>),
                    nodes::updated_at.eq(now.0),
                );
                let changed = match lock.job_id {
                    Some(job_id) => {
                        diesel::update(target.filter(nodes::locked_job_id.eq(job_id.0)))
                            .set(cleared)
                            .execute(c)?
                    }
                    None => diesel::update(target.filter(nodes::locked_job_id.is_null()))
                        .set(cleared)
                        .execute(c)?,
                };
                if changed == 1 {
                    released.push(Changed {
                        name: node.name.to_string(),
                        holder: lock.owner.to_string(),
                        job_id: lock.job_id.map(|id| id.0),
                    });
                    outcome.unlocked.push(node.name);
                    if !outcome.machine_types.contains(&node.machine_type) {
                        outcome.machine_types.push(node.machine_type);
                    }
                } else {
                    outcome.already_unlocked.push(node.name);
                }
            }
            c.record_lock_events(LockAction::Unlock, &released, &by, now)?;
            Ok(outcome)
        })
    }
}

/// The history rows for nodes just locked (as the UPDATE returned them).
fn changed(rows: &[NodeRow]) -> Vec<Changed> {
    rows.iter()
        .map(|row| Changed {
            name: row.name.clone(),
            holder: row.locked_by.clone().unwrap_or_default(),
            job_id: row.locked_job_id,
        })
        .collect()
}

/// Who took a lock, as the history records it.
fn lock_by(job_id: Option<JobId>) -> String {
    match job_id {
        Some(job_id) => format!("dispatch of job {job_id}"),
        None => "lock by hand".to_owned(),
    }
}

fn not_found_node(name: &str) -> DbError {
    DbError::NotFound {
        what: "node",
        name: name.to_owned(),
    }
}

fn find_node(conn: &mut DbConnection, name: &NodeName) -> Result<NodeRow, DbError> {
    with_conn!(conn, |c| c.find_node(name))
}

/// Queries used inside the transactions above, written once and implemented for both
/// concrete connection types.
trait NodeTx {
    fn find_node(&mut self, name: &NodeName) -> Result<NodeRow, DbError>;
    /// Fails with `UnknownJob` when a lock names a job the database does not know.
    fn check_job_exists(&mut self, job_id: Option<JobId>) -> Result<(), DbError>;
    /// The nodes a job holds already: `None` if none; them if there are `count`; an error
    /// if it holds a different number (a lock is never topped up).
    fn nodes_held_by_job(
        &mut self,
        job_id: JobId,
        count: u32,
    ) -> Result<Option<Vec<NodeRow>>, DbError>;
    /// Each of these jobs' run name, whether it has ended, and whether it is being
    /// released (ended, with a heartbeat at or after `fresh_since`).
    fn holding_jobs(
        &mut self,
        job_ids: &[i64],
        fresh_since: i64,
    ) -> Result<HashMap<JobId, HoldingJob>, DbError>;
    /// Checks the lock statement locked exactly what was asked; if not, explains why (the
    /// caller's transaction then rolls back, releasing the partial lock).
    fn finish_lock(
        &mut self,
        request: &LockRequest,
        names: Vec<LockedName>,
    ) -> Result<Vec<NodeRow>, DbError>;
    /// [`Store::lock_nodes`] inside the caller's write transaction, which must roll back
    /// (or to its savepoint) on an error: the statement may have locked part of the nodes.
    fn lock_count(
        &mut self,
        request: &LockRequest,
        now: UnixMillis,
    ) -> Result<Vec<NodeRow>, DbError>;
}

crate::impl_for_both_backends! { NodeTx {
    fn lock_count(&mut self, request: &LockRequest, now: UnixMillis) -> Result<Vec<NodeRow>, DbError> {
        let wanted = i64::from(request.count.get());
        self.check_job_exists(request.job_id)?;
        // Idempotent per job: a retry after a lost reply gets the same nodes back
        // instead of a second set.
        if let Some(job_id) = request.job_id
            && let Some(held) = self.nodes_held_by_job(job_id, request.count.get())?
        {
            return Ok(held);
        }
        let names: Vec<LockedName> = diesel::sql_query(self.lock_n_sql())
            .bind::<Text, _>(request.owner.as_str())
            .bind::<Nullable<BigInt>, _>(request.job_id.map(|id| id.0))
            .bind::<BigInt, _>(now.0)
            .bind::<Text, _>(request.machine_type.as_str())
            .bind::<BigInt, _>(wanted)
            .load(self)?;
        let rows = self.finish_lock(request, names)?;
        self.record_lock_events(
            LockAction::Lock,
            &changed(&rows),
            &lock_by(request.job_id),
            now,
        )?;
        Ok(rows)
    }

    fn find_node(&mut self, name: &NodeName) -> Result<NodeRow, DbError> {
        nodes::table
            .filter(nodes::name.eq(name.as_str()))
            .select(NodeRow::as_select())
            .first(self)
            .optional()?
            .ok_or_else(|| not_found_node(name.as_str()))
    }

    fn check_job_exists(&mut self, job_id: Option<JobId>) -> Result<(), DbError> {
        let Some(job_id) = job_id else { return Ok(()) };
        let status: Option<String> = jobs::table
            .filter(jobs::id.eq(job_id.0))
            .select(jobs::status)
            .first(self)
            .optional()?;
        let status = status.ok_or(LockError::UnknownJob { job_id })?;
        let status = crate::jobs::parse_status(&status).map_err(DbError::Corrupt)?;
        // A job that has ended (killed while its dispatcher waited for nodes) must not
        // take nodes: nothing would ever run on them or give them back promptly.
        if status.is_terminal() {
            return Err(LockError::JobEnded { job_id, status }.into());
        }
        Ok(())
    }

    fn nodes_held_by_job(&mut self, job_id: JobId, count: u32) -> Result<Option<Vec<NodeRow>>, DbError> {
        let held: Vec<NodeRow> = nodes::table
            .filter(nodes::locked_job_id.eq(job_id.0))
            .select(NodeRow::as_select())
            .order(nodes::name)
            .load(self)?;
        if held.is_empty() {
            return Ok(None);
        }
        if held.len() != count as usize {
            return Err(LockError::JobHoldsOthers {
                job_id,
                requested: count,
                held: held.into_iter().map(|row| row.name).collect(),
            }
            .into());
        }
        Ok(Some(held))
    }

    fn holding_jobs(&mut self, job_ids: &[i64], fresh_since: i64) -> Result<HashMap<JobId, HoldingJob>, DbError> {
        if job_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(i64, String, String, Option<i64>)> = jobs::table
            .inner_join(runs::table)
            .filter(jobs::id.eq_any(job_ids))
            .select((jobs::id, jobs::status, runs::name, jobs::heartbeat_at))
            .load(self)?;
        rows.into_iter()
            .map(|(id, status, run, heartbeat_at)| {
                let status = crate::jobs::parse_status(&status).map_err(DbError::Corrupt)?;
                let ended = status.is_terminal();
                Ok((
                    JobId(id),
                    HoldingJob {
                        job_id: JobId(id),
                        run,
                        ended,
                        releasing: ended && heartbeat_at.is_some_and(|at| at >= fresh_since),
                    },
                ))
            })
            .collect()
    }

    fn finish_lock(&mut self, request: &LockRequest, names: Vec<LockedName>) -> Result<Vec<NodeRow>, DbError> {
        let requested = request.count.get();
        if names.len() == requested as usize {
            let names: Vec<String> = names.into_iter().map(|row| row.name).collect();
            return Ok(nodes::table
                .filter(nodes::name.eq_any(&names))
                .select(NodeRow::as_select())
                .order(nodes::name)
                .load(self)?);
        }
        // These counts are taken inside the transaction, after our partial update, which
        // is about to be rolled back: the rows we just took were free too.
        let taken = i64::try_from(names.len()).unwrap_or(i64::MAX);
        let machine_type = request.machine_type.clone();
        let of_type = nodes::table.filter(nodes::machine_type.eq(machine_type.as_str()));
        let total: i64 = of_type.count().get_result(self)?;
        let down: i64 = of_type.filter(nodes::up.eq(false)).count().get_result(self)?;
        let free: i64 = of_type
            .filter(nodes::up.eq(true))
            .filter(nodes::locked_by.is_null())
            .count()
            .get_result(self)?;
        let as_u32 = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
        Err(if total == 0 {
            LockError::UnknownMachineType { machine_type }
        } else if as_u32(total) < requested {
            LockError::NeverFits { machine_type, requested, total: as_u32(total) }
        } else {
            LockError::NotEnoughFree {
                machine_type,
                requested,
                free: as_u32(free + taken),
                down: as_u32(down),
                total: as_u32(total),
            }
        }
        .into())
    }
}}
