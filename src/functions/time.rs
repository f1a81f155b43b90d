//! Date and time functions with Flink's semantics.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use super::map_rows;

/// `TO_TIMESTAMP(string [, format])` (TIMESTAMP(3)) and `TO_DATE(string [, format])` (DATE):
/// the string parsed with a Java date pattern (`'dd/MM/yyyy HH:mm'`), by default
/// `yyyy-MM-dd HH:mm:ss` (with an optional fraction) and `yyyy-MM-dd`. A string that does not
/// match gives NULL, as in Flink, rather than failing the job.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ParseTime {
    signature: Signature,
    date: bool,
}

impl ParseTime {
    /// `TO_TIMESTAMP`.
    pub fn timestamp() -> Self {
        Self::new(false)
    }

    /// `TO_DATE`.
    pub fn date() -> Self {
        Self::new(true)
    }

    fn new(date: bool) -> Self {
        Self {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8]),
                ],
                Volatility::Immutable,
            ),
            date,
        }
    }
}

/// Parse `s` with a chrono pattern (None: Flink's default forms) as a date-time; a pattern with
/// only date fields gives midnight.
fn parse(s: &str, pattern: Option<&str>) -> Option<NaiveDateTime> {
    let s = s.trim();
    match pattern {
        Some(p) => NaiveDateTime::parse_from_str(s, p).ok().or_else(|| {
            NaiveDate::parse_from_str(s, p)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        }),
        None => [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
        ]
        .iter()
        .find_map(|p| NaiveDateTime::parse_from_str(s, p).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        }),
    }
}

impl ScalarUDFImpl for ParseTime {
    fn name(&self) -> &str {
        if self.date { "to_date" } else { "to_timestamp" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(if self.date {
            DataType::Date32
        } else {
            DataType::Timestamp(TimeUnit::Millisecond, None)
        })
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        map_rows(&args, |a| {
            let s = a[0].as_string::<i32>();
            let patterns = a.get(1).map(|p| p.as_string::<i32>());
            let mut cached: Option<(String, String)> = None;
            let mut parsed = Vec::with_capacity(s.len());
            for i in 0..s.len() {
                if s.is_null(i) || patterns.is_some_and(|p| p.is_null(i)) {
                    parsed.push(None);
                    continue;
                }
                let pattern = match patterns {
                    None => None,
                    Some(p) => {
                        let java = p.value(i);
                        if cached.as_ref().is_none_or(|(j, _)| j != java) {
                            let chrono = crate::planner::rewrite::java_to_chrono(java);
                            cached = Some((java.to_string(), chrono));
                        }
                        cached.as_ref().map(|(_, c)| c.as_str())
                    }
                };
                parsed.push(parse(s.value(i), pattern));
            }
            Ok(if self.date {
                let mut out = Date32Builder::with_capacity(parsed.len());
                for t in parsed {
                    out.append_option(
                        t.map(|t| (t.date() - NaiveDate::default()).num_days() as i32),
                    );
                }
                Arc::new(out.finish()) as ArrayRef
            } else {
                let mut out = TimestampMillisecondBuilder::with_capacity(parsed.len());
                for t in parsed {
                    out.append_option(t.map(|t| t.and_utc().timestamp_millis()));
                }
                Arc::new(out.finish()) as ArrayRef
            })
        })
    }
}

/// The name the planner rewrites `DATE_FORMAT(ts, pattern)` to, with the pattern in chrono's
/// strftime form (see `planner::rewrite::java_to_chrono`).
pub const DATE_FORMAT: &str = "weir_date_format";

/// `DATE_FORMAT(ts, pattern)`: DataFusion's `to_char`, made cheap for a column of TIMESTAMP
/// without zone and a constant pattern. `to_char` parses the pattern again for every row;
/// here it is parsed once per batch, and a row's text is reused while rows stay within the
/// pattern's finest field (a day for `'yyyy-MM-dd'`, a minute for `'HH:mm'`): event times
/// arrive nearly in order, so most rows copy the text of the row before. The text is chrono's,
/// as `to_char`'s is; anything else (other types, a pattern chrono rejects, a zone field, a
/// time out of range) goes to `to_char` unchanged, so its answers and errors stay the same.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DateFormat {
    signature: Signature,
}

