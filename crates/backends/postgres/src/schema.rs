//! The embedded, versioned schema and the runner that applies it.
//!
//! Each migration is a SQL file under `migrations/` with `__SCHEMA__` standing for the
//! configured schema. The runner takes a transaction-scoped advisory lock named after the
//! schema, so processes starting together apply each migration once; it creates the schema
//! if it is missing, applies the migrations the schema's `schema_migrations` table does not
//! list, and records them, all in one transaction (PostgreSQL's DDL is transactional, so a
//! failed migration leaves nothing behind).

use deadpool_postgres::GenericClient;

use crate::error::PgError;

/// One schema version: its number, a description, and its SQL.
struct Migration {
    version: i32,
    description: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "checkpoints, results, workers, work items",
    sql: include_str!("../migrations/0001_initial.sql"),
}];

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i32 = 1;

/// `"schema"`, ready to put in SQL (names are checked to be `[a-z0-9_]`, so quoting only
/// keeps them from being read as keywords).
pub(crate) fn quoted(schema: &str) -> String {
    format!("\"{schema}\"")
}

/// Brings `schema` to [`SCHEMA_VERSION`]; says which versions it applied.
pub(crate) async fn migrate(
    client: &mut deadpool_postgres::Client,
    schema: &str,
) -> Result<Vec<i32>, PgError> {
    let what = format!("migrating schema `{schema}`");
    let fail = |e: tokio_postgres::Error| PgError::query(&what, &e);
    let transaction = client.transaction().await.map_err(fail)?;
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("flatmachines-migrate/{schema}")],
        )
        .await
        .map_err(fail)?;
    // Asking first keeps `migrate` usable by a role that may not create schemas once the
    // schema exists (CREATE SCHEMA IF NOT EXISTS checks the privilege before existence).
    let exists: bool = transaction
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await
        .map_err(fail)?
        .get(0);
    let name = quoted(schema);
    if !exists {
        transaction
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .map_err(fail)?;
    }
    transaction
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {name}.schema_migrations (
                 version     integer PRIMARY KEY,
                 description text NOT NULL,
                 applied_at  timestamptz NOT NULL DEFAULT now()
             )"
        ))
        .await
        .map_err(fail)?;
    let applied: Vec<i32> = transaction
        .query(
            &format!("SELECT version FROM {name}.schema_migrations"),
            &[],
        )
        .await
        .map_err(fail)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    check_not_newer(schema, applied.iter().copied().max().unwrap_or(0))?;
    let mut done = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let step = format!(
            "applying migration {} ({}) to schema `{schema}`",
            migration.version, migration.description
        );
        transaction
            .batch_execute(&migration.sql.replace("__SCHEMA__", &name))
            .await
            .map_err(|e| PgError::query(&step, &e))?;
        transaction
            .execute(
                &format!(
                    "INSERT INTO {name}.schema_migrations (version, description) VALUES ($1, $2)"
                ),
                &[&migration.version, &migration.description],
            )
            .await
            .map_err(fail)?;
        done.push(migration.version);
    }
    transaction.commit().await.map_err(fail)?;
    Ok(done)
}

/// The version `schema` is at: 0 when it has no tables of this crate.
pub(crate) async fn version(client: &impl GenericClient, schema: &str) -> Result<i32, PgError> {
    let sql = format!(
        "SELECT coalesce(max(version), 0) FROM {}.schema_migrations",
        quoted(schema)
    );
    match client.query_one(&sql, &[]).await {
        Ok(row) => Ok(row.get(0)),
        Err(e) if PgError::missing_relation(&e) => Ok(0),
        Err(e) => Err(PgError::query(
            &format!("reading the version of schema `{schema}`"),
            &e,
        )),
    }
}

/// Fails unless `schema` is exactly at [`SCHEMA_VERSION`]: what a store opened with
/// `migrate=false` checks before its first statement.
pub(crate) async fn verify(client: &impl GenericClient, schema: &str) -> Result<(), PgError> {
    let found = version(client, schema).await?;
    check_not_newer(schema, found)?;
    if found < SCHEMA_VERSION {
        let state = if found == 0 {
            "has no flatmachines tables".to_owned()
        } else {
            format!("is at version {found}")
        };
        return Err(PgError::schema(format!(
            "schema `{schema}` {state}; this build needs version {SCHEMA_VERSION}. Open the store \
             once with migrate=true (the default) by a role that may create tables there"
        )));
    }
    Ok(())
}

fn check_not_newer(schema: &str, found: i32) -> Result<(), PgError> {
    if found > SCHEMA_VERSION {
        return Err(PgError::schema(format!(
            "schema `{schema}` is at version {found}, newer than this build's {SCHEMA_VERSION}; \
             upgrade flatmachines-postgres rather than write to it with an older one"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_end_at_the_schema_version() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, index as i32 + 1);
            assert!(migration.sql.contains("__SCHEMA__"));
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
    }
}
