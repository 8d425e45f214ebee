//! The `tokens` table: who each API token is for and its role. Only the SHA-256 of a
//! token is stored; the secret itself is shown once, by whoever created it, and never
//! reaches this crate.

use diesel::prelude::*;

use cuttle_core::auth::{Role, TokenRecord};
use cuttle_core::{Owner, UnixMillis};

use crate::schema::tokens;
use crate::{DbError, Store, with_conn};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = tokens)]
struct TokenRow {
    id: i64,
    user_name: String,
    role: String,
    prefix: String,
    created_at: i64,
    created_by: String,
    revoked_at: Option<i64>,
}

impl TokenRow {
    fn into_record(self) -> Result<TokenRecord, DbError> {
        let corrupt =
            |e: cuttle_core::InvalidInput| DbError::Corrupt(format!("token {}: {e}", self.id));
        Ok(TokenRecord {
            id: self.id,
            user: Owner::parse(&self.user_name).map_err(corrupt)?,
            role: Role::parse(&self.role).map_err(corrupt)?,
            prefix: self.prefix,
            created_at: UnixMillis(self.created_at),
            created_by: self.created_by,
            revoked_at: self.revoked_at.map(UnixMillis),
        })
    }
}

impl Store {
    /// Records a new token by its digest (hex SHA-256).
    pub fn create_token(
        &self,
        user: &Owner,
        role: Role,
        digest_hex: &str,
        prefix: &str,
        created_by: &str,
        now: UnixMillis,
    ) -> Result<TokenRecord, DbError> {
        let mut conn = self.conn()?;
        let row: TokenRow = with_conn!(&mut *conn, |c| diesel::insert_into(tokens::table)
            .values((
                tokens::user_name.eq(user.as_str()),
                tokens::role.eq(role.as_str()),
                tokens::digest.eq(digest_hex),
                tokens::prefix.eq(prefix),
                tokens::created_at.eq(now.0),
                tokens::created_by.eq(created_by),
            ))
            .returning(TokenRow::as_returning())
            .get_result(c))?;
        row.into_record()
    }

    /// The live (not revoked) token with this digest, if any.
    pub fn find_token(&self, digest_hex: &str) -> Result<Option<TokenRecord>, DbError> {
        let mut conn = self.conn()?;
        let row: Option<TokenRow> = with_conn!(&mut *conn, |c| tokens::table
            .filter(tokens::digest.eq(digest_hex))
            .filter(tokens::revoked_at.is_null())
            .select(TokenRow::as_select())
            .first(c)
            .optional())?;
        row.map(TokenRow::into_record).transpose()
    }

    /// Every token, revoked ones included, oldest first.
    pub fn list_tokens(&self) -> Result<Vec<TokenRecord>, DbError> {
        let mut conn = self.conn()?;
        let rows: Vec<TokenRow> = with_conn!(&mut *conn, |c| tokens::table
            .select(TokenRow::as_select())
            .order(tokens::id)
            .load(c))?;
        rows.into_iter().map(TokenRow::into_record).collect()
    }

    /// Revokes token `id` (revoking a revoked token changes nothing).
    pub fn revoke_token(&self, id: i64, now: UnixMillis) -> Result<TokenRecord, DbError> {
        let mut conn = self.conn()?;
        with_conn!(&mut *conn, |c| diesel::update(
            tokens::table
                .filter(tokens::id.eq(id))
                .filter(tokens::revoked_at.is_null())
        )
        .set(tokens::revoked_at.eq(now.0))
        .execute(c))?;
        let row: Option<TokenRow> = with_conn!(&mut *conn, |c| tokens::table
            .filter(tokens::id.eq(id))
            .select(TokenRow::as_select())
            .first(c)
            .optional())?;
        row.ok_or_else(|| DbError::NotFound {
            what: "token",
            name: id.to_string(),
        })?
        .into_record()
    }
}
