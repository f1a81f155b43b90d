//! Formats: decoding JSON lines, CSV and Parquet into Arrow batches, and encoding batches back.
//!
//! Decoding is batch-at-a-time (arrow-json's and arrow-csv's vectorized decoders, Parquet's
//! reader), and one file is decoded by several cores at once while it stays one split: blocks
//! of lines ([`lines`]) or row groups ([`parquet`]), handed on in file order. A record that
//! cannot be decoded is isolated (only the bad lines of its block are told apart, see
//! [`lines`]), counted, reported on stderr (the first few, with file and line), optionally
//! written to a dead-letter file, and skipped — or, when the table's options say so, fails the
//! job with a clear message.

pub mod avro;
pub mod csv;
pub(crate) mod debezium;
pub mod json;
pub mod lines;
pub mod messages;
pub mod parquet;
pub mod writer;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::connectors::bool_option;
use crate::runtime::JobMetrics;
use crate::sql::catalog::Table;
use crate::{Error, Result};

/// `column` as `data_type`: itself when the type already matches, else cast.
pub fn cast_to(
    column: &datafusion::arrow::array::ArrayRef,
    data_type: &datafusion::arrow::datatypes::DataType,
) -> Result<datafusion::arrow::array::ArrayRef> {
    if column.data_type() == data_type {
        Ok(column.clone())
    } else {
        Ok(datafusion::arrow::compute::cast(column, data_type)?)
    }
}

/// The columns of a table a job reads ([`Table::read`]): decoders decode only those, and the
/// batches they hand on hold NULL in the others.
#[derive(Clone)]
pub(crate) struct ReadColumns {
    /// Flag per column of the full schema.
    read: Arc<[bool]>,
}

impl ReadColumns {
    /// The columns `table` is read for, or None when all are.
    pub(crate) fn of(table: &Table) -> Option<Self> {
        let read = table.read.clone()?;
        (read.len() == table.physical.fields().len() && read.iter().any(|r| *r))
            .then_some(Self { read })
    }

    /// Whether column `i` of the full schema is decoded.
    pub(crate) fn reads(&self, i: usize) -> bool {
        self.read.get(i).copied().unwrap_or(true)
    }

    /// `schema` cut to the columns decoded (in order).
    pub(crate) fn project(
        &self,
        schema: &datafusion::arrow::datatypes::SchemaRef,
    ) -> datafusion::arrow::datatypes::SchemaRef {
        let fields: Vec<_> = (schema.fields().iter().enumerate())
            .filter(|(i, _)| self.reads(*i))
            .map(|(_, f)| f.clone())
            .collect();
        Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
    }

    /// A decoded batch (the columns read, in order) as a batch of `schema`, NULL elsewhere.
    pub(crate) fn widen(
        &self,
        schema: &datafusion::arrow::datatypes::SchemaRef,
        batch: &datafusion::arrow::record_batch::RecordBatch,
    ) -> Result<datafusion::arrow::record_batch::RecordBatch> {
        let mut decoded = batch.columns().iter();
        let rows = batch.num_rows();
        let columns = (schema.fields().iter().enumerate())
            .map(|(i, f)| match self.reads(i) {
                true => decoded.next().cloned().ok_or_else(|| Error::Execution {
                    operator: "source".into(),
                    message: "internal: a decoded batch lacks a column it reads".into(),
                }),
                false => Ok(datafusion::arrow::array::new_null_array(
                    f.data_type(),
                    rows,
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        let options =
            datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(
            datafusion::arrow::record_batch::RecordBatch::try_new_with_options(
                schema.clone(),
                columns,
                &options,
            )?,
        )
    }
}

/// How many malformed records are printed on stderr per job.
const REPORTED: u64 = 5;

/// Malformed records' (location, error), gathered instead of reported.
pub(crate) type Collected = Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// What to do with malformed records.
#[derive(Clone)]
pub struct ErrorPolicy {
    /// Skip (and count) records that fail to decode; false fails the job.
    pub skip_parse_errors: bool,
    /// Fail the job when a declared field is missing; false skips the record.
    pub fail_on_missing_field: bool,
    /// Raw malformed records are appended here, one per line with its location and error.
    pub dead_letter: Option<PathBuf>,
    /// Counters.
    pub metrics: Arc<JobMetrics>,
    reported: Arc<AtomicU64>,
    /// Where malformed records' (location, error) go instead of stderr (`weir serve` answers
    /// a POST with them).
    collected: Option<Collected>,
}

impl ErrorPolicy {
    /// The policy from a table's options (`'<format>.ignore-parse-errors'`,
    /// `'json.fail-on-missing-field'`, `'dead-letter.path'`).
    pub fn from_table(table: &Table, format: &str, metrics: Arc<JobMetrics>) -> Result<Self> {
        Ok(Self {
            skip_parse_errors: bool_option(table, &format!("{format}.ignore-parse-errors"), true)?,
            fail_on_missing_field: bool_option(
                table,
                &format!("{format}.fail-on-missing-field"),
                false,
            )?,
            dead_letter: table.option("dead-letter.path").map(PathBuf::from),
            metrics,
            reported: Arc::new(AtomicU64::new(0)),
            collected: None,
        })
    }

    /// A policy that skips everything (tests, benchmarks).
    pub fn lenient(metrics: Arc<JobMetrics>) -> Self {
        Self {
            skip_parse_errors: true,
            fail_on_missing_field: false,
            dead_letter: None,
            metrics,
            reported: Arc::new(AtomicU64::new(0)),
            collected: None,
        }
    }

    /// Malformed records' locations and errors go to `into` rather than stderr.
    pub(crate) fn collecting(mut self, into: Collected) -> Self {
        self.collected = Some(into);
        self
    }

    /// Handle one malformed record: count, report, dead-letter, or fail.
    pub fn malformed(
        &self,
        location: &str,
        message: &str,
        raw: &[u8],
        missing_field: bool,
    ) -> Result<()> {
        let fail = if missing_field {
            self.fail_on_missing_field
        } else {
            !self.skip_parse_errors
        };
        if fail {
            let hint = if missing_field {
                "set 'json.fail-on-missing-field' = 'false' to skip such records"
            } else {
                "remove 'ignore-parse-errors' = 'false' to skip such records"
            };
            return Err(Error::Malformed {
                location: location.into(),
                message: format!("{message} ({hint})"),
            });
        }
        JobMetrics::add(&self.metrics.malformed, 1);
        if let Some(c) = &self.collected {
            if let Ok(mut c) = c.lock() {
                c.push((location.to_string(), message.to_string()));
            }
        } else if self.reported.fetch_add(1, Ordering::Relaxed) < REPORTED {
            eprintln!("weir: skipped malformed record at {location}: {message}");
        }
        if let Some(path) = &self.dead_letter {
            let line = serde_json::json!({
                "location": location,
                "error": message,
                "record": String::from_utf8_lossy(raw),
            });
            append_dead_letter(path, line.to_string().as_bytes())?;
        }
        Ok(())
    }
}

/// Append `line` (and a newline) to the dead-letter file at `path`, creating it.
pub(crate) fn append_dead_letter(path: &std::path::Path, line: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| Error::Io {
            context: format!("opening dead-letter file {}", path.display()),
            source,
        })?;
    f.write_all(line)
        .and_then(|_| f.write_all(b"\n"))
        .map_err(|source| Error::Io {
            context: format!("writing dead-letter file {}", path.display()),
            source,
        })
}