impl Default for DateFormat {
    fn default() -> Self {
        Self {
            signature: datafusion::functions::datetime::to_char()
                .signature()
                .clone(),
        }
    }
}

impl ScalarUDFImpl for DateFormat {
    fn name(&self) -> &str {
        DATE_FORMAT
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        use datafusion::common::ScalarValue;
        if let [
            ColumnarValue::Array(ts),
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(p))),
        ] = args.args.as_slice()
            && let DataType::Timestamp(unit, None) = ts.data_type()
            && let Some(out) = format_timestamps(ts, *unit, p)
        {
            return Ok(ColumnarValue::Array(out));
        }
        datafusion::functions::datetime::to_char().invoke_with_args(args)
    }
}

/// Seconds within which every field `items` print stays the same (a day, an hour, a minute, a
/// second), 0 when the finest is below a second; `None` for a zone field (a TIMESTAMP without
/// zone has none: left to `to_char`'s error).
fn steady_seconds(items: &[chrono::format::Item<'_>]) -> Option<i64> {
    use chrono::format::{Fixed, Item, Numeric};
    let mut finest = 86_400;
    for item in items {
        let secs = match item {
            Item::Numeric(n, _) => match n {
                Numeric::Year
                | Numeric::YearDiv100
                | Numeric::YearMod100
                | Numeric::IsoYear
                | Numeric::IsoYearDiv100
                | Numeric::IsoYearMod100
                | Numeric::Quarter
                | Numeric::Month
                | Numeric::Day
                | Numeric::WeekFromSun
                | Numeric::WeekFromMon
                | Numeric::IsoWeek
                | Numeric::NumDaysFromSun
                | Numeric::WeekdayFromMon
                | Numeric::Ordinal => 86_400,
                Numeric::Hour | Numeric::Hour12 => 3_600,
                Numeric::Minute => 60,
                Numeric::Second | Numeric::Timestamp => 1,
                _ => 0,
            },
            Item::Fixed(f) => match f {
                Fixed::ShortMonthName
                | Fixed::LongMonthName
                | Fixed::ShortWeekdayName
                | Fixed::LongWeekdayName => 86_400,
                Fixed::LowerAmPm | Fixed::UpperAmPm => 3_600,
                Fixed::TimezoneName
                | Fixed::TimezoneOffset
                | Fixed::TimezoneOffsetColon
                | Fixed::TimezoneOffsetDoubleColon
                | Fixed::TimezoneOffsetTripleColon
                | Fixed::TimezoneOffsetColonZ
                | Fixed::TimezoneOffsetZ
                | Fixed::RFC2822
                | Fixed::RFC3339 => return None,
                _ => 0,
            },
            Item::Literal(_) | Item::OwnedLiteral(_) | Item::Space(_) | Item::OwnedSpace(_) => {
                86_400
            }
            Item::Error => return None,
        };
        finest = finest.min(secs);
    }
    Some(finest)
}

/// `ts` printed with `pattern`, or `None` to leave the batch to `to_char`.
fn format_timestamps(ts: &ArrayRef, unit: TimeUnit, pattern: &str) -> Option<ArrayRef> {
    use datafusion::arrow::array::StringBuilder;
    use datafusion::arrow::datatypes::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType,
    };
    use std::fmt::Write;
    let items = chrono::format::StrftimeItems::new(pattern).parse().ok()?;
    let steady = steady_seconds(&items)?;
    let (values, per_second) = match unit {
        TimeUnit::Second => (ts.as_primitive_opt::<TimestampSecondType>()?.values(), 1),
        TimeUnit::Millisecond => (
            ts.as_primitive_opt::<TimestampMillisecondType>()?.values(),
            1_000,
        ),
        TimeUnit::Microsecond => (
            ts.as_primitive_opt::<TimestampMicrosecondType>()?.values(),
            1_000_000,
        ),
        TimeUnit::Nanosecond => (
            ts.as_primitive_opt::<TimestampNanosecondType>()?.values(),
            1_000_000_000,
        ),
    };
    let span = steady * per_second;
    let to_time = |v: i64| -> Option<NaiveDateTime> {
        Some(match unit {
            TimeUnit::Second => chrono::DateTime::from_timestamp(v, 0)?.naive_utc(),
            TimeUnit::Millisecond => chrono::DateTime::from_timestamp_millis(v)?.naive_utc(),
            TimeUnit::Microsecond => chrono::DateTime::from_timestamp_micros(v)?.naive_utc(),
            TimeUnit::Nanosecond => chrono::DateTime::from_timestamp_nanos(v).naive_utc(),
        })
    };
    let mut out = StringBuilder::with_capacity(ts.len(), ts.len() * (pattern.len() + 10));
    // The last text printed and the span (or exact time) it holds for.
    let mut last: Option<(i64, String)> = None;
    for (i, v) in values.iter().enumerate() {
        if ts.is_null(i) {
            out.append_null();
            continue;
        }
        let key = if span > 0 { v.div_euclid(span) } else { *v };
        match &last {
            Some((k, text)) if *k == key => out.append_value(text),
            _ => {
                let mut text = String::with_capacity(pattern.len() + 10);
                write!(text, "{}", to_time(*v)?.format_with_items(items.iter())).ok()?;
                out.append_value(&text);
                last = Some((key, text));
            }
        }
    }
    Some(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::Field;
    use datafusion::common::ScalarValue;

    fn call(udf: &dyn ScalarUDFImpl, ts: &ArrayRef, pattern: &str) -> ColumnarValue {
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Array(ts.clone()),
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(pattern.into()))),
            ],
            arg_fields: vec![
                Arc::new(Field::new("ts", ts.data_type().clone(), true)),
                Arc::new(Field::new("p", DataType::Utf8, false)),
            ],
            number_rows: ts.len(),
            return_field: Arc::new(Field::new("out", DataType::Utf8, true)),
            config_options: Arc::new(Default::default()),
        };
        udf.invoke_with_args(args).expect("formats")
    }

    fn strings(v: ColumnarValue) -> Vec<Option<String>> {
        let ColumnarValue::Array(a) = v else {
            panic!("an array")
        };
        let a = a.as_any().downcast_ref::<StringArray>().expect("strings");
        a.iter().map(|s| s.map(str::to_string)).collect()
    }

    /// The same text as DataFusion's `to_char` for every pattern field, over times in and
    /// out of order across days, hours and minutes, with NULLs, at every timestamp unit.
    #[test]
    fn date_format_answers_as_to_char() {
        let to_char = datafusion::functions::datetime::to_char();
        let ours = DateFormat::default();
        // Mostly increasing times with jumps back, over several days.
        let millis: Vec<Option<i64>> = (0..400i64)
            .map(|i| {
                (i % 37 != 5).then_some(1_700_000_000_000 + i * 997_331 - (i % 9) * 86_400_000)
            })
            .collect();
        let ms: ArrayRef = Arc::new(TimestampMillisecondArray::from(millis));
        let patterns = [
            "%Y-%m-%d",
            "%H:%M",
            "%Y-%m-%d %H:%M:%S%.3f",
            "%a %b %e %I %p",
            "%s",
            "%j %U %W %u",
            "%y%m%d%H%M%S",
            "%%Y literal",
        ];
        for unit in [
            TimeUnit::Second,
            TimeUnit::Millisecond,
            TimeUnit::Microsecond,
            TimeUnit::Nanosecond,
        ] {
            let ts = datafusion::arrow::compute::cast(&ms, &DataType::Timestamp(unit, None))
                .expect("cast");
            for p in patterns {
                // Formatted here, not handed on to `to_char`.
                assert!(format_timestamps(&ts, unit, p).is_some(), "{p} at {unit:?}");
                assert_eq!(
                    strings(call(&ours, &ts, p)),
                    strings(call(to_char.inner().as_ref(), &ts, p)),
                    "{p} at {unit:?}"
                );
            }
        }
    }
}
