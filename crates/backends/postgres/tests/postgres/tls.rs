//! `sslmode=require`: with the `tls` feature, a verified connection to the local server (when
//! it serves TLS with a certificate for `localhost` that the test can read), and a clear
//! refusal of a certificate nobody vouches for; without it, a clear configuration error.

#[cfg(feature = "tls")]
use std::time::Duration;

use flatmachines_postgres::{PostgresConfig, PostgresStore};

#[cfg(feature = "tls")]
use crate::support::TestEnv;

/// The local server with TLS required, as `localhost` so that its certificate's name matches.
#[cfg(feature = "tls")]
fn tls_config(env: &TestEnv, root_cert: Option<&str>) -> PostgresConfig {
    let url = crate::support::url().replacen("127.0.0.1", "localhost", 1);
    let separator = if url.contains('?') { '&' } else { '?' };
    let mut url = format!("{url}{separator}sslmode=require");
    if let Some(path) = root_cert {
        url.push_str(&format!("&sslrootcert={path}"));
    }
    PostgresConfig::from_url(&url)
        .and_then(|c| c.with_schema(env.schema.clone()))
        .expect("the test URL parses")
        .with_application_name(&env.application)
        .with_connect_timeout(Duration::from_secs(3))
        .with_retries(0)
}

/// The server's certificate, when it serves TLS and the file is readable here.
#[cfg(feature = "tls")]
async fn server_certificate(env: &TestEnv) -> Option<String> {
    let ssl: String = env.scalar("SHOW ssl").await;
    if ssl != "on" {
        eprintln!("skipped: the server does not serve TLS (ssl = {ssl})");
        return None;
    }
    let path: String = env.scalar("SHOW ssl_cert_file").await;
    if std::fs::read(&path).is_err() {
        eprintln!("skipped: the server's certificate `{path}` is not readable here");
        return None;
    }
    Some(path)
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn a_certificate_from_sslrootcert_is_trusted_and_one_from_nowhere_is_refused() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let Some(certificate) = server_certificate(&env).await else {
        return;
    };
    // Unknown to the Mozilla roots: refused, at once and by name.
    let untrusted = PostgresStore::new(tls_config(&env, None)).expect("a store");
    let error = tokio::time::timeout(Duration::from_secs(20), untrusted.ping())
        .await
        .expect("no hang")
        .expect_err("an unverified certificate is refused")
        .to_string();
    assert!(
        error.contains("cannot connect to PostgreSQL at postgres://"),
        "{error}"
    );
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    // Trusted through sslrootcert, when its name matches `localhost`.
    let trusted = PostgresStore::new(tls_config(&env, Some(&certificate))).expect("a store");
    match trusted.ping().await {
        Ok(()) => {}
        Err(e) if e.to_string().contains("NotValidForName") => {
            eprintln!("skipped: the server's certificate is not for `localhost`: {e}");
            return;
        }
        Err(e) => panic!("TLS with sslrootcert failed: {e}"),
    }
    let persistence = trusted.persistence();
    flatmachines_core::PersistenceBackend::save(
        &persistence,
        "e/k",
        bytes::Bytes::from_static(b"over tls"),
    )
    .await
    .expect("saves over TLS");
    let encrypted: bool = env
        .scalar(&format!(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = '{}'",
            env.application
        ))
        .await;
    assert!(encrypted, "a connection of the store is not encrypted");
}

#[cfg(not(feature = "tls"))]
#[test]
fn without_the_tls_feature_sslmode_require_is_refused_clearly() {
    let error = PostgresConfig::from_url("postgres://postgres@127.0.0.1/test?sslmode=require")
        .and_then(PostgresStore::new)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("sslmode=require"), "{error}");
    assert!(error.contains("`tls` feature"), "{error}");
}
