//! Checkpoint storage as S3 objects, one per key.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier,
};
use bytes::Bytes;
use flatmachines_core::{Error, PersistenceBackend, Result, validate_key, validate_prefix};
use tokio::sync::OnceCell;

use crate::S3Config;
use crate::client::{Connection, DEFAULT_REGION, connect};
use crate::conditional::{self, Probe};
use crate::error::Request;

/// The largest value one `PutObject` stores: 5 GiB.
pub const MAX_VALUE_BYTES: usize = 5 * 1024 * 1024 * 1024;

/// Where the backend keeps objects of its own under the prefix. No key can start with it,
/// because key segments may not start with `.`.
pub(crate) const INTERNAL_DIR: &str = ".flatmachines/";

/// A [`PersistenceBackend`] keeping each key as one object at `{prefix}{key}` in a bucket.
///
/// - `save` is one `PutObject`, which S3 applies atomically: a reader sees the old object or
///   the new one, never a mix. `save_many` puts its entries one after the other, in order;
///   S3's read-after-write consistency then makes an entry visible only after every entry
///   before it (a snapshot before the `latest` pointer naming it).
/// - **Snapshots** (keys whose last segment is `step_….json`) are created with
///   `If-None-Match: *`. When the key exists already the server refuses with
///   `412 Precondition Failed`; the backend then replaces the object with a plain put, as
///   the [`PersistenceBackend`] contract asks (`save` overwrites), counts it in
///   [`replaced_snapshots`](Self::replaced_snapshots) and logs it at INFO with the key. A
///   resumed execution does that on purpose when it repeats its interrupted step; anything
///   else means a second runner is writing the same execution, which S3 cannot lock
///   against. The `latest` pointer and every other key are plain puts.
/// - Whether the server honours `If-None-Match` is **probed** before the first snapshot
///   write: a probe object under `{prefix}.flatmachines/` is created twice. A server that
///   ignores the header (it lets the second create through) or refuses it gets one WARN and
///   plain puts from then on: the stored data is the same, only replaced snapshots go
///   unnoticed. [`conditional_writes`](Self::conditional_writes) tells which it was.
/// - `list(prefix)` pages through `ListObjectsV2` (1000 keys a page, continuation tokens)
///   and sorts the keys by bytes. Objects under the prefix that no key can name (the
///   backend's own `.flatmachines/`, folder markers ending in `/`) are left out.
/// - `load` of a missing key is `None`; `delete` of a missing key succeeds, as in S3.
/// - Values up to [`MAX_VALUE_BYTES`] are stored; larger ones fail with
///   [`Error::TooLarge`] before anything is sent.
///
/// S3 has no execution lock; see the crate docs for what to pair with it. Nothing is
/// connected until the first request; `Clone` shares the connection.
#[derive(Clone)]
pub struct S3Backend {
    inner: Arc<Inner>,
}

struct Inner {
    config: S3Config,
    connection: OnceCell<Connection>,
    conditional: OnceCell<bool>,
    replaced: AtomicU64,
}

impl S3Backend {
    /// A backend for `config`. Nothing is connected yet.
    pub fn new(config: S3Config) -> Self {
        S3Backend {
            inner: Arc::new(Inner {
                config,
                connection: OnceCell::new(),
                conditional: OnceCell::new(),
                replaced: AtomicU64::new(0),
            }),
        }
    }

    /// A backend for `s3://BUCKET/PREFIX?…` (see [`S3Config::from_url`]).
    pub fn open(url: &str) -> Result<Self> {
        S3Config::from_url(url).map(Self::new)
    }

    /// Its configuration.
    pub fn config(&self) -> &S3Config {
        &self.inner.config
    }

    /// How many snapshot writes found their key taken and replaced it (see the type docs).
    pub fn replaced_snapshots(&self) -> u64 {
        self.inner.replaced.load(Ordering::Relaxed)
    }

