//! Opening the database: parsing `--db`, connecting, migrating, and the pool.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ManageConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::DbError;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Where the database lives, parsed from `--db`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// An SQLite file; created if missing.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl DatabaseTarget {
    /// Parses `sqlite:///abs/path.db`, `sqlite://relative.db`, a bare path (taken as an
    /// SQLite file), or `postgres://…`/`postgresql://…`.
    pub fn parse(url: &str) -> Result<DatabaseTarget, DbError> {
        let bad = |reason: &str| DbError::BadUrl {
            url: redact(url),
            reason: reason.to_owned(),
        };
        if url.trim().is_empty() {
            return Err(bad(
                "it is empty; use sqlite:///path/to/cuttle.db or postgres://user@host/db",
            ));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(bad("it names no file; use sqlite:///path/to/cuttle.db"));
            }
            return Ok(DatabaseTarget::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseTarget::Postgres(url.to_owned()));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(bad(&format!(
                "scheme {scheme:?} is not supported; use sqlite:///path/to/cuttle.db or postgres://user@host/db"
            )));
        }
        Ok(DatabaseTarget::Sqlite(PathBuf::from(url)))
    }

    pub fn backend(&self) -> Backend {
        match self {
            DatabaseTarget::Sqlite(_) => Backend::Sqlite,
            DatabaseTarget::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Shows the target with any password replaced, so it is safe to log.
impl fmt::Display for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseTarget::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseTarget::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Replaces the password in `scheme://user:password@host/...` with `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Which SQL dialect a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A connection to either backend.
#[allow(
    clippy::large_enum_variant,
    reason = "connections live in the pool and are never moved in hot loops"
)]
pub enum DbConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbConnection::Sqlite(_) => f.write_str("DbConnection::Sqlite"),
            DbConnection::Postgres(_) => f.write_str("DbConnection::Postgres"),
        }
    }
}

/// Runs `$body` with `$c` bound to the concrete connection, expanded once per backend, so
/// the same diesel query is compiled (and checked) for SQLite and for PostgreSQL.
#[macro_export]
macro_rules! with_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::DbConnection::Sqlite($c) => $body,
            $crate::DbConnection::Postgres($c) => $body,
        }
    };
}

/// Runs `$body` in a write transaction. On SQLite the transaction is `BEGIN IMMEDIATE`:
/// it takes the write lock up front, so two writers queue on the busy timeout instead of
/// deadlocking when both try to upgrade a read lock.
#[macro_export]
macro_rules! write_tx {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::DbConnection::Sqlite(sqlite) => {
                sqlite.immediate_transaction::<_, $crate::DbError, _>(|$c| $body)
            }
            $crate::DbConnection::Postgres(pg) => {
                pg.transaction::<_, $crate::DbError, _>(|$c| $body)
            }
        }
    };
}

/// Runs `$body`'s reads in one consistent snapshot of the database, for an answer built
/// from several queries that must agree (a node unlocked between two of them must not
/// vanish from both). SQLite in WAL mode holds a deferred transaction's snapshot from its
/// first read; PostgreSQL needs REPEATABLE READ for that (READ COMMITTED, its default,
/// lets each statement see newer data).
#[macro_export]
macro_rules! snapshot_tx {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::DbConnection::Sqlite(sqlite) => {
                sqlite.transaction::<_, $crate::DbError, _>(|$c| $body)
            }
            $crate::DbConnection::Postgres(pg) => pg
                .build_transaction()
                .repeatable_read()
                .read_only()
                .run::<_, $crate::DbError, _>(|$c| $body),
        }
    };
}

/// Implements a private helper trait for both concrete connection types with one body, so
/// queries used inside transactions are written once and compiled for each backend.
#[macro_export]
#[doc(hidden)]
macro_rules! impl_for_both_backends {
    ($trait_name:ident { $($body:tt)* }) => {
        impl $trait_name for diesel::sqlite::SqliteConnection { $($body)* }
        impl $trait_name for diesel::pg::PgConnection { $($body)* }
    };
}

const SQLITE_BUSY_TIMEOUT_MS: u32 = 30_000;

/// Waiting longer than this for a pooled connection counts as trouble (a healthy pool
/// hands one out in microseconds; an unreachable server makes it wait up to 30 s).
const SLOW_CONNECTION: Duration = Duration::from_secs(2);

fn connect(target: &DatabaseTarget) -> Result<DbConnection, DbError> {
    let failed = |detail: String| DbError::Connect {
        target: target.to_string(),
        detail,
    };
    match target {
        DatabaseTarget::Sqlite(path) => {
            let path_text = path
                .to_str()
                .ok_or_else(|| failed("the path is not UTF-8".into()))?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
                && !parent.is_dir()
            {
                return Err(failed(format!(
                    "directory {} does not exist; create it or pick another path",
                    parent.display()
                )));
            }
            let mut conn =
                SqliteConnection::establish(path_text).map_err(|e| failed(e.to_string()))?;
            // WAL lets readers run beside the one writer; the busy timeout makes writers
            // queue instead of failing; foreign keys are off by default in SQLite.
            conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
            ))
            .map_err(|e| sqlite_open_error(path, e.to_string()))?;
            Ok(DbConnection::Sqlite(conn))
        }
        DatabaseTarget::Postgres(url) => PgConnection::establish(url)
            .map(DbConnection::Postgres)
            .map_err(|e| failed(e.to_string().trim().to_owned())),
    }
}

/// The error for an SQLite file that failed to open or migrate; `detail` is SQLite's
/// own message, explained when the file is not a database at all.
fn sqlite_open_error(path: &Path, detail: String) -> DbError {
    let detail = if detail.contains("not a database") {
        format!(
            "{} exists but is not an SQLite database ({detail}); point --db at a new file or at a cuttle database",
            path.display()
        )
    } else {
        detail
    };
    DbError::Connect {
        target: format!("sqlite://{}", path.display()),
        detail,
    }
}

/// r2d2 glue: opens connections to one fixed target (never guesses the backend, unlike
/// diesel's `MultiConnection::establish`, which would open a failed `postgres://` URL as an
/// SQLite file of that name).
#[derive(Debug)]
pub struct Manager {
    target: DatabaseTarget,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = DbError;

    fn connect(&self) -> Result<DbConnection, DbError> {
        connect(&self.target)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), DbError> {
        with_conn!(conn, |c| diesel::sql_query("SELECT 1")
            .execute(c)
            .map(|_| ()))?;
        Ok(())
    }

    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        false
    }
}

/// The database: a pool of connections to one target, migrated to the latest schema.
#[derive(Clone)]
pub struct Store {
    pool: Pool<Manager>,
    target: DatabaseTarget,
    /// How many times getting a connection was slow or failed: the database was
    /// unreachable (or the pool starved) for a while. cuttle-api's reaper reads it.
    troubles: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("target", &self.target)
            .finish()
    }
}

