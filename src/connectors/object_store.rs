//! Object storage for the filesystem connector: `s3://bucket/prefix` paths, through the
//! `object_store` crate (the one DataFusion uses).
//!
//! Settings come from the table's options (`'aws.region'`, `'aws.endpoint'`,
//! `'aws.credentials.basic.accesskeyid'`, `'aws.credentials.basic.secretkey'`,
//! `'aws.credentials.basic.sessiontoken'`), else from the environment (`AWS_REGION`,
//! `AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, ... and instance credentials). An `http://` endpoint
//! (a local S3-compatible server) is allowed, with path-style requests.
//!
//! [`Upload`] streams one object with S3 multipart upload: the encoder writes into a pipe,
//! full parts (`'sink.s3.part-size'`, default 8 MiB; at least S3's 5 MiB) are uploaded while
//! the file is still being written, and the object appears only when the upload is completed
//! (when the file is rolled), so readers never see a partial file. Memory is bounded by a few
//! parts per open file, whatever the file's size.
//!
//! [`StagedUpload`] is the same for an exactly-once sink: the upload's id and its parts' ids
//! are kept, so a checkpoint can record them and its commit (or a restore replaying the
//! commit) can complete the upload later, from another process.

use std::io::Write;
use std::sync::{Arc, Mutex};

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

use super::aws::AwsOptions;
use crate::sql::catalog::Table;
use crate::{Error, Result, plan_err};

/// A parsed `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without leading or trailing `/`.
    pub prefix: String,
}

impl S3Url {
    /// Parse `s3://bucket[/prefix]` (also `s3a://`).
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .or_else(|| url.strip_prefix("s3a://"))
            .ok_or_else(|| Error::Plan(format!("'{url}' is not an s3:// path")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return plan_err!("'{url}' names no bucket (s3://bucket/prefix)");
        }
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    /// The object path of `name` under the prefix.
    pub fn key(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }
}

/// Whether a path option names object storage.
pub fn is_object_url(path: &str) -> bool {
    path.starts_with("s3://") || path.starts_with("s3a://")
}

/// A store for `url`'s bucket, configured from `table`'s options and the environment.
pub fn s3_store(table: &Table, url: &S3Url) -> Result<Arc<dyn ObjectStore>> {
    Ok(s3_bucket(table, url)?)
}

/// The same store, with its multipart calls (for [`StagedUpload`]).
pub fn s3_bucket(table: &Table, url: &S3Url) -> Result<Arc<AmazonS3>> {
    let o = AwsOptions::from_table(table);
    let mut b = AmazonS3Builder::from_env().with_bucket_name(&url.bucket);
    if let Some(r) = &o.region {
        b = b.with_region(r);
    }
    if let Some(e) = &o.endpoint {
        b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
    }
    if let Some(k) = &o.access_key {
        b = b.with_access_key_id(k);
    }
    if let Some(s) = &o.secret_key {
        b = b.with_secret_access_key(s);
    }
    if let Some(t) = &o.session_token {
        b = b.with_token(t);
    }
    let store = b.build().map_err(|e| Error::Connector {
        context: format!("table {}: s3://{}", table.def.name, url.bucket),
        message: e.to_string(),
    })?;
    Ok(Arc::new(store))
}

fn store_err(context: impl Into<String>, e: object_store::Error) -> Error {
    let text = e.to_string();
    Error::Connector {
        context: context.into(),
        message: super::aws::credentials_hint(&text).unwrap_or(text),
    }
}

/// The bytes an encoder has written and the upload has not taken yet.
#[derive(Clone, Default)]
struct Pipe(Arc<Mutex<Vec<u8>>>);

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("upload buffer poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One object being uploaded: see the module doc.
pub struct Upload {
    key: ObjectPath,
    pipe: Pipe,
    upload: WriteMultipart,
    part_size: usize,
}

/// Parts uploaded at once per object.
const CONCURRENT_PARTS: usize = 4;

impl Upload {
    /// Start a multipart upload of `key`; returns it and the writer to encode into.
    pub async fn start(
        store: &Arc<dyn ObjectStore>,
        key: ObjectPath,
        part_size: usize,
    ) -> Result<(Self, Box<dyn Write + Send>)> {
        let upload = store
            .put_multipart(&key)
            .await
            .map_err(|e| store_err(format!("starting upload of {key}"), e))?;
        let pipe = Pipe::default();
        Ok((
            Self {
                key,
                pipe: pipe.clone(),
                upload: WriteMultipart::new_with_chunk_size(upload, part_size),
                part_size,
            },
            Box::new(pipe),
        ))
    }

    /// Hand what was written to the upload; waits while too many parts are in flight.
    pub async fn pump(&mut self) -> Result<()> {
        let data = {
            let mut buf = self
                .pipe
                .0
                .lock()
                .map_err(|_| Error::Plan("upload buffer poisoned".into()))?;
            if buf.len() < self.part_size {
                return Ok(());
            }
            std::mem::take(&mut *buf)
        };
        self.upload.write(&data);
        let key = &self.key;
        self.upload
            .wait_for_capacity(CONCURRENT_PARTS)
            .await
            .map_err(|e| store_err(format!("uploading {key}"), e))
    }

    /// Upload the rest and complete: the object becomes visible.
    pub async fn complete(mut self) -> Result<()> {
        let rest = std::mem::take(
            &mut *self
                .pipe
                .0
                .lock()
                .map_err(|_| Error::Plan("upload buffer poisoned".into()))?,
        );
        self.upload.write(&rest);
        let key = self.key;
        self.upload
            .finish()
            .await
            .map(|_| ())
            .map_err(|e| store_err(format!("completing upload of {key}"), e))
    }

    /// Abandon the upload (its parts are deleted; nothing becomes visible).
    pub async fn abort(self) -> Result<()> {
        let key = self.key;
        self.upload
            .abort()
            .await
            .map_err(|e| store_err(format!("aborting upload of {key}"), e))
    }
}

/// One object uploaded in parts whose ids are kept: see the module doc.
pub struct StagedUpload {
    store: Arc<AmazonS3>,
    key: ObjectPath,
    id: String,
    pipe: Pipe,
    parts: Vec<String>,
    part_size: usize,
}

/// What completes a [`StagedUpload`]: the object, the upload id and the parts' ids.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StagedObject {
    /// The object's key.
    pub key: String,
    /// The multipart upload's id.
    pub upload: String,
    /// The parts' ids (ETags), in order.
    pub parts: Vec<String>,
}

impl StagedUpload {
    /// Start a multipart upload of `key`; returns it and the writer to encode into.
    pub async fn start(
        store: &Arc<AmazonS3>,
        key: ObjectPath,
        part_size: usize,
    ) -> Result<(Self, Box<dyn Write + Send>)> {
        let id = store
            .create_multipart(&key)
            .await
            .map_err(|e| store_err(format!("starting upload of {key}"), e))?;
        let pipe = Pipe::default();
        Ok((
            Self {
                store: store.clone(),
                key,
                id,
                pipe: pipe.clone(),
                parts: vec![],
                part_size,
            },
            Box::new(pipe),
        ))
    }