    /// Checks that the endpoint answers, the credentials are accepted and the bucket exists
    /// (`HeadBucket`), with the same clear errors the other operations give.
    pub async fn check(&self) -> Result<()> {
        let connection = self.connection().await;
        let bucket = self.config().bucket();
        connection
            .client
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| self.request("reach", "", connection).failed(&e))?;
        Ok(())
    }

    /// Creates the bucket unless it exists and is yours: for emulators and first-time setup
    /// (needs `s3:CreateBucket`).
    pub async fn create_bucket(&self) -> Result<()> {
        let connection = self.connection().await;
        let bucket = self.config().bucket();
        let region = connection
            .client
            .config()
            .region()
            .map(|r| r.as_ref().to_owned());
        let mut create = connection.client.create_bucket().bucket(bucket);
        // us-east-1 is the one region that takes no location constraint.
        if let Some(region) = region.filter(|r| r != DEFAULT_REGION) {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you()) =>
            {
                Ok(())
            }
            Err(e) => Err(self
                .request("create the bucket", "", connection)
                .failed(&e)
                .into()),
        }
    }

    /// Whether the server honours `If-None-Match: *` on puts, probing it on first use (see
    /// the type docs). Always `false` when conditional snapshots are turned off.
    pub async fn conditional_writes(&self) -> Result<bool> {
        if !self.config().conditional_snapshots() {
            return Ok(false);
        }
        self.inner
            .conditional
            .get_or_try_init(|| async {
                let connection = self.connection().await;
                let probe_key = format!(
                    "{}{INTERNAL_DIR}probe-{}",
                    self.config().prefix(),
                    uuid::Uuid::new_v4().simple()
                );
                let probe = Probe {
                    connection,
                    bucket: self.config().bucket(),
                    key: &probe_key,
                    request: self.request("probe conditional writes on", &probe_key, connection),
                };
                probe.run().await.map_err(Error::from)
            })
            .await
            .copied()
    }

    /// Deletes every object under `{prefix}{key_prefix}`, the backend's own included, in
    /// batches of 1000 (`DeleteObjects`); returns how many it deleted.
    pub async fn delete_prefix(&self, key_prefix: &str) -> Result<usize> {
        validate_prefix(key_prefix)?;
        let connection = self.connection().await;
        let objects = self.list_objects(connection, key_prefix, "delete").await?;
        let request = self.request("delete", key_prefix, connection);
        for chunk in objects.chunks(1000) {
            let ids: Vec<ObjectIdentifier> = chunk
                .iter()
                .filter_map(|key| ObjectIdentifier::builder().key(key).build().ok())
                .collect();
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| request.other(e.to_string()))?;
            let output = connection
                .client
                .delete_objects()
                .bucket(self.config().bucket())
                .delete(delete)
                .send()
                .await
                .map_err(|e| request.failed(&e))?;
            if let Some(failed) = output.errors().first() {
                return Err(request
                    .other(format!(
                        "{} objects were not deleted, the first `{}`: {}",
                        output.errors().len(),
                        failed.key().unwrap_or_default(),
                        failed.message().unwrap_or_default()
                    ))
                    .into());
            }
        }
        Ok(objects.len())
    }

    /// The SDK client, connected on first use, for what the trait does not cover (lifecycle
    /// rules, tagging, …). Its objects are at [`S3Config::prefix`] + key.
    pub async fn sdk_client(&self) -> &aws_sdk_s3::Client {
        &self.connection().await.client
    }

    async fn connection(&self) -> &Connection {
        self.inner
            .connection
            .get_or_init(|| connect(&self.inner.config))
            .await
    }

    fn request<'a>(
        &'a self,
        operation: &'static str,
        object_key: &'a str,
        connection: &'a Connection,
    ) -> Request<'a> {
        let config = self.config();
        Request {
            operation,
            bucket: config.bucket(),
            key: object_key,
            endpoint: &connection.endpoint,
            connect_timeout: config.connect_timeout(),
            attempt_timeout: config.attempt_timeout(),
            operation_timeout: config.operation_timeout(),
            attempts: config.max_attempts(),
        }
    }

    fn object_key(&self, key: &str) -> String {
        format!("{}{key}", self.config().prefix())
    }

    /// Every object key under `{prefix}{key_prefix}`, in the server's order.
    async fn list_objects(
        &self,
        connection: &Connection,
        key_prefix: &str,
        operation: &'static str,
    ) -> Result<Vec<String>> {
        let full_prefix = self.object_key(key_prefix);
        let mut pages = connection
            .client
            .list_objects_v2()
            .bucket(self.config().bucket())
            .prefix(&full_prefix)
            .max_keys(self.config().list_page_size())
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| self.request(operation, &full_prefix, connection).failed(&e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        Ok(keys)
    }

    async fn put(
        &self,
        connection: &Connection,
        object: &str,
        value: Bytes,
        if_absent: bool,
    ) -> std::result::Result<(), SdkError<PutObjectError, aws_sdk_s3::config::http::HttpResponse>>
    {
        let mut put = connection
            .client
            .put_object()
            .bucket(self.config().bucket())
            .key(object)
            .body(ByteStream::from(value));
        if if_absent {
            put = put.if_none_match("*");
        }
        put.send().await.map(|_| ())
    }

    async fn save_one(&self, connection: &Connection, key: &str, value: Bytes) -> Result<()> {
        let object = self.object_key(key);
        let request = self.request("save", &object, connection);
        if conditional::is_snapshot_key(key) && self.conditional_writes().await? {
            match self.put(connection, &object, value.clone(), true).await {
                Ok(()) => return Ok(()),
                Err(e) if conditional::key_exists(&e) => {
                    self.inner.replaced.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        bucket = self.config().bucket(),
                        key = %object,
                        "snapshot exists already and is replaced: a resumed execution repeats its interrupted step (or a second runner writes the same execution)"
                    );
                }
                Err(e) => return Err(request.failed(&e).into()),
            }
        }
        self.put(connection, &object, value, false)
            .await
            .map_err(|e| Error::from(request.failed(&e)))
    }
}

