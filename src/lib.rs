//! # weir: a streaming SQL engine
//!
//! weir runs Flink-compatible SQL continuously over sharded event streams, on a vectorized
//! Apache Arrow core: every edge carries Arrow record batches, and expressions and aggregates
//! are DataFusion's, evaluated on whole batches.
//!
//! ## Layout, in the order data flows
//!
//! - [`sql`]: parsing (sqlparser with weir's dialect), the catalog of tables and views.
//! - [`planner`]: SQL → DataFusion logical plan → a dataflow graph; EXPLAIN.
//! - [`graph`]: that graph ([`graph::Pipeline`]: sources, stages of operator specs, the
//!   exchanges between them), shared by the planner and the runtime.
//! - [`connectors`]: sources (sharded) and sinks, chosen by `WITH ('connector' = ...)`.
//! - [`functions`]: Flink's built-in functions where DataFusion's answer differently.
//! - [`format`]: JSON / CSV / Parquet decoding into Arrow and encoding back.
//! - [`operators`]: the push-based operators (watermark generator, filter, projection,
//!   windowed aggregation, joins, updating aggregates, Top-N).
//! - [`runtime`]: runs a pipeline: a task per source shard and per stage instance, the keyed
//!   exchange, input gates (watermark merging, barrier alignment), the sink and the
//!   checkpoint coordinator.
//! - [`state`]: operator snapshots (named Arrow batches by key group), key groups, and the
//!   checkpoint directory (local or object store).
//! - [`settings`]: the keys `SET` accepts and the checkpoint settings.
//! - [`changelog`]: the op column of updating results (+I, -U, +U, -D).
//! - [`bench`]: the Nexmark benchmark behind `weir bench nexmark`.
//! - [`message`]: what flows on an edge (batches, watermarks, barriers, end).
//! - [`engine`]: [`Engine`], the embedding API; the CLI and REPL are built on it.
//! - [`serve`]: `weir serve`, the HTTP server: ingest, jobs, results, metrics, live page.
//! - [`repl`]: the interactive shell behind `weir` with no arguments.
//! - [`cli`]: the `weir` command line, with a hook for user-defined functions.

pub mod bench;
pub mod changelog;
pub mod cli;
pub mod connectors;
pub mod engine;
pub mod error;
#[doc(hidden)]
pub mod failpoint;
pub mod format;
pub mod functions;
pub mod graph;
pub mod message;
pub mod operators;
pub mod planner;
pub mod repl;
pub mod runtime;
pub mod serve;
pub mod settings;
pub mod sql;
pub mod state;

pub use engine::{Engine, Job, JobSummary, PushHandle, StatementOutput, Subscription};
pub use error::{Error, Result};
