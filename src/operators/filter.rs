//! Filter: WHERE and HAVING, evaluated on whole batches.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use super::{Emitter, Operator, eval};
use crate::{Result, exec_err};

/// Keeps the rows for which `predicate` is true (NULL counts as false).
#[derive(Debug, Clone)]
pub struct FilterSpec {
    /// Boolean expression over the input schema.
    pub predicate: Arc<dyn PhysicalExpr>,
}

impl fmt::Display for FilterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Filter: {}", self.predicate)
    }
}

impl Operator for FilterSpec {
    fn name(&self) -> &str {
        "Filter"
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<()> {
        let mask = eval(&self.predicate, &batch)?;
        if mask.data_type() != &DataType::Boolean {
            return exec_err!(
                "Filter",
                "predicate {} is {}, not BOOLEAN",
                self.predicate,
                mask.data_type()
            );
        }
        let mask = mask.as_boolean();
        if mask.true_count() == batch.num_rows() && mask.null_count() == 0 {
            out.emit(batch);
        } else {
            out.emit(filter_record_batch(&batch, mask)?);
        }
        Ok(())
    }
}

super::operator_spec!(FilterSpec, stateful = false, Ok::<_, crate::Error>);
