//! The [`ResultBackend`] suite.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flatmachines_core::{Error, ReadOptions, ResultBackend, ResultUri};
use serde_json::{Value, json};

use crate::ResultFactory;
use crate::case::{Case, CaseResult, Context, Env, bounded, case, ensure, ensure_eq, join};

const SUITE: &str = "results";

type E<'a> = Env<'a, ResultFactory>;
type Results = Arc<dyn ResultBackend>;

/// Bounds every wait that should end promptly, so a lost wake-up fails instead of hanging.
const PROMPT: Duration = Duration::from_secs(10);

static CASES: &[Case<ResultFactory>] = &[
    case!(
        "write_then_read",
        "a written value reads back and a later write replaces it (clause 2)",
        [],
        write_then_read
    ),
    case!(
        "read_of_nothing_is_none",
        "a non-blocking read of nothing is None at once, whatever its timeout (clause 3)",
        [],
        read_of_nothing_is_none
    ),
    case!(
        "exists_and_delete",
        "exists tells whether a value is stored; delete removes it and succeeds when there is none (clause 5)",
        [],
        exists_and_delete
    ),
    case!(
        "malformed_uris_are_rejected",
        "URIs ResultUri::parse refuses fail with InvalidUri in every method (clause 1)",
        [],
        malformed_uris_are_rejected
    ),
    case!(
        "equivalent_uris_share_a_value",
        "flatagents://X, flatagents://X/ and flatagents://X/result name one value; other paths are separate (clause 1)",
        [],
        equivalent_uris_share_a_value
    ),
    case!(
        "namespace_isolation",
        "two namespaces share nothing; two handles on one namespace share values (factory contract)",
        [],
        namespace_isolation
    ),
    case!(
        "blocking_read_wakes_on_write",
        "blocked readers, on this handle and another, wake when a value is written (clauses 2 and 4)",
        [BlockingRead],
        blocking_read_wakes_on_write
    ),
    case!(
        "blocking_read_times_out",
        "a blocking read of nothing fails with Timeout once its timeout passes (clause 4)",
        [BlockingRead],
        blocking_read_times_out
    ),
    case!(
        "blocking_read_of_stored_value",
        "a blocking read of a stored value returns it at once (clause 4)",
        [BlockingRead],
        blocking_read_of_stored_value
    ),
];

/// The cases of the results suite, in order.
pub fn cases() -> &'static [Case<ResultFactory>] {
    CASES
}

async fn write(results: &Results, uri: &str, value: Value) -> CaseResult {
    bounded(format!("write {uri}"), PROMPT, results.write(uri, value))
        .await?
        .ctx(format!("write {uri}"))
}

async fn read_now(results: &Results, uri: &str) -> Result<Option<Value>, String> {
    bounded(
        format!("read {uri}"),
        PROMPT,
        results.read(uri, ReadOptions::now()),
    )
    .await?
    .ctx(format!("read {uri}"))
}

async fn exists(results: &Results, uri: &str) -> Result<bool, String> {
    bounded(format!("exists {uri}"), PROMPT, results.exists(uri))
        .await?
        .ctx(format!("exists {uri}"))
}

/// A URI under a fresh execution id, so cases never meet each other's values.
fn uri(env: &E<'_>, path: &str) -> String {
    format!("flatagents://{}/{path}", env.namespace())
}

async fn write_then_read(env: E<'_>) -> CaseResult {
    let results = env.fresh().await?;
    let uri = uri(&env, "result");
    write(&results, &uri, json!({"a": 1, "nested": [1, "two", null]})).await?;
    ensure_eq!(
        read_now(&results, &uri).await?,
        Some(json!({"a": 1, "nested": [1, "two", null]})),
        "clause 2: read after write"
    );
    write(&results, &uri, json!("replaced")).await?;
    ensure_eq!(
        read_now(&results, &uri).await?,
        Some(json!("replaced")),
        "clause 2: a write replaces the value"
    );
    write(&results, &uri, Value::Null).await?;
    ensure!(
        exists(&results, &uri).await?,
        "clause 5: a stored null is a stored value"
    );
    Ok(())
}

async fn read_of_nothing_is_none(env: E<'_>) -> CaseResult {
    let results = env.fresh().await?;
    let uri = uri(&env, "result");
    ensure_eq!(
        read_now(&results, &uri).await?,
        None,
        "clause 3: read of nothing"
    );
    let patient = ReadOptions {
        block: false,
        timeout: Some(Duration::from_secs(3600)),
    };
    let read = bounded(
        "clause 3: a non-blocking read with a timeout",
        PROMPT,
        results.read(&uri, patient),
    )
    .await?;
    ensure_eq!(
        read.ctx("read")?,
        None,
        "clause 3: the timeout is ignored without block"
    );
    Ok(())
}

