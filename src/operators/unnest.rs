//! UNNEST: `SELECT id, UNNEST(items) FROM t` and `FROM t CROSS JOIN UNNEST(t.items) AS u (item)`
//! (Flink's form): each row is repeated once per element of its array column(s), with the
//! element in place of the array. Several arrays in one UNNEST are zipped, the shorter padded
//! with NULLs; a row whose arrays are all empty or NULL yields no row (as a cross join does),
//! or one row with NULL elements for `LEFT JOIN UNNEST(…) ON TRUE` ([`UnnestSpec::keep_empty`]).
//! Stateless.

use std::fmt;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::{Emitter, Operator};
use crate::{Result, exec_err};

/// Which input columns are arrays to unnest; the output has one column per input column.
#[derive(Debug, Clone)]
pub struct UnnestSpec {
    /// Indices of the array columns.
    pub list_cols: Vec<usize>,
    /// Output schema (each array column replaced by its element type).
    pub schema: SchemaRef,
    /// Keep a row whose arrays are all empty or NULL, with NULL elements (a LEFT JOIN).
    pub keep_empty: bool,
}

impl fmt::Display for UnnestSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cols: Vec<&str> = self
            .list_cols
            .iter()
            .map(|c| self.schema.field(*c).name().as_str())
            .collect();
        let empty = if self.keep_empty {
            "; empty arrays kept as NULL"
        } else {
            ""
        };
        write!(
            f,
            "Unnest: [{}] (a row per element{empty})",
            cols.join(", ")
        )
    }
}

impl Operator for UnnestSpec {
    fn name(&self) -> &str {
        "unnest"
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<()> {
        let n = batch.num_rows();
        let mut lists = vec![];
        for &c in &self.list_cols {
            let col = batch.column(c);
            let Some(list) = col.as_list_opt::<i32>() else {
                return exec_err!("unnest", "column {c} is not an ARRAY ({})", col.data_type());
            };
            lists.push(list.clone());
        }
        // Rows per input row: the longest of its arrays (NULL counts as empty).
        let len = |l: &datafusion::arrow::array::ListArray, i: usize| {
            if l.is_null(i) {
                0
            } else {
                l.value_length(i) as usize
            }
        };
        let counts: Vec<usize> = (0..n)
            .map(|i| {
                let most = lists.iter().map(|l| len(l, i)).max().unwrap_or(0);
                if self.keep_empty { most.max(1) } else { most }
            })
            .collect();
        let total: usize = counts.iter().sum();
        let rows: UInt32Array = counts
            .iter()
            .enumerate()
            .flat_map(|(i, k)| std::iter::repeat_n(i as u32, *k))
            .collect();
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| Ok(take(c.as_ref(), &rows, None)?))
            .collect::<Result<_>>()?;
        for (&c, list) in self.list_cols.iter().zip(&lists) {
            let offsets = list.value_offsets();
            let mut idx: Vec<Option<u32>> = Vec::with_capacity(total);
            for (i, k) in counts.iter().enumerate() {
                let have = len(list, i);
                for j in 0..*k {
                    idx.push((j < have).then(|| (offsets[i] as usize + j) as u32));
                }
            }
            columns[c] = take(list.values().as_ref(), &UInt32Array::from(idx), None)?;
        }
        let columns = columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(c, f)| crate::format::cast_to(&c, f.data_type()))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(total));
        out.emit(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?);
        Ok(())
    }
}

super::operator_spec!(UnnestSpec, stateful = false, Ok::<_, crate::Error>);
