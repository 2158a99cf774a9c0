//! Opening the SQLite family from a store URL or from the names configs use.

use std::sync::Arc;

use flatmachines_engine::BackendRequest;
use flatmachines_sqlite::{SqliteConfig, SqliteDatabase};

use super::{OpenError, Store};

/// `sqlite://PATH[?options]`: checkpoints, a leased lock, results, worker registration and
/// work pools in one database file. An existing
/// file is checked now and a missing one's directory created; the file itself, connections
/// and the schema come with the first use.
pub(super) fn open_store(url: &str) -> Result<Store, OpenError> {
    let open_error = |source| OpenError::Open {
        url: url.to_owned(),
        source,
    };
    let config = SqliteConfig::from_url(url).map_err(open_error)?;
    let database = SqliteDatabase::open_shared(config).map_err(open_error)?;
    Ok(Store {
        results: Some(Arc::new(database.results())),
        registration: Some(Arc::new(database.registration())),
        work: Some(Arc::new(database.work())),
        ..Store::new(Arc::new(database.persistence()), Arc::new(database.lock()))
    })
}

/// The database a config's `backend: sqlite` (or `locking`, `registration`, `work: sqlite`)
/// means: `settings.backends.sqlite_path` — a path, or a `sqlite://` URL with options — else
/// `workers.sqlite`, the reference runtime's default; relative paths are relative to the
/// working directory, as in the reference. Every backend of the process naming one file
/// shares one handle on it.
pub(super) fn database(request: &BackendRequest<'_>) -> Result<SqliteDatabase, String> {
    let config = match request.option("sqlite_path") {
        Some(url) if url.starts_with("sqlite:") => {
            SqliteConfig::from_url(url).map_err(|e| e.to_string())?
        }
        Some(path) => SqliteConfig::new(path),
        None => SqliteConfig::new(SqliteConfig::DEFAULT_PATH),
    };
    SqliteDatabase::open_shared(config).map_err(|e| e.to_string())
}