async fn exists_and_delete(env: E<'_>) -> CaseResult {
    let results = env.fresh().await?;
    let uri = uri(&env, "result");
    ensure!(
        !exists(&results, &uri).await?,
        "clause 5: exists before any write"
    );
    results
        .delete(&uri)
        .await
        .ctx("clause 5: delete of nothing")?;
    write(&results, &uri, json!(1)).await?;
    ensure!(
        exists(&results, &uri).await?,
        "clause 5: exists after a write"
    );
    results.delete(&uri).await.ctx("delete")?;
    ensure!(
        !exists(&results, &uri).await?,
        "clause 5: exists after delete"
    );
    ensure_eq!(
        read_now(&results, &uri).await?,
        None,
        "clause 3: read after delete"
    );
    results
        .delete(&uri)
        .await
        .ctx("clause 5: a second delete")?;
    Ok(())
}

fn is_invalid_uri<T>(result: &Result<T, Error>) -> bool {
    matches!(result, Err(Error::InvalidUri { .. }))
}

async fn malformed_uris_are_rejected(env: E<'_>) -> CaseResult {
    let results = env.fresh().await?;
    let malformed = [
        "",
        "abc",
        "http://x/result",
        "flatagents:/x/result",
        "flatagents://",
        "flatagents:///result",
        "flatagents://../x",
        "flatagents://a/../b",
        "flatagents://a..b/result",
        "flatagents://a\nb/result",
        "flatagents://a/result\u{7}",
    ];
    for uri in malformed {
        ensure!(
            ResultUri::parse(uri).is_err(),
            "suite bug: ResultUri::parse accepts {uri:?}"
        );
        let wrote = results.write(uri, json!(1)).await;
        ensure!(
            is_invalid_uri(&wrote),
            "clause 1: write {uri:?} returned {wrote:?}, expected InvalidUri"
        );
        let read = results.read(uri, ReadOptions::now()).await;
        ensure!(
            is_invalid_uri(&read),
            "clause 1: read {uri:?} returned {read:?}, expected InvalidUri"
        );
        let found = results.exists(uri).await;
        ensure!(
            is_invalid_uri(&found),
            "clause 1: exists {uri:?} returned {found:?}, expected InvalidUri"
        );
        let deleted = results.delete(uri).await;
        ensure!(
            is_invalid_uri(&deleted),
            "clause 1: delete {uri:?} returned {deleted:?}, expected InvalidUri"
        );
        if env.caps.has(crate::Capability::BlockingRead) {
            let blocking = bounded(
                format!("clause 1: a blocking read of the malformed {uri:?}"),
                PROMPT,
                results.read(uri, ReadOptions::blocking(Some(Duration::from_secs(30)))),
            )
            .await?;
            ensure!(
                is_invalid_uri(&blocking),
                "clause 1: blocking read {uri:?} returned {blocking:?}, expected InvalidUri"
            );
        }
    }
    Ok(())
}

async fn equivalent_uris_share_a_value(env: E<'_>) -> CaseResult {
    let results = env.fresh().await?;
    let id = env.namespace();
    let bare = format!("flatagents://{id}");
    write(&results, &bare, json!("v")).await?;
    for same in [
        format!("flatagents://{id}/"),
        format!("flatagents://{id}/result"),
    ] {
        ensure_eq!(
            read_now(&results, &same).await?,
            Some(json!("v")),
            "clause 1: {same} names the value written to {bare}"
        );
    }
    let other = format!("flatagents://{id}/other");
    let nested = format!("flatagents://{id}/a/b");
    ensure!(
        !exists(&results, &other).await?,
        "clause 1: {other} is a different value"
    );
    write(&results, &nested, json!({"deep": true})).await?;
    ensure_eq!(
        read_now(&results, &nested).await?,
        Some(json!({"deep": true})),
        "a nested path"
    );
    ensure_eq!(
        read_now(&results, &bare).await?,
        Some(json!("v")),
        "a nested path is separate from the result"
    );
    results
        .delete(&format!("flatagents://{id}/result"))
        .await
        .ctx("delete")?;
    ensure!(
        !exists(&results, &bare).await?,
        "clause 1: a delete through an equivalent URI"
    );
    Ok(())
}