    fn take(&self, all: bool) -> Result<Option<Vec<u8>>> {
        let mut buf = self
            .pipe
            .0
            .lock()
            .map_err(|_| Error::Plan("upload buffer poisoned".into()))?;
        if buf.len() < self.part_size && !(all && (!buf.is_empty() || self.parts.is_empty())) {
            return Ok(None);
        }
        Ok(Some(std::mem::take(&mut *buf)))
    }

    async fn put(&mut self, data: Vec<u8>) -> Result<()> {
        let part = self
            .store
            .put_part(&self.key, &self.id, self.parts.len(), data.into())
            .await
            .map_err(|e| store_err(format!("uploading a part of {}", self.key), e))?;
        self.parts.push(part.content_id);
        Ok(())
    }

    /// Upload a full part, if one was written.
    pub async fn pump(&mut self) -> Result<()> {
        if let Some(data) = self.take(false)? {
            self.put(data).await?;
        }
        Ok(())
    }

    /// Upload the rest (the encoder has closed the file); the object is not visible until
    /// [`complete_staged`] is called with what this returns.
    pub async fn stage(mut self) -> Result<StagedObject> {
        if let Some(data) = self.take(true)? {
            self.put(data).await?;
        }
        Ok(StagedObject {
            key: self.key.to_string(),
            upload: self.id,
            parts: self.parts,
        })
    }

    /// Abandon the upload (its parts are deleted; nothing becomes visible).
    pub async fn abort(self) -> Result<()> {
        self.store
            .abort_multipart(&self.key, &self.id)
            .await
            .map_err(|e| store_err(format!("aborting upload of {}", self.key), e))
    }
}

/// Complete a staged upload: the object becomes visible. Completing one that was completed
/// before (a replayed commit) finds the object there and succeeds.
pub async fn complete_staged(store: &Arc<AmazonS3>, o: &StagedObject) -> Result<()> {
    let key = ObjectPath::from(o.key.as_str());
    let parts = o
        .parts
        .iter()
        .map(|p| PartId {
            content_id: p.clone(),
        })
        .collect();
    match store.complete_multipart(&key, &o.upload, parts).await {
        Ok(_) => Ok(()),
        Err(e) => match store.head(&key).await {
            Ok(_) => Ok(()),
            Err(_) => Err(store_err(
                format!("completing upload of {key} (neither completed nor there)"),
                e,
            )),
        },
    }
}

/// The data objects under `url` (names starting with `.` or `_` skipped), in key order.
pub async fn list_objects(store: &Arc<dyn ObjectStore>, url: &S3Url) -> Result<Vec<ObjectPath>> {
    Ok(list_object_metas(store, url)
        .await?
        .into_iter()
        .map(|m| m.location)
        .collect())
}

/// The data objects under `url` with their sizes and versions, in key order.
pub async fn list_object_metas(
    store: &Arc<dyn ObjectStore>,
    url: &S3Url,
) -> Result<Vec<object_store::ObjectMeta>> {
    use futures::TryStreamExt;
    let prefix = (!url.prefix.is_empty()).then(|| ObjectPath::from(url.prefix.as_str()));
    let metas: Vec<object_store::ObjectMeta> = store
        .list(prefix.as_ref())
        .try_collect()
        .await
        .map_err(|e| store_err(format!("listing s3://{}/{}", url.bucket, url.prefix), e))?;
    let mut metas: Vec<object_store::ObjectMeta> = metas
        .into_iter()
        .filter(|m| {
            m.location
                .parts()
                .all(|part| !part.as_ref().starts_with('.') && !part.as_ref().starts_with('_'))
        })
        .collect();
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(metas)
}

/// The whole object at `key`.
pub async fn get_object(store: &Arc<dyn ObjectStore>, key: &ObjectPath) -> Result<bytes::Bytes> {
    let r = store
        .get(key)
        .await
        .map_err(|e| store_err(format!("reading {key}"), e))?;
    r.bytes()
        .await
        .map_err(|e| store_err(format!("reading {key}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_urls() {
        let u = S3Url::parse("s3://bucket/a/b/").unwrap();
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("bucket", "a/b"));
        assert_eq!(
            u.key("x=1/part-0.parquet").as_ref(),
            "a/b/x=1/part-0.parquet"
        );
        assert_eq!(S3Url::parse("s3://b").unwrap().prefix, "");
        assert!(S3Url::parse("s3:///x").is_err());
    }
}
