//! Printing rows: the `print` connector (Flink's `+I[a, b]` lines) and the table printer used
//! for a SELECT run from `weir run` or the REPL (aligned tables, one per emitted batch).

use std::io::Write;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::future::BoxFuture;

use super::Sink;
use crate::Result;
use crate::error::Context;

/// How timestamps are printed (as Flink prints them).
pub fn format_options() -> FormatOptions<'static> {
    FormatOptions::default()
        .with_null("NULL")
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.3f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.3fZ"))
}

/// `'connector' = 'print'`: one `+I[...]` line per row on stdout.
pub struct PrintSink {
    prefix: String,
}

impl PrintSink {
    /// With an optional `'print-identifier'` prefix.
    pub fn new(identifier: Option<String>) -> Self {
        Self { prefix: identifier.map(|i| format!("{i}> ")).unwrap_or_default() }
    }
}

/// Render rows as `+I[v1, v2]` lines.
pub fn changelog_lines(batch: &RecordBatch, prefix: &str) -> Result<String> {
    let opts = format_options();
    let fmts = batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts)).collect::<Result<Vec<_>, _>>()?;
    let mut out = String::new();
    for row in 0..batch.num_rows() {
        out.push_str(prefix);
        out.push_str("+I[");
        for (i, f) in fmts.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&f.value(row).to_string());
        }
        out.push_str("]\n");
    }
    Ok(out)
}

impl Sink for PrintSink {
    fn write_batch(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let text = changelog_lines(&batch, &self.prefix)?;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).context(|| "writing to stdout".into())?;
            out.flush().context(|| "writing to stdout".into())
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Prints each emitted batch as an aligned table on stdout.
pub struct TablePrinter;

impl Sink for TablePrinter {
    fn write_batch(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let table = datafusion::arrow::util::pretty::pretty_format_batches_with_options(&[batch], &format_options())?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{table}").context(|| "writing to stdout".into())?;
            out.flush().context(|| "writing to stdout".into())
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}