async fn namespace_isolation(env: E<'_>) -> CaseResult {
    let (ns_a, ns_b) = (env.namespace(), env.namespace());
    let a = env.open(&ns_a).await?;
    let a_again = env.open(&ns_a).await?;
    let b = env.open(&ns_b).await?;
    let uri = "flatagents://shared-id/result";
    write(&a, uri, json!("a")).await?;
    ensure_eq!(
        read_now(&a_again, uri).await?,
        Some(json!("a")),
        "a second handle on one namespace reads the value"
    );
    ensure!(!exists(&b, uri).await?, "another namespace sees the value");
    write(&b, uri, json!("b")).await?;
    b.delete(uri).await.ctx("delete in the other namespace")?;
    ensure_eq!(
        read_now(&a, uri).await?,
        Some(json!("a")),
        "writes and deletes in another namespace change nothing here"
    );
    Ok(())
}

async fn blocking_read_wakes_on_write(env: E<'_>) -> CaseResult {
    let namespace = env.namespace();
    let results = env.open(&namespace).await?;
    let other_handle = env.open(&namespace).await?;
    let uri = uri(&env, "result");
    let readers: Vec<_> = (0..10)
        .map(|i| {
            let results = if i % 2 == 0 {
                Arc::clone(&results)
            } else {
                Arc::clone(&other_handle)
            };
            let uri = uri.clone();
            tokio::spawn(async move {
                // Long enough that only a write can end it within the case's bounds.
                results
                    .read(&uri, ReadOptions::blocking(Some(Duration::from_secs(60))))
                    .await
            })
        })
        .collect();
    // Gives the readers time to block; a reader that returned already is a failure below.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (i, reader) in readers.iter().enumerate() {
        ensure!(
            !reader.is_finished(),
            "clause 4: blocking reader {i} returned before anything was written"
        );
    }
    let writer = {
        let (results, uri) = (Arc::clone(&results), uri.clone());
        tokio::spawn(async move { results.write(&uri, json!({"done": true})).await })
    };
    join("the writer", writer).await?.ctx("write")?;
    let started = Instant::now();
    for (i, reader) in readers.into_iter().enumerate() {
        let read = bounded(
            format!("clause 2: blocked reader {i} after the write"),
            PROMPT,
            reader,
        )
        .await?;
        let read = read
            .map_err(|e| format!("reader {i} panicked: {e}"))?
            .ctx(format!("reader {i}"))?;
        ensure_eq!(
            read,
            Some(json!({"done": true})),
            "clause 4: what blocked reader {i} woke with"
        );
    }
    ensure!(
        started.elapsed() < PROMPT,
        "readers woke only after {:?}",
        started.elapsed()
    );
    Ok(())
}

async fn blocking_read_times_out(env: E<'_>) -> CaseResult {
    let results = env.fresh().await?;
    let uri = uri(&env, "result");
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let read = bounded(
        "clause 4: a blocking read with a 300 ms timeout",
        PROMPT,
        results.read(&uri, ReadOptions::blocking(Some(timeout))),
    )
    .await?;
    let waited = started.elapsed();
    ensure!(
        matches!(read, Err(Error::Timeout { .. })),
        "clause 4: a blocking read of nothing returned {read:?}, expected Timeout"
    );
    ensure!(
        waited >= timeout - Duration::from_millis(20),
        "clause 4: timed out after {waited:?}, before its {timeout:?} timeout"
    );
    // A read that timed out must not keep the next one from seeing a value.
    write(&results, &uri, json!(2)).await?;
    ensure_eq!(
        read_now(&results, &uri).await?,
        Some(json!(2)),
        "a read after a timed-out read"
    );
    Ok(())
}

async fn blocking_read_of_stored_value(env: E<'_>) -> CaseResult {
    let results = env.fresh().await?;
    let uri = uri(&env, "result");
    write(&results, &uri, json!(7)).await?;
    let read = bounded(
        "clause 4: a blocking read of a stored value",
        PROMPT,
        results.read(&uri, ReadOptions::blocking(Some(Duration::from_secs(60)))),
    )
    .await?;
    ensure_eq!(
        read.ctx("read")?,
        Some(json!(7)),
        "clause 4: a blocking read of a stored value"
    );
    let forever = bounded(
        "clause 4: a blocking read without timeout of a stored value",
        PROMPT,
        results.read(&uri, ReadOptions::blocking(None)),
    )
    .await?;
    ensure_eq!(
        forever.ctx("read")?,
        Some(json!(7)),
        "clause 4: a blocking read without timeout"
    );
    Ok(())
}
