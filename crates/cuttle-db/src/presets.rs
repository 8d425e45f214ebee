//! The `presets` table: saved suite requests, one name per owner. The request is kept
//! as cuttle-core's `RawSuiteArgs` in JSON, so a preset saved by one version reads in the
//! next (unknown fields are dropped, missing ones take their defaults).

use diesel::prelude::*;

use cuttle_core::suite::{Preset, RawSuiteArgs};
use cuttle_core::{Owner, PresetName, UnixMillis};

use crate::schema::presets;
use crate::{DbError, Store, with_conn};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = presets)]
struct PresetRow {
    owner: String,
    name: String,
    args: String,
    created_at: i64,
    updated_at: i64,
}

impl PresetRow {
    fn into_preset(self) -> Result<Preset, DbError> {
        let corrupt =
            |e: String| DbError::Corrupt(format!("preset {}/{}: {e}", self.owner, self.name));
        Ok(Preset {
            owner: Owner::parse(&self.owner).map_err(|e| corrupt(e.to_string()))?,
            name: PresetName::parse(&self.name).map_err(|e| corrupt(e.to_string()))?,
            args: serde_json::from_str::<RawSuiteArgs>(&self.args)
                .map_err(|e| corrupt(e.to_string()))?,
            created_at: UnixMillis(self.created_at),
            updated_at: UnixMillis(self.updated_at),
        })
    }
}

impl Store {
    /// Saves a preset: creates it, or with `replace` also overwrites the owner's preset of
    /// that name. Without `replace`, an existing name is ALREADY_EXISTS.
    pub fn save_preset(
        &self,
        owner: &Owner,
        name: &PresetName,
        args: &RawSuiteArgs,
        replace: bool,
        now: UnixMillis,
    ) -> Result<Preset, DbError> {
        let json = serde_json::to_string(args)
            .map_err(|e| DbError::Corrupt(format!("preset {name}: {e}")))?;
        let mut conn = self.conn()?;
        let conn: &mut crate::DbConnection = &mut conn;
        crate::write_tx!(conn, |c| {
            let existing: Option<i64> = presets::table
                .filter(presets::owner.eq(owner.as_str()))
                .filter(presets::name.eq(name.as_str()))
                .select(presets::created_at)
                .first(c)
                .optional()?;
            match existing {
                Some(_) if !replace => {
                    return Err(DbError::AlreadyExists {
                        what: "preset",
                        name: format!("{owner}/{name}"),
                        hint: "; edit it (cuttle preset edit) or pick another name",
                    });
                }
                Some(_) => {
                    diesel::update(
                        presets::table
                            .filter(presets::owner.eq(owner.as_str()))
                            .filter(presets::name.eq(name.as_str())),
                    )
                    .set((presets::args.eq(&json), presets::updated_at.eq(now.0)))
                    .execute(c)?;
                }
                None if replace => {
                    return Err(DbError::NotFound {
                        what: "preset",
                        name: format!("{owner}/{name}"),
                    });
                }
                None => {
                    diesel::insert_into(presets::table)
                        .values((
                            presets::owner.eq(owner.as_str()),
                            presets::name.eq(name.as_str()),
                            presets::args.eq(&json),
                            presets::created_at.eq(now.0),
                            presets::updated_at.eq(now.0),
                        ))
                        .execute(c)?;
                }
            }
            let row: PresetRow = presets::table
                .filter(presets::owner.eq(owner.as_str()))
                .filter(presets::name.eq(name.as_str()))
                .select(PresetRow::as_select())
                .first(c)?;
            row.into_preset()
        })
    }

    /// One owner's preset.
    pub fn get_preset(&self, owner: &Owner, name: &PresetName) -> Result<Preset, DbError> {
        let mut conn = self.conn()?;
        let row: Option<PresetRow> = with_conn!(&mut *conn, |c| presets::table
            .filter(presets::owner.eq(owner.as_str()))
            .filter(presets::name.eq(name.as_str()))
            .select(PresetRow::as_select())
            .first(c)
            .optional())?;
        row.ok_or_else(|| DbError::NotFound {
            what: "preset",
            name: format!("{owner}/{name}"),
        })?
        .into_preset()
    }

    /// Presets by name, of one owner or of everyone.
    pub fn list_presets(&self, owner: Option<&Owner>) -> Result<Vec<Preset>, DbError> {
        let mut conn = self.conn()?;
        let rows: Vec<PresetRow> = with_conn!(&mut *conn, |c| {
            let mut query = presets::table
                .select(PresetRow::as_select())
                .order((presets::owner, presets::name))
                .into_boxed();
            if let Some(owner) = owner {
                query = query.filter(presets::owner.eq(owner.as_str()));
            }
            query.load(c)
        })?;
        rows.into_iter().map(PresetRow::into_preset).collect()
    }

    /// Deletes one owner's preset; NOT_FOUND when there is none.
    pub fn delete_preset(&self, owner: &Owner, name: &PresetName) -> Result<(), DbError> {
        let mut conn = self.conn()?;
        let deleted = with_conn!(&mut *conn, |c| diesel::delete(
            presets::table
                .filter(presets::owner.eq(owner.as_str()))
                .filter(presets::name.eq(name.as_str()))
        )
        .execute(c))?;
        if deleted == 0 {
            return Err(DbError::NotFound {
                what: "preset",
                name: format!("{owner}/{name}"),
            });
        }
        Ok(())
    }
}
