//! The blackhole sink: discards rows (for benchmarks; rows are still counted by the runtime).

use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;

use super::Sink;
use crate::Result;

/// Discards everything.
pub struct BlackholeSink;

impl Sink for BlackholeSink {
    fn write_batch(&mut self, _batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}
