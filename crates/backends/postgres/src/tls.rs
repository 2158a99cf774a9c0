//! `sslmode=require` over rustls (feature `tls`).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::PgError;

/// A connector that verifies the server against the Mozilla roots (`webpki-roots`) and the
/// certificates of the PEM file `root_cert`. Unlike libpq's `require`, the certificate is
/// always verified: a server with a self-signed certificate needs it in `sslrootcert`.
pub(crate) fn connector(root_cert: Option<&Path>) -> Result<MakeRustlsConnect, PgError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = root_cert {
        let unreadable = |reason: String| {
            PgError::config(
                format!("cannot read sslrootcert `{}`: {reason}", path.display()),
                "expected a PEM file of CA certificates",
            )
        };
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|e| unreadable(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unreadable(e.to_string()))?;
        if certificates.is_empty() {
            return Err(unreadable("it holds no certificate".to_owned()));
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|e| unreadable(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            PgError::config(
                format!("cannot set up TLS: {e}"),
                "this is a bug in flatmachines-postgres",
            )
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
