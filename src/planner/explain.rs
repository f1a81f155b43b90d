//! EXPLAIN: the dataflow graph of a pipeline as text.

use std::fmt::Write;

use super::Pipeline;

/// Render a pipeline: source and shards, per-shard operators, the merge, the rest, the sink.
pub fn render(p: &Pipeline) -> String {
    let mut s = String::new();
    let t = &p.source;
    let opts: Vec<String> = t
        .def
        .options
        .iter()
        .filter(|(k, _)| k.as_str() != "connector")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(s, "Source: {} (connector={}{}{})", t.def.name, t.connector(), if opts.is_empty() { "" } else { ", " }, opts.join(", "));
    let _ = writeln!(s, "  shards: {}", shard_note(t.connector()));
    for op in &p.shard_ops {
        let _ = writeln!(s, "  ├─ [per shard] {op}");
    }
    let _ = writeln!(s, "  ├─ Merge shards: watermark = min over non-idle shards; finished shards count as +∞");
    for op in &p.merged_ops {
        let _ = writeln!(s, "  ├─ {op}");
    }
    match &p.sink {
        Some(sink) => {
            let _ = writeln!(s, "  └─ Sink: {} (connector={})", sink.def.name, sink.connector());
        }
        None => {
            let _ = writeln!(s, "  └─ Output: rows to the client");
        }
    }
    let cols: Vec<String> =
        p.schema.fields().iter().map(|f| format!("{} {}", f.name(), crate::sql::types::display_type(f.data_type()))).collect();
    let _ = writeln!(s, "Output schema: ({})", cols.join(", "));
    let _ = write!(s, "Parallelism: 1 task per source shard, 1 for the merged operators");
    s
}

fn shard_note(connector: &str) -> &'static str {
    match connector {
        "filesystem" => "one per file ('path' a file: one shard)",
        "nexmark" => "'nexmark.shards' generator shards (default 1)",
        "push" => "one (batches pushed by the application)",
        _ => "one",
    }
}
