//! The checkpoint directory: its layout and its object-store backend.
//!
//! ```text
//! {dir}/{job}/job.json                       lineage id, key groups, weir version
//! {dir}/{job}/epochs/epoch-{n:010}.json      commit point, created only if absent
//! {dir}/{job}/chk-{n:010}/manifest.json      every file below, per operator id
//! {dir}/{job}/chk-{n:010}/sources.json       positions per source shard, with watermarks
//! {dir}/{job}/chk-{n:010}/op-{id}/kg-…-{table}.arrow   Arrow IPC per key-group range
//! {dir}/{job}/chk-{n:010}/sinks.json         what the sink publishes on commit
//! {dir}/{job}/chk-{n:010}/committed          written after the sink published
//! ```
//!
//! A local path (or `file://…`) and `s3://bucket/prefix` go through the same `ObjectStore`
//! code. S3 credentials, region and endpoint come from the environment (`AWS_*`).

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Where a job's checkpoints live.
#[derive(Clone)]
pub(crate) struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    /// `{prefix}/{job}`.
    root: String,
    /// For messages: the directory as the user wrote it, with the job.
    shown: String,
}

/// `job.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub job: String,
    pub lineage: String,
    pub max_parallelism: usize,
    pub weir_version: String,
}

/// `epochs/epoch-{n}.json`: the commit point of checkpoint n.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EpochRecord {
    pub epoch: u64,
    pub lineage: String,
    /// Wall-clock time of the checkpoint (ms since epoch).
    pub time_ms: i64,
    /// Bounded input had ended: nothing is left to do.
    pub finished: bool,
}

/// One state file of an operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StateFile {
    pub start: usize,
    pub end: usize,
    pub table: String,
    pub file: String,
    pub bytes: usize,
}

/// One operator's state in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OperatorEntry {
    pub id: String,
    pub description: String,
    pub files: Vec<StateFile>,
    /// Scalar state per key-group range (start, end, meta).
    pub meta: Vec<(usize, usize, serde_json::Value)>,
}

/// `chk-{n}/manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub epoch: u64,
    pub lineage: String,
    pub time_ms: i64,
    pub finished: bool,
    pub parallelism: usize,
    pub max_parallelism: usize,
    /// Events read from the sources up to this checkpoint, over every run of the lineage.
    pub events_in: u64,
    pub operators: Vec<OperatorEntry>,
    pub bytes: usize,
}

fn store_err(what: String, e: object_store::Error) -> Error {
    Error::Connector {
        context: what,
        message: e.to_string(),
    }
}

impl CheckpointStore {
    /// The checkpoints of `job` under `dir` (a path, `file://…` or `s3://bucket/prefix`).
    pub(crate) fn open(dir: &str, job: &str) -> Result<Self> {
        Self::open_dir(dir, &sanitize(job))
    }

    /// The checkpoints in job directory `job_dir` (a name as stored) under `dir`.
    pub(crate) fn open_existing(dir: &str, job_dir: &str) -> Result<Self> {
        Self::open_dir(dir, job_dir)
    }

    fn open_dir(dir: &str, job_dir: &str) -> Result<Self> {
        let job_dir = job_dir.to_string();
        if let Some(rest) = dir.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Ok(e) =
                std::env::var("AWS_ENDPOINT").or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            {
                b = b
                    .with_endpoint(&e)
                    .with_allow_http(e.starts_with("http://"));
            }
            let store = b.build().map_err(|e| Error::Connector {
                context: format!("checkpoint directory {dir}"),
                message: e.to_string(),
            })?;
            let prefix = prefix.trim_matches('/');
            let root = if prefix.is_empty() {
                job_dir.clone()
            } else {
                format!("{prefix}/{job_dir}")
            };
            return Ok(Self {
                store: Arc::new(store),
                root,
                shown: format!("{}/{job_dir}", dir.trim_end_matches('/')),
            });
        }
        let path = dir.strip_prefix("file://").unwrap_or(dir);
        std::fs::create_dir_all(path).map_err(|source| Error::Io {
            context: format!("creating checkpoint directory {path}"),
            source,
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(path)
            .map_err(|e| store_err(format!("checkpoint directory {path}"), e))?;
        Ok(Self {
            store: Arc::new(store),
            root: job_dir.clone(),
            shown: format!("{}/{job_dir}", path.trim_end_matches('/')),
        })
    }

    /// The job's directory, for messages.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    fn path(&self, rel: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{rel}", self.root))
    }

