//! Lookup (processing-time temporal) join: `JOIN products FOR SYSTEM_TIME AS OF o.proc_time AS p
//! ON ...` against a reference table read from files (JSON, CSV or Parquet, a file or a
//! directory, local or `s3://`), as the seeds keep product tables in S3.
//!
//! The table is read whole through a [`TableLoader`] (which `connectors/` implements for its
//! tables, so this module knows nothing of connectors or SQL) and indexed with the join's hash
//! index ([`super::join::Side`]); every instance of the operator shares that one copy. The
//! first batch waits for it: on the job's multi-threaded runtime the wait is announced with
//! `block_in_place`, so the worker's other tasks move to another thread instead of stalling.
//! Each stream batch probes the table (`interleave`/`take`, the condition evaluated on whole
//! columns) and is not stored: the output is append-only. With `'lookup.join.cache.ttl'`
//! (Flink's option) a reloader thread asks the loader for the files' fingerprint that often
//! and, when one was added, removed or changed, reads the table again and swaps it in;
//! batches joined before the swap are not revised, as in Flink.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;

use super::join::{JoinSpec, Side, StreamingJoin};
use super::{Emitter, Operator};
use crate::{Error, Result};

/// Reads a lookup join's reference table (implemented in `connectors/`).
pub trait TableLoader: Send + Sync + fmt::Debug {
    /// The table's name, for messages.
    fn name(&self) -> &str;
    /// Every row of the table, in the table's schema.
    fn load(&self) -> BoxFuture<'_, Result<Vec<RecordBatch>>>;
    /// What the table's files look like now (names, sizes, versions); the table is read
    /// again when this changes.
    fn fingerprint(&self) -> BoxFuture<'_, Result<Vec<String>>>;
}

/// The static description of a lookup join.
#[derive(Debug, Clone)]
pub struct LookupSpec {
    /// The stream (left) ⋈ reference table (right) join: keys, condition, schemas.
    pub join: JoinSpec,
    /// Reads the reference table.
    pub loader: Arc<dyn TableLoader>,
    /// LEFT JOIN: stream rows without a match are kept, padded with NULLs.
    pub outer: bool,
    /// How often to check the files for changes (None: read once).
    pub reload: Option<Duration>,
    /// The loaded table, shared by every instance of this operator.
    pub shared: Arc<Mutex<Option<Arc<Loaded>>>>,
}

impl fmt::Display for LookupSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = |side: usize| super::exprs_text(&self.join.keys[side]);
        write!(
            f,
            "LookupJoin: {} {} on [{}] = [{}]",
            if self.outer { "LEFT" } else { "INNER" },
            self.loader.name(),
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
    /// What the files looked like when read ([`TableLoader::fingerprint`]).
    fingerprint: Vec<String>,
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

/// Run a future to completion from synchronous operator code: on a multi-threaded tokio
/// runtime in place (`block_in_place` hands the worker's other tasks to another thread),
/// elsewhere on a thread with a runtime of its own.
fn wait_for<T: Send>(fut: BoxFuture<'_, Result<T>>) -> Result<T> {
    if let Ok(handle) = tokio::runtime::Handle::try_current()
        && handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
    {
        return tokio::task::block_in_place(|| handle.block_on(fut));
    }
    std::thread::scope(|s| {
        s.spawn(move || -> Result<T> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Io {
                    context: "starting the lookup loader".into(),
                    source: e,
                })?
                .block_on(fut)
        })
        .join()
        .map_err(|_| exec("the lookup loader panicked"))?
    })
}

/// Read the whole table and index it.
fn load(spec: &LookupSpec, join: &StreamingJoin) -> Result<Loaded> {
    let fingerprint = wait_for(spec.loader.fingerprint())?;
    let batches = wait_for(spec.loader.load())?;
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
            let now = match wait_for(spec.loader.fingerprint()) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("weir: checking lookup table {}: {e}", spec.loader.name());
                    continue;
                }
            };
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
                Err(e) => eprintln!("weir: reloading lookup table {}: {e}", spec.loader.name()),
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

super::operator_spec!(LookupSpec, stateful = false, |s| Ok::<_, crate::Error>(
    LookupJoin::new(s)
));