impl fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Backend")
            .field("config", &self.inner.config)
            .field(
                "endpoint",
                &self.inner.connection.get().map(|c| &c.endpoint),
            )
            .field("conditional_writes", &self.inner.conditional.get())
            .finish()
    }
}

fn check_size(key: &str, value: &Bytes) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::TooLarge {
            key: key.to_owned(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
            backend: "s3",
        });
    }
    Ok(())
}

#[async_trait]
impl PersistenceBackend for S3Backend {
    async fn save(&self, key: &str, value: Bytes) -> Result<()> {
        validate_key(key)?;
        check_size(key, &value)?;
        let connection = self.connection().await;
        self.save_one(connection, key, value).await
    }

    async fn save_many(&self, entries: &[(&str, Bytes)]) -> Result<()> {
        for (key, value) in entries {
            validate_key(key)?;
            check_size(key, value)?;
        }
        if entries.is_empty() {
            return Ok(());
        }
        let connection = self.connection().await;
        for (key, value) in entries {
            self.save_one(connection, key, value.clone()).await?;
        }
        Ok(())
    }

    async fn load(&self, key: &str) -> Result<Option<Bytes>> {
        validate_key(key)?;
        let connection = self.connection().await;
        let object = self.object_key(key);
        let request = self.request("load", &object, connection);
        let output = connection
            .client
            .get_object()
            .bucket(self.config().bucket())
            .key(&object)
            .send()
            .await;
        match output {
            Ok(output) => {
                let body = output.body.collect().await.map_err(|e| {
                    request.interrupted(format!("the response body was cut off: {e}"))
                })?;
                Ok(Some(body.into_bytes()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(request.failed(&e).into()),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let connection = self.connection().await;
        let object = self.object_key(key);
        connection
            .client
            .delete_object()
            .bucket(self.config().bucket())
            .key(&object)
            .send()
            .await
            .map_err(|e| self.request("delete", &object, connection).failed(&e))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix)?;
        let connection = self.connection().await;
        let root = self.config().prefix();
        let mut keys: Vec<String> = self
            .list_objects(connection, prefix, "list")
            .await?
            .into_iter()
            .filter_map(|object| object.strip_prefix(root).map(str::to_owned))
            .filter(|key| key.starts_with(prefix) && validate_key(key).is_ok())
            .collect();
        keys.sort_unstable();
        Ok(keys)
    }
}

/// Used by [`conditional`] to tell a failed request apart from a refused condition.
pub(crate) fn error_code(
    error: &SdkError<PutObjectError, aws_sdk_s3::config::http::HttpResponse>,
) -> (Option<u16>, &str) {
    (
        error.raw_response().map(|r| r.status().as_u16()),
        error.code().unwrap_or_default(),
    )
}
