//! Lookup (processing-time temporal) join: `JOIN products FOR SYSTEM_TIME AS OF o.proc_time AS p
//! ON ...` against a reference table read from files (JSON, CSV or Parquet, a file or a
//! directory), as the seeds keep product tables in S3.
//!
//! The table is read whole by the table's own connector and format, on a loader thread, and
//! indexed with the join's hash index ([`super::join::Side`]); every instance of the operator
//! shares that one copy. Each stream batch probes it (`interleave`/`take`, the condition
//! evaluated on whole columns) and is not stored: the output is append-only. With
//! `'lookup.join.cache.ttl'` (Flink's option) the loader checks the files that often and, when
//! one was added, removed or changed, reads the table again and swaps it in; batches joined
//! before the swap are not revised, as in Flink.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use datafusion::arrow::record_batch::RecordBatch;

use super::join::{JoinSpec, Side, StreamingJoin};
use super::{Emitter, Operator};
use crate::connectors::{SourceEnv, open_source};
use crate::sql::catalog::Table;
use crate::{Error, Result};

/// The static description of a lookup join.
#[derive(Debug, Clone)]
pub struct LookupSpec {
    /// The stream (left) ⋈ reference table (right) join: keys, condition, schemas.
    pub join: JoinSpec,
    /// The reference table.
    pub table: Table,
    /// LEFT JOIN: stream rows without a match are kept, padded with NULLs.
    pub outer: bool,
    /// How often to check the files for changes (None: read once).
    pub reload: Option<Duration>,
    /// The loaded table, shared by every instance of this operator.
    pub shared: Arc<Mutex<Option<Arc<Loaded>>>>,
}

impl fmt::Display for LookupSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = |side: usize| {
            self.join.keys[side]
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            f,
            "LookupJoin: {} {} on [{}] = [{}]",
            if self.outer { "LEFT" } else { "INNER" },
            self.table.def.name,
            keys(0),
            keys(1)
        )?;
        if let Some(c) = &self.join.filter {
            write!(f, " if {c}")?;
        }
        match self.reload {
            Some(d) => write!(
                f,
                "; files checked every {} s and reloaded when changed",
                d.as_secs_f64()
            ),
            None => write!(f, "; read once"),
        }
    }
}

/// One version of the reference table.
pub struct Loaded {
    store: Side,
    /// What the files looked like when read (name, size, modification time).
    fingerprint: Vec<(String, u64, Option<SystemTime>)>,
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Loaded({} rows)", self.store.rows())
    }
}

/// The running lookup join.
pub struct LookupJoin {
    spec: LookupSpec,
    join: StreamingJoin,
    current: Option<Arc<Loaded>>,
}

impl LookupJoin {
    /// Instance of a lookup join (the table is read on the first batch).
    pub fn new(spec: LookupSpec) -> Self {
        let join = StreamingJoin::new(spec.join.clone());
        Self {
            spec,
            join,
            current: None,
        }
    }

    /// The current version, reading the table if nobody has yet.
    fn table(&mut self) -> Result<Arc<Loaded>> {
        let mut shared = self
            .spec
            .shared
            .lock()
            .map_err(|_| exec("the lookup table lock is poisoned"))?;
        if let Some(t) = shared.as_ref() {
            return Ok(t.clone());
        }
        let loaded = Arc::new(load(&self.spec, &self.join)?);
        *shared = Some(loaded.clone());
        if let Some(every) = self.spec.reload {
            spawn_reloader(self.spec.clone(), self.join.spec().clone(), every);
        }
        Ok(loaded)
    }
}

fn exec(msg: &str) -> Error {
    Error::Execution {
        operator: "lookup join".into(),
        message: msg.into(),
    }
}

/// The files of a filesystem table, with size and modification time.
fn fingerprint(table: &Table) -> Vec<(String, u64, Option<SystemTime>)> {
    let Some(path) = table.option("path") else {
        return vec![];
    };
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
            (
                p.display().to_string(),
                meta.as_ref().map_or(0, |m| m.len()),
                meta.and_then(|m| m.modified().ok()),
            )
        })
        .collect()
}

/// Read the whole table with its connector, on a thread of its own (the operator's caller is
/// an async task; the table's readers are async).
fn load(spec: &LookupSpec, join: &StreamingJoin) -> Result<Loaded> {
    let table = spec.table.clone();
    let fingerprint = fingerprint(&table);
    let batches = std::thread::scope(|s| {
        s.spawn(move || -> Result<Vec<RecordBatch>> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Io {
                    context: "starting the lookup loader".into(),
                    source: e,
                })?;
            rt.block_on(async move {
                let env = SourceEnv {
                    metrics: Default::default(),
                    push: Default::default(),
                    parallelism: 1,
                    checkpointing: false,
                    restored: None,
                };
                let mut out = vec![];
                for mut shard in open_source(&table, &env)? {
                    while let Some(b) = shard.next_batch().await? {
                        out.push(b);
                    }
                }
                Ok(out)
            })
        })
        .join()
        .map_err(|_| exec("the lookup loader panicked"))?
    })?;
    let batches = batches
        .into_iter()
        .map(|b| project_to(&b, &spec.join.inputs[1]))
        .collect::<Result<Vec<_>>>()?;
    Ok(Loaded {
        store: Side::build(join, 1, batches)?,
        fingerprint,
    })
}

/// The table's rows in the join's right-hand schema (the table's full schema, same order).
fn project_to(
    b: &RecordBatch,
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<RecordBatch> {
    if b.schema().fields().len() == schema.fields().len() {
        return Ok(RecordBatch::try_new(schema.clone(), b.columns().to_vec())?);
    }
    Err(exec(
        "the lookup table's rows do not have the table's columns",
    ))
}

fn spawn_reloader(spec: LookupSpec, join: JoinSpec, every: Duration) {
    let weak = Arc::downgrade(&spec.shared);
    std::thread::spawn(move || {
        let join = StreamingJoin::new(join);
        loop {
            std::thread::sleep(every);
            // The job is gone once nobody holds the shared slot.
            let Some(shared) = weak.upgrade() else { return };
            let old = shared.lock().ok().and_then(|g| g.clone());
            let now = fingerprint(&spec.table);
            if old.as_ref().is_some_and(|o| o.fingerprint == now) {
                continue;
            }
            match load(&spec, &join) {
                Ok(t) => {
                    if let Ok(mut g) = shared.lock() {
                        *g = Some(Arc::new(t));
                    }
                }
                // A half-written file: try again next time, keep serving the old version.
                Err(e) => eprintln!("weir: reloading lookup table {}: {e}", spec.table.def.name),
            }
        }
    });
}

impl Operator for LookupJoin {
    fn name(&self) -> &str {
        "lookup join"
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let table = self.table()?;
        let result = self.join.lookup(&table.store, &batch, self.spec.outer, out);
        self.current = Some(table);
        result
    }

    fn state_size(&self) -> usize {
        self.current.as_ref().map_or(0, |t| t.store.bytes())
    }
}
