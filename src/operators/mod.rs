//! Operators: push-based, batch-at-a-time transformations of a dataflow.
//!
//! Each operator has two halves, as in DataFusion's `XExec` / `XStream`:
//! a *spec* (an [`OperatorSpec`], shared in an [`OpSpec`]: printable by EXPLAIN, the identity
//! of its state) and its runtime *state* (a `Box<dyn Operator>` made by
//! [`OperatorSpec::instantiate`]). Operators never touch channels: the runtime's task loop
//! owns the inputs, watermark merging and barrier alignment, and calls the hooks below.
//! Adding an operator means: its file here (the spec with `operator_spec!` or its own
//! `OperatorSpec` impl, the operator, unit tests), one arm in the planner, and a SQL test.

mod agg_columns;
mod distinct_table;
mod filter;
mod group_agg;
mod join;
mod limit;
mod lookup;
mod multiset;
mod normalize;
mod over;
mod over_updating;
pub mod pattern;
mod project;
mod session;
mod session_assign;
mod set_all;
mod temporal;
mod topn;
mod unnest;
mod watermark;
mod window;
mod window_assign;
pub mod window_spec;

pub use filter::FilterSpec;
pub use group_agg::{GroupAggSpec, GroupAggregate};
pub use join::{Expire, JoinKind, JoinMode, JoinSpec, StreamingJoin};
pub use limit::LimitSpec;
pub use lookup::{Loaded, LookupJoin, LookupSpec, TableLoader};
pub use multiset::{Multiset, MultisetAccumulator};
pub use normalize::NormalizeSpec;
pub use over::{Frame, OffsetFn, OverAggregate, OverOutput, OverSpec};
pub use over_updating::{UpdatingOver, UpdatingOverSpec, output_schema as over_updating_schema};
pub use project::ProjectSpec;
pub use session::SessionAggregate;
pub use session_assign::{SessionAssign, SessionAssignSpec};
pub use set_all::{SetAllKind, SetAllSpec};
pub use temporal::{TemporalJoin, TemporalJoinSpec};
pub use topn::{TopN, TopNSpec};
pub use unnest::UnnestSpec;
pub use watermark::{WatermarkGenSpec, WatermarkGenerator};
pub use window::SlicedWindowAggregate;
pub use window_assign::WindowAssignSpec;
pub use window_spec::{GroupOut, WindowAggSpec, WindowKind};

use std::fmt;

use datafusion::arrow::record_batch::RecordBatch;

use crate::Result;
use crate::message::{Message, Timestamp, Watermark};

/// Collects what an operator emits during one call: batches and watermarks for the next
/// operator, late rows for the late-data output, and a count of rows dropped as malformed.
#[derive(Debug, Default)]
pub struct Emitter {
    /// Messages for the downstream operator, in order.
    pub messages: Vec<Message>,
    /// Rows that arrived after every window they belong to had fired.
    pub late: Vec<RecordBatch>,
    /// Rows dropped because they could not be processed (e.g. a NULL event time).
    pub malformed: u64,
}

impl Emitter {
    /// Emit a batch downstream (empty batches are dropped).
    pub fn emit(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.messages.push(Message::Batch(batch));
        }
    }

    /// Emit a watermark downstream (only watermark generators do this themselves).
    pub fn emit_watermark(&mut self, wm: Timestamp) {
        self.messages
            .push(Message::Watermark(Watermark::EventTime(wm)));
    }

    /// Hand rows to the late-data output.
    pub fn late(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.late.push(batch);
        }
    }
}

pub use crate::state::StateSnapshot;

/// The operator contract. Only `process_batch` is required.
pub trait Operator: Send {
    /// Short name for errors and metrics.
    fn name(&self) -> &str;