impl Store {
    /// Connects, applies pending migrations, and returns a pool of up to `max_connections`.
    /// Fails fast with a message naming the target when the database cannot be opened.
    pub fn open(target: DatabaseTarget, max_connections: u32) -> Result<Store, DbError> {
        let mut first = connect(&target)?;
        let migrated = match &mut first {
            DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
            DbConnection::Postgres(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
        };
        migrated.map_err(|e| {
            let detail = e.to_string();
            match &target {
                DatabaseTarget::Sqlite(path) if detail.contains("not a database") => {
                    sqlite_open_error(path, detail)
                }
                _ => DbError::Migrate {
                    target: target.to_string(),
                    detail,
                },
            }
        })?;
        let pool = Pool::builder()
            .max_size(max_connections.max(1))
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(30))
            .build_unchecked(Manager {
                target: target.clone(),
            });
        // The connection we migrated with is dropped; the pool opens its own on demand.
        drop(first);
        Ok(Store {
            pool,
            target,
            troubles: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.target.backend()
    }

    pub fn target(&self) -> &DatabaseTarget {
        &self.target
    }

    /// A pooled connection; waits up to the pool's timeout for one to free up.
    pub(crate) fn conn(&self) -> Result<PooledConnection<Manager>, DbError> {
        let started = std::time::Instant::now();
        let conn = self.pool.get();
        // Only getting a connection is timed: a slow query is no outage, but waiting for
        // a connection (the server unreachable, every connection broken) is.
        if conn.is_err() || started.elapsed() > SLOW_CONNECTION {
            self.troubles
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(conn?)
    }

    /// How many times so far getting a connection was slow (over 2 s) or failed. A
    /// change between two readings means the database was unreachable in between.
    pub fn connection_troubles(&self) -> u64 {
        self.troubles.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Runs a trivial query: is the database answering?
    pub fn ping(&self) -> Result<(), DbError> {
        let mut conn = self.conn()?;
        with_conn!(&mut *conn, |c| diesel::sql_query("SELECT 1").execute(c))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            DatabaseTarget::parse("sqlite:///var/lib/cuttle/cuttle.db").unwrap(),
            DatabaseTarget::Sqlite("/var/lib/cuttle/cuttle.db".into())
        );
        assert_eq!(
            DatabaseTarget::parse("cuttle.db").unwrap(),
            DatabaseTarget::Sqlite("cuttle.db".into())
        );
        assert_eq!(
            DatabaseTarget::parse("postgresql://u@h/db")
                .unwrap()
                .backend(),
            Backend::Postgres
        );
        let error = DatabaseTarget::parse("mysql://u:secret@h/db")
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"mysql\" is not supported"), "{error}");
        assert!(!error.contains("secret"), "password leaked: {error}");
        assert!(DatabaseTarget::parse("").is_err());
        assert!(DatabaseTarget::parse("sqlite://").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        let target = DatabaseTarget::parse("postgres://cuttle:hunter2@db:5432/cuttle").unwrap();
        assert_eq!(target.to_string(), "postgres://cuttle:***@db:5432/cuttle");
        assert_eq!(redact("postgres://db/cuttle"), "postgres://db/cuttle");
    }
}
