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

    fn snapshot(&mut self, _key_groups: usize) -> Result<Option<crate::state::StateSnapshot>> {
        Ok(Some(crate::state::StateSnapshot {
            tables: vec![],
            meta: serde_json::json!({ "passed": self.passed }),
        }))
    }

    fn restore(&mut self, snapshot: crate::state::StateSnapshot) -> Result<()> {
        self.passed =
            (snapshot.meta_i64("passed").unwrap_or(0).max(0) as usize).min(self.spec.fetch);
        Ok(())
    }
}

super::operator_spec!(LimitSpec, stateful = true, |s| Ok::<_, crate::Error>(
    Limit::new(s)
));

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

    #[test]
    fn snapshot_restore_keeps_the_count() {
        let mut op = Limit::new(LimitSpec { fetch: 3 });
        let mut out = Emitter::default();
        op.process_batch(0, int_batch(&[1, 2]), &mut out).unwrap();
        let snap = op.snapshot(128).unwrap().unwrap();
        let mut restored = Limit::new(LimitSpec { fetch: 3 });
        restored.restore(snap).unwrap();
        let mut out = Emitter::default();
        restored
            .process_batch(0, int_batch(&[3, 4]), &mut out)
            .unwrap();
        assert!(
            matches!(&out.messages[..], [crate::message::Message::Batch(b)] if b.num_rows() == 1)
        );
    }
}
