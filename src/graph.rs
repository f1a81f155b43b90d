//! The dataflow graph a query is planned into: sources, stages of operators, the exchanges
//! between them, and the sink. The planner builds it and the runtime runs it; neither
//! depends on the other (the runtime knows only this module).
//!
//! ```text
//!   Source bid (shards) ──hash(auction)──► Stage [window aggregate] ──┐
//!                                                                     ├─► Stage [join] ─► sink
//!   Source bid (shards) ──hash(price)──────────────────────────────────┘
//! ```
//!
//! A [`Flow`] is a tree: a source's shards each run the stateless operators placed on them; a
//! [`Stage`] runs its operators in `parallelism` instances, each fed by one or two inputs.
//! An input with key expressions is hash-partitioned over the instances (the exchange); an
//! input without keys is gathered into a single instance.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use crate::operators::OpSpec;
use crate::sql::catalog::Table;

/// A planned continuous query: the dataflow graph and where its rows go.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The graph; its output goes to the sink.
    pub root: Flow,
    /// Schema of the rows the pipeline produces (without the changelog column).
    pub schema: SchemaRef,
    /// Whether the output is a changelog (rows carry an op column, see [`crate::changelog`]).
    pub updating: bool,
    /// `INSERT INTO` target; `None` for a SELECT whose rows go to the caller.
    pub sink: Option<Table>,
    /// Instances of each keyed stage.
    pub parallelism: usize,
    /// A statement set's other INSERTs, run in the same job: each flow with the sink input
    /// (port) its rows go to. The job's sink then routes rows by port.
    pub also: Vec<(usize, Flow)>,
}

impl Pipeline {
    /// Every flow of the job: the root (into port 0), then a statement set's others.
    pub fn roots(&self) -> Vec<(usize, &Flow)> {
        std::iter::once((0, &self.root))
            .chain(self.also.iter().map(|(p, f)| (*p, f)))
            .collect()
    }

    /// The source tables of every flow, each once (a table read by several is read once), with
    /// the columns read by any of its scans ([`Table::read`]: every column if one scan reads all).
    pub fn sources(&self) -> Vec<Table> {
        let mut out: Vec<Table> = vec![];
        for t in self.roots().into_iter().flat_map(|(_, f)| f.sources()) {
            let Some(seen) = out.iter_mut().find(|s| s.def.name == t.def.name) else {
                out.push(t.clone());
                continue;
            };
            seen.read = match (&seen.read, &t.read) {
                (Some(a), Some(b)) if a.len() == b.len() => {
                    Some(a.iter().zip(b.iter()).map(|(x, y)| *x || *y).collect())
                }
                _ => None,
            };
        }
        out
    }

    /// Whether every operator's state can be checkpointed.
    pub fn check_checkpointable(&self) -> crate::Result<()> {
        self.roots()
            .into_iter()
            .try_for_each(|(_, f)| f.check_checkpointable())
    }
}

/// A node of the dataflow graph.
// A plan node, built once per job: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Flow {
    /// A source table: each shard runs `ops` (computed columns, the watermark generator and
    /// the stateless operators that follow it).
    Source {
        /// The table (its connector decides the shards).
        table: Table,
        /// Operators run in every shard's task.
        ops: Vec<OpSpec>,
    },
    /// Stateful operators (and what follows them), fed through exchanges.
    Stage(Box<Stage>),
}

/// Operators run in one or more instances; the first one sees which input a batch came from.
#[derive(Debug, Clone)]
pub struct Stage {
    /// One input (most operators) or two (joins: left, right).
    pub inputs: Vec<Input>,
    /// The operators, in order.
    pub ops: Vec<OpSpec>,
}

/// One input of a stage and how it is partitioned over the stage's instances.
#[derive(Debug, Clone)]
pub struct Input {
    /// What feeds this input.
    pub flow: Flow,
    /// Hash keys (over the input's rows). Empty with [`Exchange::Hash`]: the stage runs as a
    /// single instance.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// How rows are spread over the stage's instances.
    pub exchange: Exchange,
}

/// How an input's rows reach a stage's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Exchange {
    /// By a hash of the keys (all rows to one instance when there are no keys).
    #[default]
    Hash,
    /// Every row to every instance: the small side of a join (one row per window).
    Broadcast,
    /// Rows stay with the instance their producer feeds (producer i → instance i mod P): the
    /// large side of a join whose other side is broadcast.
    Forward,
}

impl Stage {
    /// Instances this stage runs with under job parallelism `p`: one unless every input
    /// is keyed.
    pub fn parallelism(&self, p: usize) -> usize {
        if self
            .inputs
            .iter()
            .all(|i| i.exchange != Exchange::Hash || !i.keys.is_empty())
        {
            p.max(1)
        } else {
            1
        }
    }
}

impl Flow {
    /// Operators applied last (where a stateless operator can be appended).
    pub fn ops_mut(&mut self) -> &mut Vec<OpSpec> {
        match self {
            Flow::Source { ops, .. } => ops,
            Flow::Stage(s) => &mut s.ops,
        }
    }

    /// Whether every operator's state can be checkpointed (an error names the first that
    /// cannot).
    pub fn check_checkpointable(&self) -> crate::Result<()> {
        match self {
            Flow::Source { ops, .. } => ops.iter().try_for_each(OpSpec::check_checkpointable),
            Flow::Stage(s) => {
                // A broadcast join side is snapshotted whole (see `JoinSpec::broadcast`).
                s.ops.iter().try_for_each(OpSpec::check_checkpointable)?;
                s.inputs
                    .iter()
                    .try_for_each(|i| i.flow.check_checkpointable())
            }
        }
    }

    /// The source tables, depth first, left to right: the order the runtime opens them in.
    pub fn sources(&self) -> Vec<&Table> {
        let mut out = vec![];
        self.collect_sources(&mut out);
        out
    }

    fn collect_sources<'a>(&'a self, out: &mut Vec<&'a Table>) {
        match self {
            Flow::Source { table, .. } => out.push(table),
            Flow::Stage(s) => s.inputs.iter().for_each(|i| i.flow.collect_sources(out)),
        }
    }
}