    /// Process one batch from input `input` (0 for single-input operators).
    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Emitter) -> Result<()>;

    /// The input watermark advanced to `wm`: fire what is complete, free its state.
    /// The runtime forwards the watermark downstream afterwards.
    fn on_watermark(&mut self, _wm: Timestamp, _out: &mut Emitter) -> Result<()> {
        Ok(())
    }

    /// Whether the runtime should forward input watermarks after `on_watermark`.
    /// Watermark generators return false: they emit their own.
    fn forwards_watermarks(&self) -> bool {
        true
    }

    /// Bounded input finished (after a final watermark of +∞): flush everything.
    fn on_end(&mut self, _out: &mut Emitter) -> Result<()> {
        Ok(())
    }

    /// Snapshot state on an aligned checkpoint barrier; `None` for a stateless operator.
    /// Keyed tables carry the key group of each row (see [`crate::state`]), hashed into
    /// `key_groups` groups, so the state can be restored at another parallelism. The
    /// operator keeps running afterwards with the same state.
    fn snapshot(&mut self, _key_groups: usize) -> Result<Option<StateSnapshot>> {
        Ok(None)
    }

    /// Restore the state of a checkpoint: the rows of this instance's key groups, gathered
    /// from every instance that held them.
    fn restore(&mut self, _snapshot: StateSnapshot) -> Result<()> {
        Ok(())
    }

    /// Bytes of state held (for status and memory reports).
    fn state_size(&self) -> usize {
        0
    }
}

/// The static description of one operator, built by the planner: what EXPLAIN prints, what
/// the runtime instantiates in each task, and what identifies its state in a checkpoint.
/// Each operator's file implements it for its spec, so adding an operator touches its file,
/// one planner arm and its tests.
pub trait OperatorSpec: fmt::Display + fmt::Debug + Send + Sync + 'static {
    /// Build the runtime half.
    fn instantiate(&self) -> Result<Box<dyn Operator>>;

    /// Whether the operator keeps state across batches (and so must see all shards' rows).
    fn is_stateful(&self) -> bool {
        false
    }

    /// Whether the operator's state can be checkpointed yet (an error names what cannot).
    fn check_checkpointable(&self) -> Result<()> {
        Ok(())
    }

    /// The spec itself, for the planner to look inside (`OpSpec::downcast_ref`).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// One operator of a plan: a shared [`OperatorSpec`].
#[derive(Debug, Clone)]
pub struct OpSpec(std::sync::Arc<dyn OperatorSpec>);

impl OpSpec {
    /// Wrap an operator's spec.
    pub fn new(spec: impl OperatorSpec) -> Self {
        Self(std::sync::Arc::new(spec))
    }

    /// Whether the operator keeps state across batches (and so must see all shards' rows).
    pub fn is_stateful(&self) -> bool {
        self.0.is_stateful()
    }

    /// Whether the operator's state can be checkpointed yet (an error names what cannot).
    pub fn check_checkpointable(&self) -> Result<()> {
        self.0.check_checkpointable()
    }

    /// A stable identity for the operator's state: its printed definition (kind, keys,
    /// window, aggregates, output), so an unchanged operator keeps its id when the query
    /// around it changes.
    pub fn state_identity(&self) -> String {
        self.to_string()
    }

    /// Build the runtime half.
    pub fn instantiate(&self) -> Result<Box<dyn Operator>> {
        self.0.instantiate()
    }

    /// The spec, if it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref::<T>()
    }
}

impl fmt::Display for OpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `impl OperatorSpec` for a spec whose runtime half is built by `$make` from a clone of it.
macro_rules! operator_spec {
    ($spec:ty, stateful = $stateful:expr, $make:expr) => {
        impl $crate::operators::OperatorSpec for $spec {
            fn instantiate(&self) -> $crate::Result<Box<dyn $crate::operators::Operator>> {
                #[allow(clippy::redundant_closure_call)]
                Ok(Box::new(($make)(self.clone())?))
            }

            fn is_stateful(&self) -> bool {
                $stateful
            }

            fn as_any(&self) -> &dyn std::any::Any {
                self
            }
        }
    };
}
pub(crate) use operator_spec;

/// Evaluate a physical expression over a batch into an array of the batch's length.
pub(crate) fn eval(
    expr: &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    batch: &RecordBatch,
) -> Result<datafusion::arrow::array::ArrayRef> {
    Ok(expr.evaluate(batch)?.into_array(batch.num_rows())?)
}