    /// Write (or overwrite) a file.
    pub(crate) async fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&self.path(rel), PutPayload::from(bytes))
            .await
            .map_err(|e| store_err(format!("writing {}/{rel}", self.shown), e))?;
        Ok(())
    }

    /// Create a file only if it does not exist: false when it already did.
    pub(crate) async fn put_if_absent(&self, rel: &str, bytes: Vec<u8>) -> Result<bool> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&self.path(rel), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(store_err(format!("creating {}/{rel}", self.shown), e)),
        }
    }

    /// A file's bytes, or None when it does not exist.
    pub(crate) async fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.store.get(&self.path(rel)).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(|e| {
                store_err(format!("reading {}/{rel}", self.shown), e)
            })?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(format!("reading {}/{rel}", self.shown), e)),
        }
    }

    /// A JSON file, or None when it does not exist.
    pub(crate) async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        rel: &str,
    ) -> Result<Option<T>> {
        let Some(bytes) = self.get(rel).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Execution {
                operator: "restore".into(),
                message: format!("{}/{rel} is not readable: {e}", self.shown),
            })
    }

    /// Write a JSON file.
    pub(crate) async fn put_json<T: Serialize>(&self, rel: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Execution {
            operator: "checkpoint".into(),
            message: format!("encoding {rel}: {e}"),
        })?;
        self.put(rel, bytes).await
    }

    /// Paths (relative to the job directory) of every file under `rel`, with their sizes.
    pub(crate) async fn list(&self, rel: &str) -> Result<Vec<(String, u64)>> {
        use futures::TryStreamExt;
        let prefix = self.path(rel);
        let metas: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| store_err(format!("listing {}/{rel}", self.shown), e))?;
        let skip = self.root.len() + 1;
        Ok(metas
            .into_iter()
            .map(|m| {
                (
                    m.location.as_ref().get(skip..).unwrap_or("").to_string(),
                    m.size,
                )
            })
            .collect())
    }

    /// Delete one file (gone already is fine).
    pub(crate) async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(format!("deleting {}/{rel}", self.shown), e)),
        }
    }

    /// Delete every file under `rel`.
    pub(crate) async fn delete_all(&self, rel: &str) -> Result<()> {
        for (f, _) in self.list(rel).await? {
            match self.store.delete(&self.path(&f)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err(format!("deleting {}/{f}", self.shown), e)),
            }
        }
        if !self.shown.starts_with("s3://") {
            // The local store leaves empty directories behind.
            let dir = std::path::Path::new(&self.shown).join(rel);
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    }

    /// Epoch numbers with an epoch record, ascending.
    pub(crate) async fn epochs(&self) -> Result<Vec<u64>> {
        let mut out: Vec<u64> = self
            .list("epochs")
            .await?
            .iter()
            .filter_map(|(f, _)| {
                f.strip_prefix("epochs/epoch-")?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Checkpoint folders present (committed or not), ascending.
    pub(crate) async fn checkpoint_dirs(&self) -> Result<Vec<u64>> {
        let mut out: Vec<u64> = self
            .list("")
            .await?
            .iter()
            .filter_map(|(f, _)| f.strip_prefix("chk-")?.split('/').next()?.parse().ok())
            .collect();
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

/// The job directories (as stored) under a checkpoint directory.
pub(crate) async fn job_names(dir: &str) -> Result<Vec<String>> {
    if dir.starts_with("s3://") {
        let s = CheckpointStore::open_dir(dir, "")?;
        let prefix = s.root.trim_end_matches('/').to_string();
        let listing = s
            .store
            .list_with_delimiter(
                (!prefix.is_empty())
                    .then(|| ObjectPath::from(prefix.clone()))
                    .as_ref(),
            )
            .await
            .map_err(|e| store_err(format!("listing {dir}"), e))?;
        return Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect());
    }
    let path = dir.strip_prefix("file://").unwrap_or(dir);
    let entries = std::fs::read_dir(path).map_err(|source| Error::Io {
        context: format!("listing checkpoint directory {path}"),
        source,
    })?;
    let mut out: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    out.sort();
    Ok(out)
}

/// `chk-{n:010}`.
pub(crate) fn chk_dir(epoch: u64) -> String {
    format!("chk-{epoch:010}")
}

/// `epochs/epoch-{n:010}.json`.
pub(crate) fn epoch_file(epoch: u64) -> String {
    format!("epochs/epoch-{epoch:010}.json")
}

/// A job identity as a directory name: letters, digits, `-`, `_`, `.`; other bytes as `=XX`.
/// (Not `%XX`: object store paths encode `%` again, so a listing would not give back the
/// name, and a job such as `sink#2` could not find its checkpoints.)
pub(crate) fn sanitize(job: &str) -> String {
    let mut out = String::new();
    for ch in job.chars() {
        if ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.') {
            out.push(ch);
        } else {
            let mut buf = [0u8; 4];
            for b in ch.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("={b:02X}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// Every sanitized name survives an object store path unchanged.
    #[test]
    fn sanitized_names_are_object_store_safe() {
        for job in ["cheap#2", "my job", "a/b", "über", "x=y%z"] {
            let name = super::sanitize(job);
            let path = object_store::path::Path::from(format!("{name}/epochs"));
            assert_eq!(path.as_ref(), format!("{name}/epochs"), "{job}");
        }
    }
}
