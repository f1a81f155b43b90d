//! Printing rows: the `print` connector (Flink's `+I[a, b]` lines) and the table printer used
//! for a SELECT run from `weir run` or the REPL (aligned tables, one per emitted batch).

use std::io::Write;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::future::BoxFuture;

use super::Sink;
use crate::Result;
use crate::error::Context;

/// How timestamps are printed (as Flink prints them; a TIMESTAMP_LTZ on the session zone's
/// clock, without a zone suffix).
pub fn format_options() -> FormatOptions<'static> {
    FormatOptions::default()
        .with_null("NULL")
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.3f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.3f"))
}

/// `'connector' = 'print'`: one `+I[...]` line per row on stdout.
pub struct PrintSink {
    prefix: String,
}

impl PrintSink {
    /// With an optional `'print-identifier'` prefix.
    pub fn new(identifier: Option<String>) -> Self {
        Self {
            prefix: identifier.map(|i| format!("{i}> ")).unwrap_or_default(),
        }
    }
}

/// Render rows as `+I[v1, v2]` lines (`-U`, `+U`, `-D` for a changelog's rows).
pub fn changelog_lines(batch: &RecordBatch, prefix: &str) -> Result<String> {
    let opts = format_options();
    let ops = crate::changelog::ops_of(batch).map(<[i8]>::to_vec);
    let data = crate::changelog::strip_ops(batch);
    let fmts = data
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = String::new();
    for row in 0..batch.num_rows() {
        out.push_str(prefix);
        let kind = ops.as_ref().map_or(crate::changelog::RowKind::Insert, |o| {
            crate::changelog::RowKind::from_i8(o[row])
        });
        out.push_str(kind.short());
        out.push('[');
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
            out.write_all(text.as_bytes())
                .context(|| "writing to stdout".into())?;
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
            let batch = with_op_names(&batch)?;
            let table = datafusion::arrow::util::pretty::pretty_format_batches_with_options(
                &[batch],
                &format_options(),
            )?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{table}").context(|| "writing to stdout".into())?;
            out.flush().context(|| "writing to stdout".into())
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// A changelog batch with its op column shown first, as `op` = `+I` / `-U` / `+U` / `-D`.
pub fn with_op_names(batch: &RecordBatch) -> Result<RecordBatch> {
    use datafusion::arrow::array::{ArrayRef, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let Some(ops) = crate::changelog::ops_of(batch) else {
        return Ok(batch.clone());
    };
    let names: StringArray = ops
        .iter()
        .map(|o| Some(crate::changelog::RowKind::from_i8(*o).short()))
        .collect();
    let data = crate::changelog::strip_ops(batch);
    let mut fields = vec![Field::new("op", DataType::Utf8, false)];
    fields.extend(data.schema().fields().iter().map(|f| f.as_ref().clone()));
    let mut cols: Vec<ArrayRef> = vec![Arc::new(names)];
    cols.extend(data.columns().iter().cloned());
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}