/// Expressions as EXPLAIN prints them: `a@0, b@1`.
pub(crate) fn exprs_text(
    exprs: &[std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>],
) -> String {
    exprs
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A converter of whole rows of `schema` to Arrow's row format (and back).
pub(crate) fn whole_rows(
    schema: &datafusion::arrow::datatypes::Schema,
) -> Result<datafusion::arrow::row::RowConverter> {
    Ok(datafusion::arrow::row::RowConverter::new(
        schema
            .fields()
            .iter()
            .map(|f| datafusion::arrow::row::SortField::new(f.data_type().clone()))
            .collect(),
    )?)
}

/// Partition keys in Arrow's row format (all empty without PARTITION BY): the keys of an
/// operator's per-partition state.
pub(crate) struct PartitionKeys {
    exprs: Vec<std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
    conv: Option<datafusion::arrow::row::RowConverter>,
}

impl PartitionKeys {
    /// For `exprs` over rows of `schema`.
    pub(crate) fn new(
        exprs: &[std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>],
        schema: &datafusion::arrow::datatypes::Schema,
    ) -> Result<Self> {
        let conv = if exprs.is_empty() {
            None
        } else {
            let fields = exprs
                .iter()
                .map(|p| Ok(datafusion::arrow::row::SortField::new(p.data_type(schema)?)))
                .collect::<Result<Vec<_>>>()?;
            Some(datafusion::arrow::row::RowConverter::new(fields)?)
        };
        Ok(Self {
            exprs: exprs.to_vec(),
            conv,
        })
    }

    /// Each row's key.
    pub(crate) fn of(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let Some(conv) = &self.conv else {
            return Ok(vec![vec![]; batch.num_rows()]);
        };
        let rows = conv.convert_columns(&eval_all(&self.exprs, batch)?)?;
        Ok(rows.iter().map(|r| r.as_ref().to_vec()).collect())
    }

    /// The converter (None without PARTITION BY).
    pub(crate) fn converter(&self) -> Option<&datafusion::arrow::row::RowConverter> {
        self.conv.as_ref()
    }
}

/// A snapshot table `name` of whole input rows, each with the key group of its `keys`; None
/// without rows.
pub(crate) fn rows_table(
    name: &str,
    rows: &[RecordBatch],
    schema: &datafusion::arrow::datatypes::SchemaRef,
    keys: &[std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>],
    key_groups: usize,
) -> Result<Option<(String, RecordBatch)>> {
    if rows.is_empty() {
        return Ok(None);
    }
    let all = datafusion::arrow::compute::concat_batches(schema, rows)?;
    let key_cols = eval_all(keys, &all)?;
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let n = all.num_rows();
    Ok(Some((
        name.to_string(),
        crate::state::keyed_batch(&names, all.columns().to_vec(), &key_cols, n, key_groups)?,
    )))
}

/// The input rows of a [`rows_table`] (its first columns, in `schema`'s types).
pub(crate) fn table_rows(
    t: &RecordBatch,
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<RecordBatch> {
    let cols = t.columns()[..schema.fields().len()]
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| crate::format::cast_to(c, f.data_type()))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// The rows of `batch` to keep: those whose event time `late` says is behind go to the late
/// output, and those without an event time are counted as malformed.
pub(crate) fn drop_late(
    batch: RecordBatch,
    time_col: usize,
    late: impl Fn(Timestamp) -> bool,
    out: &mut Emitter,
) -> Result<RecordBatch> {
    use datafusion::arrow::array::{Array, BooleanArray};
    use datafusion::arrow::compute::filter_record_batch;
    let col = batch.column(time_col).clone();
    let times = time_millis(&col)?;
    let keep: BooleanArray = times
        .iter()
        .enumerate()
        .map(|(i, t)| Some(col.is_valid(i) && !late(*t)))
        .collect();
    if keep.true_count() == batch.num_rows() {
        return Ok(batch);
    }
    out.malformed += col.null_count() as u64;
    let behind: BooleanArray = times
        .iter()
        .enumerate()
        .map(|(i, t)| Some(col.is_valid(i) && late(*t)))
        .collect();
    let gone = filter_record_batch(&batch, &behind)?;
    if gone.num_rows() > 0 {
        out.late.push(gone);
    }
    Ok(filter_record_batch(&batch, &keep)?)
}

/// Several physical expressions over a batch (keys, partitions), each as an array.
pub(crate) fn eval_all(
    exprs: &[std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>],
    batch: &RecordBatch,
) -> Result<Vec<datafusion::arrow::array::ArrayRef>> {
    exprs.iter().map(|e| eval(e, batch)).collect()
}

/// The argument columns of each aggregate and its FILTER mask, evaluated over a batch once.
#[allow(clippy::type_complexity)]
pub(crate) fn aggregate_inputs(
    aggs: &[std::sync::Arc<datafusion::physical_expr::aggregate::AggregateFunctionExpr>],
    filters: &[Option<std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>>],
    batch: &RecordBatch,
) -> Result<(
    Vec<Vec<datafusion::arrow::array::ArrayRef>>,
    Vec<Option<datafusion::arrow::array::ArrayRef>>,
)> {
    let args = aggs
        .iter()
        .map(|a| {
            a.expressions()
                .iter()
                .map(|e| eval(e, batch))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    let filters = filters
        .iter()
        .map(|f| f.as_ref().map(|f| eval(f, batch)).transpose())
        .collect::<Result<Vec<_>>>()?;
    Ok((args, filters))
}

/// How many state columns each aggregate's partial state has (`state_fields`), in order: how
/// a snapshot's state columns split back into per-aggregate states.
pub(crate) fn state_widths(
    aggs: &[std::sync::Arc<datafusion::physical_expr::aggregate::AggregateFunctionExpr>],
) -> Result<Vec<usize>> {
    aggs.iter().map(|a| Ok(a.state_fields()?.len())).collect()
}

/// Split a batch by the distinct values of an event-time column (a `window_end`), in time
/// order; a batch with a single value is not copied.
pub(crate) fn split_by_time(
    batch: &RecordBatch,
    col: usize,
) -> Result<Vec<(Timestamp, RecordBatch)>> {
    let column = batch.column(col).clone();
    let times = time_millis(&column)?;
    let mut distinct: Vec<Timestamp> = times.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if let [only] = distinct.as_slice() {
        return Ok(vec![(*only, batch.clone())]);
    }
    distinct
        .into_iter()
        .map(|t| {
            let idx = datafusion::arrow::array::UInt32Array::from_iter_values(
                times
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| **x == t)
                    .map(|(i, _)| i as u32),
            );
            Ok((
                t,
                datafusion::arrow::compute::take_record_batch(batch, &idx)?,
            ))
        })
        .collect()
}

/// Event times of a timestamp (or BIGINT epoch-ms) column as milliseconds.
pub(crate) fn time_millis(
    col: &datafusion::arrow::array::ArrayRef,
) -> Result<std::borrow::Cow<'_, [i64]>> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{
        DataType, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
        TimestampNanosecondType, TimestampSecondType,
    };
    use std::borrow::Cow;
    let div = |values: &[i64], d: i64| Cow::Owned(values.iter().map(|v| v.div_euclid(d)).collect());
    Ok(match col.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => Cow::Borrowed(
            col.as_primitive::<TimestampMillisecondType>()
                .values()
                .as_ref(),
        ),
        DataType::Int64 => Cow::Borrowed(col.as_primitive::<Int64Type>().values().as_ref()),
        DataType::Timestamp(TimeUnit::Second, _) => Cow::Owned(
            col.as_primitive::<TimestampSecondType>()
                .values()
                .iter()
                .map(|v| v * 1000)
                .collect(),
        ),
        DataType::Timestamp(TimeUnit::Microsecond, _) => div(
            col.as_primitive::<TimestampMicrosecondType>().values(),
            1000,
        ),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => div(
            col.as_primitive::<TimestampNanosecondType>().values(),
            1_000_000,
        ),
        other => {
            return crate::plan_err!(
                "event-time column must be TIMESTAMP(3) or TIMESTAMP_LTZ(3), found {other}"
            );
        }
    })
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Small builders for operator unit tests.
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
    use datafusion::arrow::record_batch::RecordBatch;

    /// Rows as `a | b | c` strings (NULL as empty), sorted.
    /// The batches an emitter collected (watermarks and the rest dropped).
    pub fn emitted(out: crate::operators::Emitter) -> Vec<RecordBatch> {
        out.messages
            .into_iter()
            .filter_map(|m| match m {
                crate::message::Message::Batch(b) => Some(b),
                _ => None,
            })
            .collect()
    }

    pub fn rows(batches: &[RecordBatch]) -> Vec<String> {
        use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
        let opts = FormatOptions::default();
        let mut out = vec![];
        for b in batches {
            let fmts: Vec<_> = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
                .collect();
            for r in 0..b.num_rows() {
                out.push(
                    fmts.iter()
                        .map(|f| f.value(r).to_string())
                        .collect::<Vec<_>>()
                        .join(" | "),
                );
            }
        }
        out.sort();
        out
    }

    /// One BIGINT column `v`.
    pub fn int_batch(v: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(v.to_vec()))]).unwrap()
    }

    /// Schema `(ts TIMESTAMP(3), k BIGINT, v BIGINT)`.
    pub fn tkv_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
        ]))
    }

    /// The first operator spec of the stateful stage of `query` over table `t (ts, k, v)` with
    /// a 1 s watermark delay, and the stage's exchange keys.
    pub async fn stage_spec(
        query: &str,
    ) -> (
        crate::operators::OpSpec,
        Vec<Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
        Vec<crate::operators::OpSpec>,
    ) {
        let engine = crate::Engine::new();
        engine
            .execute(
                "CREATE TABLE t (ts TIMESTAMP(3), k BIGINT, v BIGINT, \
                 WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'push')",
            )
            .await
            .unwrap();
        let stmts = crate::sql::parse_sql(query).unwrap();
        let pipeline = engine.plan(&stmts[0]).await.unwrap();
        let mut flow = &pipeline.root;
        loop {
            match flow {
                crate::planner::Flow::Stage(s) => {
                    if let Some(op) = s.ops.iter().find(|o| o.is_stateful()) {
                        let crate::planner::Flow::Source { ops, .. } = &s.inputs[0].flow else {
                            panic!("the stateful stage of {query} does not read the source");
                        };
                        return (op.clone(), s.inputs[0].keys.clone(), ops.clone());
                    }
                    flow = &s.inputs[0].flow;
                }
                crate::planner::Flow::Source { .. } => panic!("no stateful stage in {query}"),
            }
        }
    }

    /// Run `spec` over `before`, snapshot at parallelism `p1`, restore at `p2`, run `after`,
    /// then the end of input: the output rows (sorted), before and after the restore together.
    /// `p2 = 0`: no snapshot, the same instances run on (the reference).
    pub fn rescaled_run(
        spec: &crate::operators::OpSpec,
        keys: &[Arc<dyn datafusion::physical_expr::PhysicalExpr>],
        before: &[(RecordBatch, i64)],
        after: &[(RecordBatch, i64)],
        p1: usize,
        p2: usize,
    ) -> Vec<String> {
        use crate::operators::Emitter;
        use crate::state::{KeyGroupRange, merge_pieces};
        let kg = 128;
        let mut out = Emitter::default();
        let feed = |ops: &mut Vec<Box<dyn crate::operators::Operator>>,
                    input: &[(RecordBatch, i64)],
                    out: &mut Emitter| {
            let p = ops.len();
            for (b, wm) in input {
                let parts =
                    crate::runtime::exchange::partition_batch(b, keys, p, kg, &mut vec![]).unwrap();
                for (op, part) in ops.iter_mut().zip(parts) {
                    if let Some(part) = part {
                        op.process_batch(0, part, out).unwrap();
                    }
                    op.on_watermark(*wm, out).unwrap();
                }
            }
        };
        let mut first: Vec<_> = (0..p1).map(|_| spec.instantiate().unwrap()).collect();
        feed(&mut first, before, &mut out);
        let finish = |ops: &mut Vec<Box<dyn crate::operators::Operator>>, mut out: Emitter| {
            for op in ops.iter_mut() {
                op.on_watermark(i64::MAX, &mut out).unwrap();
                op.on_end(&mut out).unwrap();
            }
            rows(&emitted(out))
        };
        if p2 == 0 {
            feed(&mut first, after, &mut out);
            return finish(&mut first, out);
        }
        let pieces: Vec<(KeyGroupRange, crate::state::StateSnapshot)> = first
            .iter_mut()
            .enumerate()
            .filter_map(|(i, op)| {
                let snap = op.snapshot(kg).unwrap()?;
                let range = if p1 == 1 {
                    KeyGroupRange::all(kg)
                } else {
                    KeyGroupRange::of(i, p1, kg)
                };
                // Through the IPC encoding, as a checkpoint stores it.
                let tables = snap
                    .tables
                    .iter()
                    .map(|(n, b)| {
                        let bytes = crate::state::to_ipc(std::slice::from_ref(b)).unwrap();
                        (
                            n.clone(),
                            crate::state::from_ipc(&bytes, n).unwrap().unwrap(),
                        )
                    })
                    .collect();
                Some((
                    range,
                    crate::state::StateSnapshot {
                        tables,
                        meta: snap.meta,
                    },
                ))
            })
            .collect();
        drop(first);
        let mut second: Vec<_> = (0..p2).map(|_| spec.instantiate().unwrap()).collect();
        for (i, op) in second.iter_mut().enumerate() {
            let range = if p2 == 1 {
                KeyGroupRange::all(kg)
            } else {
                KeyGroupRange::of(i, p2, kg)
            };
            if let Some(s) = merge_pieces(&pieces, range).unwrap() {
                op.restore(s).unwrap();
            }
        }
        feed(&mut second, after, &mut out);
        finish(&mut second, out)
    }

    /// [`rescaled_run`] restored at parallelism 1 → 1, 2 → 3 and 3 → 1 gives the rows of an
    /// uninterrupted run (returned).
    pub fn assert_rescales_alike(
        spec: &crate::operators::OpSpec,
        keys: &[Arc<dyn datafusion::physical_expr::PhysicalExpr>],
        before: &[(RecordBatch, i64)],
        after: &[(RecordBatch, i64)],
    ) -> Vec<String> {
        let straight = rescaled_run(spec, keys, before, after, 1, 0);
        for (p1, p2) in [(1, 1), (2, 3), (3, 1)] {
            let got = rescaled_run(spec, keys, before, after, p1, p2);
            assert_eq!(got, straight, "{p1} -> {p2}");
        }
        straight
    }

    /// `tkv` rows through a source's per-shard operators (computed columns, watermark
    /// generator), as the stage would receive them.
    pub fn through(
        source_ops: &[crate::operators::OpSpec],
        rows: &[(i64, i64, i64)],
    ) -> RecordBatch {
        let mut chain = crate::runtime::Chain::new(source_ops).unwrap();
        let out = chain
            .push(0, crate::message::Message::Batch(tkv(rows)))
            .unwrap();
        let batches: Vec<RecordBatch> = out
            .into_iter()
            .filter_map(|m| match m {
                crate::message::Message::Batch(b) => Some(b),
                _ => None,
            })
            .collect();
        datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
    }

    /// 200 rows of `(ts ms, k, v)` from `from` on, slightly out of order, five keys, through
    /// a source's per-shard operators; with `from` as the watermark after them.
    pub fn varied_tkv(source: &[crate::operators::OpSpec], from: i64) -> (RecordBatch, i64) {
        let rows: Vec<(i64, i64, i64)> = (0..200)
            .map(|i| {
                (
                    from + i * 10 - (i % 7) * 3,
                    (i * 13) % 5,
                    (i * 7919 + from) % 1000,
                )
            })
            .collect();
        (through(source, &rows), from)
    }

    /// Rows of `(ts ms, k, v)`.
    pub fn tkv(rows: &[(i64, i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            tkv_schema(),
            vec![
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }
}
