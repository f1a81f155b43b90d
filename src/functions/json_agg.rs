//! `JSON_ARRAYAGG(x)` and `JSON_OBJECTAGG(KEY k VALUE v)`: a group's values as one JSON array
//! or object, as Flink's JSON aggregate functions (`ABSENT ON NULL` by default for the array,
//! `NULL ON NULL` for the object). A value that is JSON text from a JSON constructor
//! (`JSON_OBJECT`, `JSON_ARRAY`) nests as JSON. The order of the array's elements is the order
//! the rows arrived in. The partial state is the JSON text itself, so it checkpoints as one
//! string. Rows cannot be taken back: over an updating input they say `not supported yet`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

/// The name `JSON_ARRAYAGG(x)` is planned under: `weir_json_arrayagg(raw, x)`, `raw` true when
/// `x` is JSON text from a constructor.
pub const JSON_ARRAYAGG: &str = "weir_json_arrayagg";
/// `JSON_OBJECTAGG(KEY k VALUE v)`: `weir_json_objectagg(raw, k, v)`.
pub const JSON_OBJECTAGG: &str = "weir_json_objectagg";
/// The same with `ABSENT ON NULL`.
pub const JSON_OBJECTAGG_ABSENT: &str = "weir_json_objectagg_absent";
/// `JSON_ARRAYAGG(x NULL ON NULL)`.
pub const JSON_ARRAYAGG_NULL: &str = "weir_json_arrayagg_null";

/// One of the JSON aggregates.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonAgg {
    name: &'static str,
    object: bool,
    keep_nulls: bool,
    signature: Signature,
}

impl JsonAgg {
    /// All four.
    pub fn all() -> Vec<Self> {
        [
            (JSON_ARRAYAGG, false, false),
            (JSON_ARRAYAGG_NULL, false, true),
            (JSON_OBJECTAGG, true, true),
            (JSON_OBJECTAGG_ABSENT, true, false),
        ]
        .into_iter()
        .map(|(name, object, keep_nulls)| Self {
            name,
            object,
            keep_nulls,
            signature: Signature::variadic_any(Volatility::Immutable),
        })
        .collect()
    }
}

impl AggregateUDFImpl for JsonAgg {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> datafusion::error::Result<Box<dyn Accumulator>> {
        Ok(Box::new(JsonAccumulator {
            object: self.object,
            keep_nulls: self.keep_nulls,
            array: vec![],
            map: serde_json::Map::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> datafusion::error::Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[json]", args.name),
            DataType::Utf8,
            true,
        ))])
    }
}

#[derive(Debug)]
struct JsonAccumulator {
    object: bool,
    keep_nulls: bool,
    array: Vec<serde_json::Value>,
    map: serde_json::Map<String, serde_json::Value>,
}

impl JsonAccumulator {
    fn value(
        raw: bool,
        col: &ArrayRef,
        i: usize,
    ) -> datafusion::error::Result<Option<serde_json::Value>> {
        if raw && let Some(s) = col.as_string_opt::<i32>() {
            return Ok(s
                .is_valid(i)
                .then(|| serde_json::from_str(s.value(i)).ok())
                .flatten());
        }
        super::rowwise::json_value(col, i)
    }

    fn text(&self) -> String {
        if self.object {
            serde_json::Value::Object(self.map.clone()).to_string()
        } else {
            serde_json::Value::Array(self.array.clone()).to_string()
        }
    }
}

impl Accumulator for JsonAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        let Some(raw) = values.first() else {
            return Ok(());
        };
        let raw = raw
            .as_boolean_opt()
            .is_some_and(|b| !b.is_empty() && b.value(0));
        let n = values.get(1).map_or(0, |c| c.len());
        for i in 0..n {
            if self.object {
                let key = match super::rowwise::json_value(&values[1], i)? {
                    Some(serde_json::Value::String(s)) => s,
                    Some(other) => other.to_string(),
                    // Flink fails on a NULL key; it is skipped here.
                    None => continue,
                };
                match Self::value(raw, &values[2], i)? {
                    Some(v) => {
                        self.map.insert(key, v);
                    }
                    None if self.keep_nulls => {
                        self.map.insert(key, serde_json::Value::Null);
                    }
                    None => {}
                }
            } else {
                match Self::value(raw, &values[1], i)? {
                    Some(v) => self.array.push(v),
                    None if self.keep_nulls => self.array.push(serde_json::Value::Null),
                    None => {}
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        Ok(ScalarValue::Utf8(Some(self.text())))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.text().len()
    }

    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Utf8(Some(self.text()))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        let Some(s) = states.first().and_then(|s| s.as_string_opt::<i32>()) else {
            return Ok(());
        };
        for i in 0..s.len() {
            if !s.is_valid(i) {
                continue;
            }
            match serde_json::from_str::<serde_json::Value>(s.value(i)) {
                Ok(serde_json::Value::Array(a)) => self.array.extend(a),
                Ok(serde_json::Value::Object(m)) => self.map.extend(m),
                _ => {}
            }
        }
        Ok(())
    }
}
