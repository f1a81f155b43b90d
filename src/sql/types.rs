//! SQL type names (Flink's) to Arrow types.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use sqlparser::ast::{DataType as SqlType, ExactNumberInfo};

use crate::{Result, not_supported};

/// Arrow type of a `TIMESTAMP_LTZ(p)` column (UTC instants).
pub fn timestamp_type(precision: Option<u64>, ltz: bool) -> Result<DataType> {
    let unit = match precision.unwrap_or(6) {
        0..=3 => TimeUnit::Millisecond,
        4..=6 => TimeUnit::Microsecond,
        7..=9 => TimeUnit::Nanosecond,
        p => return not_supported!("TIMESTAMP precision {p} (at most 9)"),
    };
    Ok(DataType::Timestamp(unit, ltz.then(|| "UTC".into())))
}

/// Map a parsed SQL type to the Arrow type weir stores it as.
pub fn sql_to_arrow(t: &SqlType) -> Result<DataType> {
    use SqlType as S;
    Ok(match t {
        S::Boolean | S::Bool => DataType::Boolean,
        S::TinyInt(_) => DataType::Int8,
        S::SmallInt(_) => DataType::Int16,
        S::Int(_) | S::Integer(_) => DataType::Int32,
        S::BigInt(_) => DataType::Int64,
        S::Float(_) | S::Real | S::Float4 => DataType::Float32,
        S::Double(_) | S::DoublePrecision | S::Float8 | S::Float64 => DataType::Float64,
        S::Decimal(info) | S::Numeric(info) | S::Dec(info) => {
            let (p, s) = match info {
                ExactNumberInfo::None => (10, 0),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
            };
            if !(1..=38).contains(&p) || s < 0 || s > p as i64 {
                return not_supported!(
                    "DECIMAL({p}, {s}): precision must be 1..=38 and 0 <= scale <= precision"
                );
            }
            DataType::Decimal128(p as u8, s as i8)
        }
        S::Varchar(_)
        | S::String(_)
        | S::Text
        | S::Char(_)
        | S::Character(_)
        | S::CharacterVarying(_)
        | S::CharVarying(_) => DataType::Utf8,
        S::Bytes(_) | S::Binary(_) | S::Varbinary(_) | S::Bytea => DataType::Binary,
        S::Date => DataType::Date32,
        S::Timestamp(p, tz) => {
            use sqlparser::ast::TimezoneInfo as Tz;
            timestamp_type(*p, matches!(tz, Tz::WithTimeZone | Tz::Tz))?
        }
        S::Custom(name, mods) => {
            let n = name.to_string().to_ascii_uppercase();
            match n.as_str() {
                "TIMESTAMP_LTZ" => {
                    let p = mods.first().and_then(|m| m.parse().ok());
                    timestamp_type(p, true)?
                }
                "STRING" => DataType::Utf8,
                "BYTES" => DataType::Binary,
                _ => return not_supported!("column type {t}"),
            }
        }
        S::Array(
            sqlparser::ast::ArrayElemTypeDef::AngleBracket(e)
            | sqlparser::ast::ArrayElemTypeDef::SquareBracket(e, None)
            | sqlparser::ast::ArrayElemTypeDef::Parenthesis(e),
        ) => DataType::List(std::sync::Arc::new(
            datafusion::arrow::datatypes::Field::new_list_field(sql_to_arrow(e)?, true),
        )),
        S::Map(k, v) => map_type(sql_to_arrow(k)?, sql_to_arrow(v)?),
        other => return not_supported!("column type {other}"),
    })
}

/// Arrow's MAP of `key` to `value` (the layout arrow's JSON reader and the MAP functions use).
pub fn map_type(key: DataType, value: DataType) -> DataType {
    use datafusion::arrow::datatypes::{Field, Fields};
    DataType::Map(
        std::sync::Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("keys", key, false),
                Field::new("values", value, true),
            ])),
            false,
        )),
        false,
    )
}

/// Flink's spelling of an Arrow type, for DESCRIBE.
pub fn display_type(t: &DataType) -> String {
    match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Binary => "BYTES".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(unit, tz) => {
            let p = match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            };
            if tz.is_some() {
                format!("TIMESTAMP_LTZ({p})")
            } else {
                format!("TIMESTAMP({p})")
            }
        }
        DataType::List(f) | DataType::LargeList(f) => {
            format!("ARRAY<{}>", display_type(f.data_type()))
        }
        DataType::Map(f, _) => match f.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => format!(
                "MAP<{}, {}>",
                display_type(kv[0].data_type()),
                display_type(kv[1].data_type())
            ),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}
