//! Opening a store: picking the backend from the URL, building its pool, running migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use crate::{Pool, Store, StoreError, redact_url};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long connecting to PostgreSQL may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a query may wait for a free pooled connection (or a reconnect).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long SQLite waits for another connection's write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
const SQLITE_FILE_CONNECTIONS: u32 = 8;
const POSTGRES_CONNECTIONS: u32 = 10;

impl Store {
    /// Opens the database at `url` and brings its schema up to date:
    ///
    /// - `sqlite://path/to/file.db` (`sqlite:///abs/path.db` for an absolute path): created if
    ///   missing (its directory must exist), WAL journal, foreign keys on;
    /// - `sqlite::memory:`: a private in-memory database, gone when the store is closed;
    /// - `postgres://user:password@host[:port]/database` (or `postgresql://`), with any of
    ///   sqlx's parameters, e.g. `?sslmode=require` or `?options=-c%20search_path%3Dbaton`
    ///   to keep Baton's tables in the schema `baton`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let pool = if url.starts_with("sqlite:") {
            Pool::Sqlite(connect_sqlite(url).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Pool::Postgres(connect_postgres(url).await?)
        } else {
            return Err(StoreError::UnsupportedUrl {
                url: redact_url(url),
            });
        };
        Ok(Store {
            pool,
            max_step_output: crate::DEFAULT_MAX_STEP_OUTPUT,
        })
    }
}

fn invalid_url(url: &str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |cause| StoreError::InvalidUrl {
        url: redact_url(url),
        cause,
    }
}

fn migrate_error(url: &str) -> impl FnOnce(sqlx::migrate::MigrateError) -> StoreError {
    move |cause| StoreError::Migrate {
        url: redact_url(url),
        cause,
    }
}

/// True for `sqlite::memory:`, `sqlite://:memory:` and `sqlite://…?mode=memory`.
fn sqlite_in_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (file, params) = rest.split_once('?').unwrap_or((rest, ""));
    file == ":memory:" || params.split('&').any(|param| param == "mode=memory")
}

async fn connect_sqlite(url: &str) -> Result<sqlx::SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(invalid_url(url))?
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT);

    let (options, pool_options, path) = if sqlite_in_memory(url) {
        // One connection, never closed while the store is open: an in-memory database lives
        // only as long as a connection to it does.
        let pool_options = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
        (options, pool_options, ":memory:".to_string())
    } else {
        let path = options.get_filename();
        if path.as_os_str().is_empty() {
            return Err(StoreError::InvalidUrl {
                url: redact_url(url),
                cause: sqlx::Error::Configuration("the URL names no database file".into()),
            });
        }
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.is_dir()
        {
            return Err(StoreError::MissingDirectory {
                path: path.display().to_string(),
                dir: dir.display().to_string(),
            });
        }
        let path = path.display().to_string();
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool_options = SqlitePoolOptions::new().max_connections(SQLITE_FILE_CONNECTIONS);
        (options, pool_options, path)
    };

    let pool = pool_options
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|cause| StoreError::Open { path, cause })?;
    SQLITE_MIGRATIONS
        .run(&pool)
        .await
        .map_err(migrate_error(url))?;
    Ok(pool)
}

async fn connect_postgres(url: &str) -> Result<sqlx::PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url).map_err(invalid_url(url))?;
    let unreachable = |cause| StoreError::Unreachable {
        url: redact_url(url),
        cause,
    };

    // One direct attempt first: the pool would retry a refused connection until its acquire
    // timeout and then report only that it timed out, hiding why.
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
        Ok(Ok(connection)) => {
            // Only a probe: a failure to close it politely changes nothing.
            let _ = connection.close().await;
        }
        Ok(Err(cause)) => return Err(unreachable(cause)),
        Err(_elapsed) => {
            return Err(unreachable(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            ))));
        }
    }

    let pool = PgPoolOptions::new()
        .max_connections(POSTGRES_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(unreachable)?;
    POSTGRES_MIGRATIONS
        .run(&pool)
        .await
        .map_err(migrate_error(url))?;
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::sqlite_in_memory;

    #[test]
    fn recognises_in_memory_urls() {
        assert!(sqlite_in_memory("sqlite::memory:"));
        assert!(sqlite_in_memory("sqlite://:memory:"));
        assert!(sqlite_in_memory("sqlite://?mode=memory"));
        assert!(!sqlite_in_memory("sqlite://baton.db"));
        assert!(!sqlite_in_memory(
            "sqlite:///var/lib/baton/baton.db?mode=rwc"
        ));
    }
}
