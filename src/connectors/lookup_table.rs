//! The reference tables of lookup joins: [`FileTable`] implements the operator's
//! [`TableLoader`] for a table of the `filesystem` connector (JSON, CSV or Parquet, a file or a
//! directory, local or `s3://`). It reads the table with the table's own connector and format,
//! and fingerprints its files (local: name, size, modification time; `s3://`: key, size,
//! ETag or last-modified time) so the operator reloads it when one is added, removed or
//! changed.

use std::sync::Arc;
use std::time::SystemTime;

use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;

use super::object_store::{S3Url, is_object_url, list_object_metas, s3_store};
use super::{SourceEnv, open_source};
use crate::Result;
use crate::operators::TableLoader;
use crate::sql::catalog::Table;

/// A lookup join's reference table read through its connector.
#[derive(Debug)]
pub struct FileTable {
    table: Table,
}

/// The loader for `table`, the right side of a lookup join.
pub fn lookup_loader(table: &Table) -> Arc<dyn TableLoader> {
    Arc::new(FileTable {
        table: table.clone(),
    })
}

impl TableLoader for FileTable {
    fn name(&self) -> &str {
        &self.table.def.name
    }

    fn load(&self) -> BoxFuture<'_, Result<Vec<RecordBatch>>> {
        Box::pin(async move {
            let env = SourceEnv {
                metrics: Default::default(),
                push: Default::default(),
                parallelism: 1,
                checkpointing: false,
                restored: None,
                http: None,
            };
            let mut out = vec![];
            for mut shard in open_source(&self.table, &env)? {
                while let Some(b) = shard.next_batch().await? {
                    out.push(b);
                }
            }
            Ok(out)
        })
    }

    fn fingerprint(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let Some(path) = self.table.option("path") else {
                return Ok(vec![]);
            };
            if is_object_url(path) {
                let url = S3Url::parse(path)?;
                let store = s3_store(&self.table, &url)?;
                return Ok(list_object_metas(&store, &url)
                    .await?
                    .into_iter()
                    .map(|m| {
                        let version = m
                            .e_tag
                            .clone()
                            .unwrap_or_else(|| m.last_modified.to_rfc3339());
                        format!("{} {} {version}", m.location, m.size)
                    })
                    .collect());
            }
            Ok(local_fingerprint(path))
        })
    }
}

/// The files at a local path, with size and modification time.
fn local_fingerprint(path: &str) -> Vec<String> {
    let path = std::path::PathBuf::from(path.strip_prefix("file://").unwrap_or(path));
    let files = if path.is_dir() {
        let mut v: Vec<_> = std::fs::read_dir(&path)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    } else {
        vec![path]
    };
    files
        .into_iter()
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') || n.starts_with('_'))
        })
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let modified = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!(
                "{} {} {modified}",
                p.display(),
                meta.as_ref().map_or(0, |m| m.len())
            )
        })
        .collect()
}
