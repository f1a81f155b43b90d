//! A chain of operators run in one task: batches and watermarks pass through them in order.

use datafusion::arrow::record_batch::RecordBatch;

use crate::Result;
use crate::message::{Message, Watermark};
use crate::operators::{Emitter, OpSpec, Operator};
use crate::state::StateSnapshot;

/// Instantiated operators, called in sequence.
pub struct Chain {
    ops: Vec<Box<dyn Operator>>,
    /// Per operator: the last watermark it received (for `CURRENT_WATERMARK`).
    watermarks: Vec<Option<i64>>,
    late: Vec<RecordBatch>,
    malformed: u64,
}

impl Chain {
    /// Instantiate the runtime half of each spec.
    pub fn new(specs: &[OpSpec]) -> Result<Self> {
        Ok(Self {
            ops: specs
                .iter()
                .map(OpSpec::instantiate)
                .collect::<Result<_>>()?,
            watermarks: vec![None; specs.len()],
            late: vec![],
            malformed: 0,
        })
    }

    /// Push one message from input `port` (which only the first operator distinguishes)
    /// through every operator; returns what comes out of the last one.
    pub fn push(&mut self, port: usize, msg: Message) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        Self::push_from(
            &mut self.ops,
            &mut self.watermarks,
            port,
            msg,
            &mut out,
            &mut self.late,
            &mut self.malformed,
        )?;
        Ok(out)
    }

    fn push_from(
        ops: &mut [Box<dyn Operator>],
        watermarks: &mut [Option<i64>],
        port: usize,
        msg: Message,
        out: &mut Vec<Message>,
        late: &mut Vec<RecordBatch>,
        malformed: &mut u64,
    ) -> Result<()> {
        let (Some((op, rest)), Some((wm, wms))) =
            (ops.split_first_mut(), watermarks.split_first_mut())
        else {
            out.push(msg);
            return Ok(());
        };
        let mut em = Emitter::default();
        match msg {
            Message::Batch(b) => {
                crate::functions::with_watermark(*wm, || op.process_batch(port, b, &mut em))?
            }
            Message::Watermark(Watermark::EventTime(t)) => {
                *wm = Some(t);
                op.on_watermark(t, &mut em)?;
                if op.forwards_watermarks() {
                    em.messages
                        .push(Message::Watermark(Watermark::EventTime(t)));
                }
            }
            Message::End => {
                op.on_end(&mut em)?;
                em.messages.push(Message::End);
            }
            m @ (Message::Watermark(Watermark::Idle) | Message::Barrier(_)) => em.messages.push(m),
        }
        late.append(&mut em.late);
        *malformed += em.malformed;
        for m in em.messages {
            Self::push_from(rest, wms, 0, m, out, late, malformed)?;
        }
        Ok(())
    }

    /// Late rows collected since the last call.
    pub fn take_late(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.late)
    }

    /// Malformed rows counted since the last call.
    pub fn take_malformed(&mut self) -> u64 {
        std::mem::take(&mut self.malformed)
    }

    /// Snapshot every operator (None for stateless ones), in chain order.
    pub fn snapshot(&mut self, key_groups: usize) -> Result<Vec<Option<StateSnapshot>>> {
        self.ops
            .iter_mut()
            .map(|o| o.snapshot(key_groups))
            .collect()
    }

    /// Restore operator `i` of the chain.
    pub fn restore(&mut self, i: usize, snapshot: StateSnapshot) -> Result<()> {
        match self.ops.get_mut(i) {
            Some(op) => op.restore(snapshot),
            None => Ok(()),
        }
    }

    /// Restore the scalar state of each operator from JSON (per-shard operators: the
    /// watermark generator), as written from [`Chain::snapshot`]'s metas.
    pub(crate) fn restore_metas(&mut self, metas: &serde_json::Value) -> Result<()> {
        let serde_json::Value::Array(metas) = metas else {
            return Ok(());
        };
        for (op, meta) in self.ops.iter_mut().zip(metas) {
            if !meta.is_null() {
                op.restore(StateSnapshot {
                    tables: vec![],
                    meta: meta.clone(),
                })?;
            }
        }
        Ok(())
    }

    /// Bytes of state held by the operators.
    pub fn state_size(&self) -> usize {
        self.ops.iter().map(|o| o.state_size()).sum()
    }
}
