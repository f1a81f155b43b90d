//! Inline rows: the source behind `VALUES (…), (…)` and a `SELECT` without `FROM`.
//!
//! The planner evaluates the constant rows into one batch and keeps it on a table of its own
//! (connector `values`), which this source hands on once. It is a bounded source with one
//! shard; its checkpoint position says whether the rows were handed on.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::SourceShard;
use crate::sql::catalog::Table;
use crate::{Result, plan_err};

/// The single shard of a `values` table.
struct ValuesShard {
    name: String,
    batch: Option<Arc<RecordBatch>>,
}

/// Open a `values` table (planned from `VALUES` or a `SELECT` without `FROM`).
pub fn open(table: &Table) -> Result<Vec<Box<dyn SourceShard>>> {
    let Some(batch) = table.values.clone() else {
        return plan_err!(
            "table {}: connector 'values' is for inline rows (VALUES) only",
            table.def.name
        );
    };
    Ok(vec![Box::new(ValuesShard {
        name: format!("{}:0", table.def.name),
        batch: Some(batch),
    })])
}

impl SourceShard for ValuesShard {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<RecordBatch>>> {
        let next = self.batch.take().map(|b| b.as_ref().clone());
        Box::pin(async move { Ok(next) })
    }

    fn position(&self) -> Option<Value> {
        Some(json!({ "emitted": self.batch.is_none() }))
    }

    fn restore(&mut self, position: &Value) -> Result<()> {
        if position.get("emitted").and_then(Value::as_bool) == Some(true) {
            self.batch = None;
        }
        Ok(())
    }
}
