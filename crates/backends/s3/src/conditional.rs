//! Conditional creates (`If-None-Match: *`): which keys get them, what the server's answers
//! mean, and the probe that finds out whether the server honours them at all.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_s3::primitives::ByteStream;

use crate::client::Connection;
use crate::error::{Request, S3Error};
use crate::persistence::error_code;

/// Whether `key` names a snapshot (`…/step_000042_execute.json`): the keys written once per
/// step, as opposed to the `latest` pointer, which every checkpoint overwrites.
pub(crate) fn is_snapshot_key(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.starts_with("step_") && name.ends_with(".json")
}

/// Whether a conditional create failed because the key exists: `412 Precondition Failed`,
/// or `409 ConditionalRequestConflict` when another conditional write to it is in flight.
pub(crate) fn key_exists(error: &SdkError<PutObjectError, HttpResponse>) -> bool {
    matches!(
        error_code(error),
        (Some(412), _) | (_, "PreconditionFailed") | (Some(409), "ConditionalRequestConflict")
    )
}

/// Whether the server refused the header itself (`501 Not Implemented`, or a `400` naming
/// it), rather than the request.
fn header_refused(error: &SdkError<PutObjectError, HttpResponse>) -> bool {
    matches!(
        error_code(error),
        (Some(501), _) | (_, "NotImplemented") | (Some(400), "InvalidArgument" | "InvalidRequest")
    )
}

/// One probe of a server: creates `key` twice, then deletes it.
pub(crate) struct Probe<'a> {
    pub(crate) connection: &'a Connection,
    pub(crate) bucket: &'a str,
    pub(crate) key: &'a str,
    pub(crate) request: Request<'a>,
}

impl Probe<'_> {
    /// `true` when the server refused the second create, as S3 does.
    pub(crate) async fn run(&self) -> Result<bool, S3Error> {
        let honoured = match self.create().await {
            Ok(()) => match self.create().await {
                Ok(()) => {
                    self.warn("it let a second `If-None-Match: *` create of one key through");
                    false
                }
                Err(e) if key_exists(&e) => true,
                Err(e) if header_refused(&e) => {
                    self.warn("it refused the `If-None-Match` header");
                    false
                }
                Err(e) => {
                    self.delete().await;
                    return Err(self.request.failed(&e));
                }
            },
            Err(e) if header_refused(&e) => {
                self.warn("it refused the `If-None-Match` header");
                false
            }
            Err(e) => return Err(self.request.failed(&e)),
        };
        self.delete().await;
        Ok(honoured)
    }

    async fn create(&self) -> Result<(), SdkError<PutObjectError, HttpResponse>> {
        self.connection
            .client
            .put_object()
            .bucket(self.bucket)
            .key(self.key)
            .if_none_match("*")
            .body(ByteStream::from_static(b"probe"))
            .send()
            .await
            .map(|_| ())
    }

    /// Best effort: a probe object left behind is invisible to `list` and costs 5 bytes.
    async fn delete(&self) {
        let deleted = self
            .connection
            .client
            .delete_object()
            .bucket(self.bucket)
            .key(self.key)
            .send()
            .await;
        if let Err(e) = deleted {
            tracing::debug!(key = self.key, error = %self.request.failed(&e), "probe object not deleted");
        }
    }

    fn warn(&self, what: &str) {
        tracing::warn!(
            bucket = self.bucket,
            endpoint = %self.connection.endpoint,
            "the S3 server does not honour conditional writes ({what}): snapshots are written with plain puts, and a replaced snapshot goes unnoticed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_keys_are_told_from_pointers() {
        for key in [
            "exec/step_000001_execute.json",
            "a/b/step_000000_machine_start.json",
            "step_1.json",
        ] {
            assert!(is_snapshot_key(key), "{key}");
        }
        for key in [
            "exec/latest",
            "exec/step_000001_execute.json/x",
            "exec/steps.json",
            "step_000001_execute.json.tmp",
        ] {
            assert!(!is_snapshot_key(key), "{key}");
        }
    }
}
