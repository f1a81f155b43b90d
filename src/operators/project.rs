//! Projection: the SELECT list, evaluated on whole batches.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::physical_expr::PhysicalExpr;

use super::{Emitter, Operator, eval};
use crate::Result;

/// Computes one output column per expression.
#[derive(Debug, Clone)]
pub struct ProjectSpec {
    /// One expression per output column.
    pub exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// Output schema (names from the SQL, types from the expressions).
    pub schema: SchemaRef,
}

impl fmt::Display for ProjectSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Project: ")?;
        for (i, (e, field)) in self.exprs.iter().zip(self.schema.fields()).enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{e} AS {}", field.name())?;
        }
        Ok(())
    }
}

impl Operator for ProjectSpec {
    fn name(&self) -> &str {
        "Project"
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<()> {
        let columns = self
            .exprs
            .iter()
            .map(|e| eval(e, &batch))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        out.emit(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?);
        Ok(())
    }
}

super::operator_spec!(ProjectSpec, stateful = false, Ok::<_, crate::Error>);
