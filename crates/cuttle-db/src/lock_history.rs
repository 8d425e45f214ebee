//! The `lock_events` table: the append-only history of every node lock and unlock.
//!
//! **Invariant:** every statement that changes `nodes.locked_by` records what it changed
//! here, in the same transaction, so the history and the nodes never disagree; the
//! audit (`cuttle_core::audit`) replays it. Nothing here ever updates or deletes a row.

use std::collections::HashMap;

use diesel::prelude::*;

use cuttle_core::audit::{AuditReport, Holder, LockAction, LockEvent};
use cuttle_core::{JobId, NodeName, UnixMillis};

use crate::schema::{lock_events, nodes};
use crate::{DbConnection, DbError, Store};

/// A node as it was when it was locked or unlocked: its name and its holder.
#[derive(Debug, Clone)]
pub(crate) struct Changed {
    pub name: String,
    pub holder: String,
    pub job_id: Option<i64>,
}

/// Appends history rows inside the caller's transaction.
pub(crate) trait LockHistoryTx {
    fn record_lock_events(
        &mut self,
        action: LockAction,
        changed: &[Changed],
        by: &str,
        now: UnixMillis,
    ) -> Result<(), DbError>;
}

crate::impl_for_both_backends! { LockHistoryTx {
    fn record_lock_events(
        &mut self,
        action: LockAction,
        changed: &[Changed],
        by: &str,
        now: UnixMillis,
    ) -> Result<(), DbError> {
        if changed.is_empty() {
            return Ok(());
        }
        let rows: Vec<_> = changed
            .iter()
            .map(|node| {
                (
                    lock_events::node.eq(node.name.as_str()),
                    lock_events::action.eq(action.as_str()),
                    lock_events::holder.eq(node.holder.as_str()),
                    lock_events::job_id.eq(node.job_id),
                    lock_events::by_whom.eq(by),
                    lock_events::at.eq(now.0),
                )
            })
            .collect();
        diesel::insert_into(lock_events::table).values(&rows).execute(self)?;
        Ok(())
    }
}}

/// One `lock_events` row as stored.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = lock_events)]
struct EventRow {
    id: i64,
    node: String,
    action: String,
    holder: String,
    job_id: Option<i64>,
    by_whom: String,
    at: i64,
}

fn into_event(row: EventRow) -> Result<LockEvent, DbError> {
    let EventRow {
        id,
        node,
        action,
        holder,
        job_id,
        by_whom: by,
        at,
    } = row;
    Ok(LockEvent {
        id,
        action: LockAction::parse(&action)
            .ok_or_else(|| DbError::Corrupt(format!("lock event {id}: action {action:?}")))?,
        node,
        holder: Holder {
            owner: holder,
            job_id: job_id.map(JobId),
        },
        by,
        at: UnixMillis(at),
    })
}

impl Store {
    /// The newest `limit` events (of one node, or of all), oldest first.
    pub fn lock_history(
        &self,
        node: Option<&NodeName>,
        limit: i64,
    ) -> Result<Vec<LockEvent>, DbError> {
        let mut conn = self.conn()?;
        let rows: Vec<EventRow> = crate::with_conn!(&mut *conn, |c| {
            let mut query = lock_events::table
                .select(EventRow::as_select())
                .order(lock_events::id.desc())
                .limit(limit)
                .into_boxed();
            if let Some(node) = node {
                query = query.filter(lock_events::node.eq(node.as_str()));
            }
            query.load(c)
        })?;
        let mut events: Vec<LockEvent> =
            rows.into_iter().map(into_event).collect::<Result<_, _>>()?;
        events.reverse();
        Ok(events)
    }

    /// Replays the whole history against the nodes' current locks, both read in one
    /// snapshot (a repeatable-read transaction on PostgreSQL, one read transaction on
    /// SQLite), so a lock taken while the audit reads is never a false alarm.
    pub fn audit_locks(&self) -> Result<AuditReport, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        let (rows, current) = match conn {
            DbConnection::Sqlite(c) => {
                c.transaction::<_, DbError, _>(|c| c.read_history_and_locks())?
            }
            DbConnection::Postgres(c) => c
                .build_transaction()
                .repeatable_read()
                .read_only()
                .run::<_, DbError, _>(|c| c.read_history_and_locks())?,
        };
        let events: Vec<LockEvent> = rows.into_iter().map(into_event).collect::<Result<_, _>>()?;
        let current: HashMap<String, Holder> = current
            .into_iter()
            .filter_map(|(name, owner, job_id)| {
                owner.map(|owner| {
                    (
                        name,
                        Holder {
                            owner,
                            job_id: job_id.map(JobId),
                        },
                    )
                })
            })
            .collect();
        Ok(cuttle_core::audit::audit(&events, &current))
    }
}

type Snapshot = (Vec<EventRow>, Vec<(String, Option<String>, Option<i64>)>);

/// The whole history, oldest first, and every locked node's holder.
trait AuditTx {
    fn read_history_and_locks(&mut self) -> Result<Snapshot, DbError>;
}

crate::impl_for_both_backends! { AuditTx {
    fn read_history_and_locks(&mut self) -> Result<Snapshot, DbError> {
        let events: Vec<EventRow> = lock_events::table
            .select(EventRow::as_select())
            .order(lock_events::id.asc())
            .load(self)?;
        let current = nodes::table
            .filter(nodes::locked_by.is_not_null())
            .select((nodes::name, nodes::locked_by, nodes::locked_job_id))
            .load(self)?;
        Ok((events, current))
    }
}}
