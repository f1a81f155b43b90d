//! `MIN`, `MAX` and `agg(DISTINCT x)` over an updating (changelog) input.
//!
//! DataFusion's accumulators for these cannot take back an arbitrary row: MIN and MAX keep
//! only the extreme (their sliding form assumes rows leave in arrival order), and a DISTINCT
//! accumulator keeps a set, not how often each value was seen. [`MultisetAccumulator`] keeps
//! the multiset of non-NULL argument values (value → count, ordered by Arrow's row format, so
//! by value). MIN and MAX read its ends; a DISTINCT aggregate feeds its inner (non-distinct,
//! retracting) accumulator a value when its count goes from 0 to 1 and takes it back when it
//! returns to 0. Its checkpoint state is one LIST column: the values, each repeated by its
//! count.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

/// What a multiset answers.
#[derive(Debug, Clone)]
pub enum Multiset {
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The inner (non-distinct) aggregate over the distinct values.
    Distinct(Arc<AggregateFunctionExpr>),
}

/// The accumulator (see the module doc).
pub struct MultisetAccumulator {
    kind: Multiset,
    inner: Option<Box<dyn Accumulator>>,
    data_type: DataType,
    conv: RowConverter,
    values: BTreeMap<Vec<u8>, (ScalarValue, usize)>,
}

impl std::fmt::Debug for MultisetAccumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MultisetAccumulator({:?}, {} values)",
            self.kind,
            self.values.len()
        )
    }
}

impl MultisetAccumulator {
    /// For an argument of type `data_type`.
    pub fn new(kind: Multiset, data_type: DataType) -> datafusion::error::Result<Self> {
        let inner = match &kind {
            Multiset::Distinct(a) => Some(a.create_sliding_accumulator()?),
            _ => None,
        };
        Ok(Self {
            kind,
            inner,
            conv: RowConverter::new(vec![SortField::new(data_type.clone())])?,
            data_type,
            values: BTreeMap::new(),
        })
    }

    /// Add (or take back) the non-NULL values of `col`.
    fn apply(&mut self, col: &ArrayRef, add: bool) -> datafusion::error::Result<()> {
        let rows = self.conv.convert_columns(std::slice::from_ref(col))?;
        for i in 0..col.len() {
            if col.is_null(i) {
                continue;
            }
            let key = rows.row(i).as_ref().to_vec();
            let (first, last) = if add {
                let e = self
                    .values
                    .entry(key)
                    .or_insert_with(|| (ScalarValue::Null, 0));
                if e.1 == 0 {
                    e.0 = ScalarValue::try_from_array(col, i)?;
                }
                e.1 += 1;
                (e.1 == 1, false)
            } else {
                match self.values.get_mut(&key) {
                    Some(e) if e.1 > 1 => {
                        e.1 -= 1;
                        (false, false)
                    }
                    Some(_) => {
                        self.values.remove(&key);
                        (false, true)
                    }
                    // Taking back a value never added: nothing to undo.
                    None => (false, false),
                }
            };
            if let Some(inner) = self.inner.as_mut() {
                let one = [col.slice(i, 1)];
                if first {
                    inner.update_batch(&one)?;
                } else if last {
                    inner.retract_batch(&one)?;
                }
            }
        }
        Ok(())
    }
}

impl Accumulator for MultisetAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        match values.first() {
            Some(col) => self.apply(col, true),
            None => Ok(()),
        }
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        match values.first() {
            Some(col) => self.apply(col, false),
            None => Ok(()),
        }
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        let pick = match self.kind {
            Multiset::Min => self.values.values().next(),
            Multiset::Max => self.values.values().next_back(),
            Multiset::Distinct(_) => {
                return match self.inner.as_mut() {
                    Some(inner) => inner.evaluate(),
                    None => ScalarValue::try_from(&self.data_type),
                };
            }
        };
        match pick {
            Some((v, _)) => Ok(v.clone()),
            None => ScalarValue::try_from(&self.data_type),
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .values
                .iter()
                .map(|(k, (v, _))| k.len() + v.size() + 32)
                .sum::<usize>()
            + self.inner.as_ref().map_or(0, |i| i.size())
    }

    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        let values: Vec<ScalarValue> = self
            .values
            .values()
            .flat_map(|(v, n)| std::iter::repeat_n(v.clone(), *n))
            .collect();
        Ok(vec![ScalarValue::List(ScalarValue::new_list_nullable(
            &values,
            &self.data_type,
        ))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        let Some(list) = states.first().and_then(|s| s.as_list_opt::<i32>()) else {
            return datafusion::common::exec_err!("multiset state: expected a LIST column");
        };
        for i in 0..list.len() {
            if list.is_valid(i) {
                self.apply(&list.value(i), true)?;
            }
        }
        Ok(())
    }
}
