//! The `autosuites` table: suite requests waiting for their build, and the claim that
//! makes each fire exactly once (see cuttle-core's `autosuite` module). Every state
//! change is written to `autosuite_events` in the same transaction.

use diesel::prelude::*;

use cuttle_core::auth::Role;
pub use cuttle_core::autosuite::{AutoSuite, AutoSuiteEvent};
use cuttle_core::autosuite::{AutoSuiteState, WantedBuild};
use cuttle_core::suite::RawSuiteArgs;
use cuttle_core::{Owner, UnixMillis};

use crate::schema::{autosuite_events, autosuites};
use crate::{DbConnection, DbError, Store, with_conn, write_tx};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = autosuites)]
struct Row {
    id: i64,
    owner: String,
    role: String,
    state: String,
    branch: String,
    sha1: String,
    distro: String,
    distro_version: String,
    flavor: String,
    args: String,
    run_name: Option<String>,
    reason: Option<String>,
    build_url: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl Row {
    fn into_autosuite(self) -> Result<AutoSuite, DbError> {
        let corrupt = |e: String| DbError::Corrupt(format!("autosuite {}: {e}", self.id));
        Ok(AutoSuite {
            id: self.id,
            owner: Owner::parse(&self.owner).map_err(|e| corrupt(e.to_string()))?,
            role: Role::parse(&self.role).map_err(|e| corrupt(e.to_string()))?,
            state: AutoSuiteState::parse(&self.state).map_err(|e| corrupt(e.to_string()))?,
            build: WantedBuild {
                branch: self.branch,
                sha1: self.sha1,
                distro: self.distro,
                distro_version: self.distro_version,
                flavor: self.flavor,
            },
            args: serde_json::from_str(&self.args).map_err(|e| corrupt(e.to_string()))?,
            run_name: self.run_name,
            reason: self.reason,
            build_url: self.build_url,
            created_at: UnixMillis(self.created_at),
            updated_at: UnixMillis(self.updated_at),
        })
    }
}

/// An AutoSuite's request as its `args` column keeps it.
fn args_json(args: &RawSuiteArgs) -> Result<String, DbError> {
    serde_json::to_string(args).map_err(|e| DbError::Corrupt(format!("autosuite args: {e}")))
}

/// Queries shared by the AutoSuite operations, written once for both backends.
trait AutoSuiteTx {
    fn load_autosuite(&mut self, id: i64) -> Result<AutoSuite, DbError>;
    /// Adds one entry to `id`'s timeline.
    fn record_event(
        &mut self,
        id: i64,
        from: Option<AutoSuiteState>,
        to: AutoSuiteState,
        reason: Option<&str>,
        now: UnixMillis,
    ) -> Result<(), DbError>;
    /// Moves `id` from `from` to `to` if it is still in `from`; false when another
    /// change came first. The change and its event are written together.
    fn move_state(
        &mut self,
        id: i64,
        from: AutoSuiteState,
        to: AutoSuiteState,
        reason: Option<&str>,
        now: UnixMillis,
    ) -> Result<bool, DbError>;
}

crate::impl_for_both_backends! { AutoSuiteTx {
    fn load_autosuite(&mut self, id: i64) -> Result<AutoSuite, DbError> {
        let row: Option<Row> = autosuites::table
            .filter(autosuites::id.eq(id))
            .select(Row::as_select())
            .first(self)
            .optional()?;
        row.ok_or_else(|| DbError::NotFound { what: "autosuite", name: id.to_string() })?
            .into_autosuite()
    }

    fn move_state(
        &mut self,
        id: i64,
        from: AutoSuiteState,
        to: AutoSuiteState,
        reason: Option<&str>,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        assert!(from.can_become(to), "{from} -> {to} is not an AutoSuite change");
        let changed = diesel::update(
            autosuites::table.filter(autosuites::id.eq(id)).filter(autosuites::state.eq(from.as_str())),
        )
        .set((autosuites::state.eq(to.as_str()), autosuites::updated_at.eq(now.0)))
        .execute(self)?;
        if changed == 1 {
            self.record_event(id, Some(from), to, reason, now)?;
        }
        Ok(changed == 1)
    }

    fn record_event(
        &mut self,
        id: i64,
        from: Option<AutoSuiteState>,
        to: AutoSuiteState,
        reason: Option<&str>,
        now: UnixMillis,
    ) -> Result<(), DbError> {
        diesel::insert_into(autosuite_events::table)
            .values((
                autosuite_events::autosuite_id.eq(id),
                autosuite_events::at.eq(now.0),
                autosuite_events::from_state.eq(from.map(AutoSuiteState::as_str)),
                autosuite_events::to_state.eq(to.as_str()),
                autosuite_events::reason.eq(reason),
            ))
            .execute(self)?;
        Ok(())
    }
}}

impl Store {
    /// Keeps a new AutoSuite, waiting for `build`.
    pub fn add_autosuite(
        &self,
        owner: &Owner,
        role: Role,
        build: &WantedBuild,
        args: &RawSuiteArgs,
        now: UnixMillis,
    ) -> Result<AutoSuite, DbError> {
        let json = args_json(args)?;
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let id: i64 = diesel::insert_into(autosuites::table)
                .values((
                    autosuites::owner.eq(owner.as_str()),
                    autosuites::role.eq(role.as_str()),
                    autosuites::state.eq(AutoSuiteState::WaitingForBuild.as_str()),
                    autosuites::branch.eq(&build.branch),
                    autosuites::sha1.eq(&build.sha1),
                    autosuites::distro.eq(&build.distro),
                    autosuites::distro_version.eq(&build.distro_version),
                    autosuites::flavor.eq(&build.flavor),
                    autosuites::args.eq(&json),
                    autosuites::created_at.eq(now.0),
                    autosuites::updated_at.eq(now.0),
                ))
                .returning(autosuites::id)
                .get_result(c)?;
            c.record_event(
                id,
                None,
                AutoSuiteState::WaitingForBuild,
                Some("added"),
                now,
            )?;
            c.load_autosuite(id)
        })
    }

    /// One AutoSuite with its timeline.
    pub fn get_autosuite(&self, id: i64) -> Result<(AutoSuite, Vec<AutoSuiteEvent>), DbError> {
        let mut conn = self.conn()?;
        with_conn!(&mut *conn, |c| {
            let autosuite = c.load_autosuite(id)?;
            let rows: Vec<(i64, Option<String>, String, Option<String>)> = autosuite_events::table
                .filter(autosuite_events::autosuite_id.eq(id))
                .order(autosuite_events::id)
                .select((
                    autosuite_events::at,
                    autosuite_events::from_state,
                    autosuite_events::to_state,
                    autosuite_events::reason,
                ))
                .load(c)?;
            let corrupt =
                |e: cuttle_core::InvalidInput| DbError::Corrupt(format!("autosuite {id}: {e}"));
            let mut events = Vec::with_capacity(rows.len());
            for (at, from, to, reason) in rows {
                events.push(AutoSuiteEvent {
                    at: UnixMillis(at),
                    from: from
                        .as_deref()
                        .map(AutoSuiteState::parse)
                        .transpose()
                        .map_err(corrupt)?,
                    to: AutoSuiteState::parse(&to).map_err(corrupt)?,
                    reason,
                });
            }
            Ok((autosuite, events))
        })
    }

    /// AutoSuites, newest first, of one owner or of all.
    pub fn list_autosuites(&self, owner: Option<&Owner>) -> Result<Vec<AutoSuite>, DbError> {
        let mut conn = self.conn()?;
        let rows: Vec<Row> = with_conn!(&mut *conn, |c| {
            let mut query = autosuites::table
                .select(Row::as_select())
                .order(autosuites::id.desc())
                .into_boxed();
            if let Some(owner) = owner {
                query = query.filter(autosuites::owner.eq(owner.as_str()));
            }
            query.load(c)
        })?;
        rows.into_iter().map(Row::into_autosuite).collect()
    }

    /// The AutoSuites waiting for a build of `branch`.
    pub fn waiting_autosuites(&self, branch: Option<&str>) -> Result<Vec<AutoSuite>, DbError> {
        let mut conn = self.conn()?;
        let rows: Vec<Row> = with_conn!(&mut *conn, |c| {
            let mut query = autosuites::table
                .select(Row::as_select())
                .filter(autosuites::state.eq(AutoSuiteState::WaitingForBuild.as_str()))
                .order(autosuites::id)
                .into_boxed();
            if let Some(branch) = branch {
                query = query.filter(autosuites::branch.eq(branch));
            }
            query.load(c)
        })?;
        rows.into_iter().map(Row::into_autosuite).collect()
    }

    /// Claims the firing of `id`: true for exactly one caller, however many webhooks and
    /// polls race for it. The winner's run name and the build's sha1 are kept with the
    /// claim, so a cuttle-api that dies before the run exists schedules the same run
    /// after its restart, and one that dies after it finds that run.
    pub fn claim_autosuite(
        &self,
        id: i64,
        why: &str,
        run_name: &str,
        sha1: &str,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let moved = c.move_state(
                id,
                AutoSuiteState::WaitingForBuild,
                AutoSuiteState::Scheduling,
                Some(why),
                now,
            )?;
            if moved {
                let mut args = c.load_autosuite(id)?.args;
                if !sha1.is_empty() {
                    args.ceph_sha1 = sha1.to_owned();
                }
                let json = args_json(&args)?;
                diesel::update(autosuites::table.filter(autosuites::id.eq(id)))
                    .set((autosuites::run_name.eq(run_name), autosuites::args.eq(json)))
                    .execute(c)?;
            }
            Ok(moved)
        })
    }

    /// Changes what a waiting AutoSuite waits for and schedules; refused once it fired
    /// or ended.
    pub fn edit_autosuite(
        &self,
        id: i64,
        build: &WantedBuild,
        args: &RawSuiteArgs,
        by: &str,
        now: UnixMillis,
    ) -> Result<AutoSuite, DbError> {
        let json = args_json(args)?;
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let waiting = AutoSuiteState::WaitingForBuild;
            let changed = diesel::update(
                autosuites::table
                    .filter(autosuites::id.eq(id))
                    .filter(autosuites::state.eq(waiting.as_str())),
            )
            .set((
                autosuites::branch.eq(&build.branch),
                autosuites::sha1.eq(&build.sha1),
                autosuites::distro.eq(&build.distro),
                autosuites::distro_version.eq(&build.distro_version),
                autosuites::flavor.eq(&build.flavor),
                autosuites::args.eq(&json),
                autosuites::updated_at.eq(now.0),
            ))
            .execute(c)?;
            if changed == 0 {
                let state = c.load_autosuite(id)?.state;
                return Err(DbError::AutoSuiteNotWaiting {
                    id,
                    state,
                    action: "edited",
                });
            }
            c.record_event(
                id,
                Some(waiting),
                waiting,
                Some(&format!("edited by {by}")),
                now,
            )?;
            c.load_autosuite(id)
        })
    }

    /// Deletes an AutoSuite with its timeline; refused while it is being scheduled (the
    /// run it makes would be left without its record).
    pub fn delete_autosuite(&self, id: i64) -> Result<(), DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let state = c.load_autosuite(id)?.state;
            if !state.may_change() {
                return Err(DbError::AutoSuiteNotWaiting {
                    id,
                    state,
                    action: "deleted",
                });
            }
            diesel::delete(autosuite_events::table.filter(autosuite_events::autosuite_id.eq(id)))
                .execute(c)?;
            diesel::delete(autosuites::table.filter(autosuites::id.eq(id))).execute(c)?;
            Ok(())
        })
    }

    /// Moves `id` from `from` to `to` (if it is still in `from`), noting `reason` in its
    /// timeline, and, when it moved, what the new state keeps: the run it scheduled, the
    /// reason it waits again or ended, the failed build's URL.
    #[allow(
        clippy::too_many_arguments,
        reason = "one private door for three changes"
    )]
    fn change_autosuite(
        &self,
        id: i64,
        from: AutoSuiteState,
        to: AutoSuiteState,
        reason: &str,
        run: Option<&str>,
        build_url: Option<&str>,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        let keep_reason = to != AutoSuiteState::Scheduled;
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let moved = c.move_state(id, from, to, Some(reason), now)?;
            if moved {
                diesel::update(autosuites::table.filter(autosuites::id.eq(id)))
                    .set((
                        autosuites::run_name.eq(run),
                        autosuites::reason.eq(keep_reason.then_some(reason)),
                        autosuites::build_url.eq(build_url),
                    ))
                    .execute(c)?;
            }
            Ok(moved)
        })
    }

    /// Records that the claimed firing of `id` scheduled `run`.
    pub fn autosuite_scheduled(
        &self,
        id: i64,
        run: &str,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        use AutoSuiteState::{Scheduled, Scheduling};
        self.change_autosuite(id, Scheduling, Scheduled, run, Some(run), None, now)
    }

    /// Ends a claimed firing that cannot succeed (the suite no longer schedules).
    pub fn autosuite_failed(&self, id: i64, why: &str, now: UnixMillis) -> Result<bool, DbError> {
        use AutoSuiteState::{Failed, Scheduling};
        self.change_autosuite(id, Scheduling, Failed, why, None, None, now)
    }

    /// Gives a claimed firing back (its scheduling failed, or cuttle-api restarted before
    /// it did anything): the AutoSuite waits again, with `why` in its timeline.
    pub fn autosuite_unclaimed(
        &self,
        id: i64,
        why: &str,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        use AutoSuiteState::{Scheduling, WaitingForBuild};
        self.change_autosuite(id, Scheduling, WaitingForBuild, why, None, None, now)
    }

    /// Ends a waiting AutoSuite as `build_failed` (with the build's URL) or `expired`
    /// (with why); false when it was no longer waiting.
    pub fn end_autosuite(
        &self,
        id: i64,
        to: AutoSuiteState,
        reason: &str,
        build_url: Option<&str>,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        assert!(matches!(
            to,
            AutoSuiteState::BuildFailed | AutoSuiteState::Expired
        ));
        self.change_autosuite(
            id,
            AutoSuiteState::WaitingForBuild,
            to,
            reason,
            None,
            build_url,
            now,
        )
    }

    /// AutoSuites left `scheduling` (a cuttle-api that died while firing them).
    pub fn scheduling_autosuites(&self) -> Result<Vec<AutoSuite>, DbError> {
        let mut conn = self.conn()?;
        let rows: Vec<Row> = with_conn!(&mut *conn, |c| autosuites::table
            .select(Row::as_select())
            .filter(autosuites::state.eq(AutoSuiteState::Scheduling.as_str()))
            .load(c))?;
        rows.into_iter().map(Row::into_autosuite).collect()
    }
}
