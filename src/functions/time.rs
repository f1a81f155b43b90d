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
