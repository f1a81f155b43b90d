//! EXPLAIN: the dataflow graph of a pipeline as text, with each stage's parallelism and the
//! exchanges between stages.

use std::fmt::Write;

use super::{Flow, Pipeline};

/// Render a pipeline, sink first, then its inputs indented below it.
impl Pipeline {
    /// The dataflow graph as EXPLAIN prints it.
    pub fn explain(&self) -> String {
        render(self)
    }
}

pub fn render(p: &Pipeline) -> String {
    let mut s = String::new();
    match &p.sink {
        Some(sink) => {
            let _ = writeln!(
                s,
                "Sink: {} (connector={}){}",
                sink.def.name,
                sink.connector(),
                if p.updating { " [changelog]" } else { "" }
            );
        }
        None => {
            let _ = writeln!(
                s,
                "Output: rows to the client{}",
                if p.updating {
                    " [changelog: +I/-U/+U/-D]"
                } else {
                    ""
                }
            );
        }
    }
    flow(&mut s, &p.root, p.parallelism, 1, "gather");
    let cols: Vec<String> = p
        .schema
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f.name(),
                crate::sql::types::display_type(f.data_type())
            )
        })
        .collect();
    let _ = writeln!(s, "Output schema: ({})", cols.join(", "));
    let _ = write!(
        s,
        "Parallelism: {} (keyed stages run {} instances; a stage with an unkeyed input runs 1)",
        p.parallelism, p.parallelism
    );
    s
}

fn flow(s: &mut String, f: &Flow, p: usize, depth: usize, exchange: &str) {
    let pad = "  ".repeat(depth);
    match f {
        Flow::Source { table, ops } => {
            let opts: Vec<String> = table
                .def
                .options
                .iter()
                .filter(|(k, _)| k.as_str() != "connector")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(
                s,
                "{pad}└─ [{exchange}] Source: {} (connector={}{}{})",
                table.def.name,
                table.connector(),
                if opts.is_empty() { "" } else { ", " },
                opts.join(", ")
            );
            let _ = writeln!(s, "{pad}     shards: {}", shard_note(table));
            if table.read.is_some() {
                let read: Vec<&str> = (table.physical.fields().iter().enumerate())
                    .filter(|(i, _)| table.reads_column(*i))
                    .map(|(_, f)| f.name().as_str())
                    .collect();
                let _ = writeln!(
                    s,
                    "{pad}     reads: {} (the other columns are not decoded)",
                    read.join(", ")
                );
            }
            for op in ops {
                let _ = writeln!(s, "{pad}     ├─ [per shard] {op}");
            }
        }
        Flow::Stage(stage) => {
            let n = stage.parallelism(p);
            let _ = writeln!(
                s,
                "{pad}└─ [{exchange}] Stage (parallelism {n}; watermark = min over its inputs)"
            );
            for op in stage.ops.iter().rev() {
                let _ = writeln!(s, "{pad}     ├─ {op}");
            }
            for (i, input) in stage.inputs.iter().enumerate() {
                let side = match (stage.inputs.len(), i) {
                    (1, _) => String::new(),
                    (_, 0) => "left ".into(),
                    _ => "right ".into(),
                };
                let ex = match input.exchange {
                    _ if n == 1 => format!("{side}gather into 1"),
                    super::Exchange::Broadcast => format!("{side}broadcast to {n}"),
                    super::Exchange::Forward => {
                        format!("{side}forward (producer i to instance i mod {n})")
                    }
                    super::Exchange::Hash => {
                        let keys: Vec<String> = input.keys.iter().map(|k| k.to_string()).collect();
                        format!("{side}hash({}) over {n}", keys.join(", "))
                    }
                };
                flow(s, &input.flow, p, depth + 2, &ex);
            }
        }
    }
}

fn shard_note(table: &crate::sql::catalog::Table) -> &'static str {
    let s3 = table
        .option("path")
        .is_some_and(crate::connectors::object_store::is_object_url);
    match table.connector() {
        "filesystem" if s3 => {
            "one reader per parallel instance; each object a split with its own watermark"
        }
        "filesystem" => "one per file; one task per shard, watermark per shard",
        "nexmark" => {
            "'nexmark.shards' (default: the job's parallelism); one task per shard, watermark per shard"
        }
        "push" => "one (batches pushed by the application)",
        "kinesis" => {
            "one reader per parallel instance; each Kinesis shard a split with its own watermark"
        }
        "kafka" => {
            "one reader per parallel instance; each partition a split with its own watermark"
        }
        _ => "one",
    }
}
