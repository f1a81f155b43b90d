//! Limit: passes the first N rows of the stream and drops the rest.

use std::fmt;

use datafusion::arrow::record_batch::RecordBatch;

use super::{Emitter, Operator};
use crate::Result;

/// `LIMIT n` over the whole (merged) stream.
#[derive(Debug, Clone)]
pub struct LimitSpec {
    /// Rows to pass.
    pub fetch: usize,
}

impl fmt::Display for LimitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Limit: {}", self.fetch)
    }
}

/// Runtime half of [`LimitSpec`].
pub struct Limit {
    spec: LimitSpec,
    passed: usize,
}

impl Limit {
    /// A limit that has passed nothing yet.
    pub fn new(spec: LimitSpec) -> Self {
        Self { spec, passed: 0 }
    }
}

impl Operator for Limit {
    fn name(&self) -> &str {
        "Limit"
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<()> {
        let left = self.spec.fetch - self.passed;
        let take = left.min(batch.num_rows());
        self.passed += take;
        if take > 0 {
            out.emit(batch.slice(0, take));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::test_util::int_batch;

    #[test]
    fn passes_only_the_first_rows() {
        let mut op = Limit::new(LimitSpec { fetch: 3 });
        let mut out = Emitter::default();
        op.process_batch(0, int_batch(&[1, 2]), &mut out).unwrap();
        op.process_batch(0, int_batch(&[3, 4]), &mut out).unwrap();
        op.process_batch(0, int_batch(&[5]), &mut out).unwrap();
        let rows: usize = out
            .messages
            .iter()
            .map(|m| match m {
                crate::message::Message::Batch(b) => b.num_rows(),
                _ => 0,
            })
            .sum();
        assert_eq!(rows, 3);
    }
}
