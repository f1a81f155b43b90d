//! A chain of operators run in one task: batches and watermarks pass through them in order.

use datafusion::arrow::record_batch::RecordBatch;

use crate::Result;
use crate::message::{Message, Watermark};
use crate::operators::{Emitter, OpSpec, Operator};

/// Instantiated operators, called in sequence.
pub struct Chain {
    ops: Vec<Box<dyn Operator>>,
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
        port: usize,
        msg: Message,
        out: &mut Vec<Message>,
        late: &mut Vec<RecordBatch>,
        malformed: &mut u64,
    ) -> Result<()> {
        let Some((op, rest)) = ops.split_first_mut() else {
            out.push(msg);
            return Ok(());
        };
        let mut em = Emitter::default();
        match msg {
            Message::Batch(b) => op.process_batch(port, b, &mut em)?,
            Message::Watermark(Watermark::EventTime(t)) => {
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
            Self::push_from(rest, 0, m, out, late, malformed)?;
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

    /// Bytes of state held by the operators.
    pub fn state_size(&self) -> usize {
        self.ops.iter().map(|o| o.state_size()).sum()
    }
}
