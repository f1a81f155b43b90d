//! The filesystem source: `'path'` is a file or a directory; each file is a shard with its own
//! watermark. Files and directories whose names start with `.` or `_` (in-progress and
//! metadata files) are skipped; directories are read recursively in name order.
//! `'format'`: `json` (JSON lines), `csv`, `parquet`.

use std::path::{Path, PathBuf};

use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;

use super::{SourceEnv, SourceShard};
use crate::format::csv::CsvReader;
use crate::format::json::JsonLinesReader;
use crate::format::parquet::ParquetReader;
use crate::format::ErrorPolicy;
use crate::sql::catalog::Table;
use crate::{Error, Result, not_supported, plan_err};

enum Reader {
    Json(JsonLinesReader),
    Csv(CsvReader),
    Parquet(ParquetReader),
}

/// One file.
pub struct FileShard {
    path: PathBuf,
    reader: Reader,
}

impl SourceShard for FileShard {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<RecordBatch>>> {
        Box::pin(async move {
            match &mut self.reader {
                Reader::Json(r) => r.next_batch(),
                Reader::Csv(r) => r.next_batch(),
                Reader::Parquet(r) => r.next_batch(),
            }
        })
    }
}

/// All data files under `path`, sorted, skipping hidden (`.`) and metadata (`_`) entries.
pub fn list_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io { context: format!("path {}", path.display()), source })?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io { context: format!("listing {}", dir.display()), source })?;
        for e in entries {
            let e = e.map_err(|source| Error::Io { context: format!("listing {}", dir.display()), source })?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let p = e.path();
            if p.is_dir() { dirs.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    Ok(out)
}

/// Open one shard per file.
pub fn open(table: &Table, env: &SourceEnv) -> Result<Vec<Box<dyn SourceShard>>> {
    let Some(path) = table.option("path") else {
        return plan_err!("table {}: the filesystem connector needs a 'path'", table.def.name);
    };
    if path.starts_with("s3://") {
        return not_supported!("s3:// paths (object storage comes with the Kinesis/S3 connectors)");
    }
    let path = path.strip_prefix("file://").unwrap_or(path);
    if !table.def.partitioned_by.is_empty() {
        return not_supported!("reading a PARTITIONED BY table (partition values from directory names)");
    }
    let format = table.option("format").unwrap_or("json").to_ascii_lowercase();
    let files = list_files(Path::new(path))?;
    let mut shards: Vec<Box<dyn SourceShard>> = Vec::with_capacity(files.len());
    for f in files {
        let reader = match format.as_str() {
            "json" => {
                let policy = ErrorPolicy::from_table(table, "json", env.metrics.clone())?;
                Reader::Json(JsonLinesReader::new(f.clone(), table.schema.clone(), table.declared_schema(), policy)?)
            }
            "csv" => {
                let policy = ErrorPolicy::from_table(table, "csv", env.metrics.clone())?;
                let delim = table.option("csv.field-delimiter").unwrap_or(",");
                let delim = match delim {
                    "\\t" => b'\t',
                    d if d.len() == 1 => d.as_bytes()[0],
                    d => return plan_err!("'csv.field-delimiter' must be one character, not '{d}'"),
                };
                Reader::Csv(CsvReader::new(f.clone(), table.schema.clone(), delim, policy)?)
            }
            "parquet" => Reader::Parquet(ParquetReader::new(f.clone(), table.schema.clone())),
            other => return not_supported!("format '{other}' (json, csv, parquet)"),
        };
        shards.push(Box::new(FileShard { path: f, reader }));
    }
    Ok(shards)
}
