//! String functions with Flink's semantics.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use super::map_rows;

/// `REGEXP_REPLACE(str, regex, replacement)`: every match of `regex` replaced by
/// `replacement`, taken literally (Flink quotes it: `$1` is not a group). NULL when an argument
/// is NULL or the pattern is not a valid regular expression.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RegexpReplace {
    signature: Signature,
}

impl Default for RegexpReplace {
    fn default() -> Self {
        Self {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8, DataType::Utf8],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for RegexpReplace {
    fn name(&self) -> &str {
        "regexp_replace"
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
        map_rows(&args, |a| {
            let (s, p, r) = (
                a[0].as_string::<i32>(),
                a[1].as_string::<i32>(),
                a[2].as_string::<i32>(),
            );
            let mut out = StringBuilder::with_capacity(s.len(), s.value_data().len());
            // The pattern is nearly always a constant: compile it once per batch.
            let mut cached: Option<(String, Option<regex::Regex>)> = None;
            for i in 0..s.len() {
                if s.is_null(i) || p.is_null(i) || r.is_null(i) {
                    out.append_null();
                    continue;
                }
                let pattern = p.value(i);
                if cached.as_ref().is_none_or(|(c, _)| c != pattern) {
                    cached = Some((pattern.to_string(), regex::Regex::new(pattern).ok()));
                }
                match cached.as_ref().and_then(|(_, re)| re.as_ref()) {
                    Some(re) => {
                        out.append_value(re.replace_all(s.value(i), regex::NoExpand(r.value(i))))
                    }
                    None => out.append_null(),
                }
            }
            Ok(Arc::new(out.finish()) as ArrayRef)
        })
    }
}

/// `REGEXP_EXTRACT(str, regex[, index])` (`weir_regexp_extract(str, regex, index)`, the
/// planner passing 0 for a missing index): group `index` of the first match of `regex` in
/// `str`, 0 being the whole match. NULL when an argument is NULL, nothing matches, the group
/// did not take part in the match or does not exist, or the pattern is not a valid regular
/// expression (Flink answers NULL for each).
///
/// The pattern is compiled once per batch (once per distinct pattern when it is a column), and
/// only the asked group is copied out.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RegexpExtract {
    signature: Signature,
}

impl Default for RegexpExtract {
    fn default() -> Self {
        Self {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8, DataType::Int64],
                Volatility::Immutable,
            ),
        }
    }
}

/// Row `i` of a string argument, a scalar standing for every row.
fn str_at(a: &ColumnarValue, i: usize) -> Option<&str> {
    match a {
        ColumnarValue::Scalar(ScalarValue::Utf8(v)) => v.as_deref(),
        ColumnarValue::Array(a) => {
            let a = a.as_string::<i32>();
            a.is_valid(i).then(|| a.value(i))
        }
        _ => None,
    }
}

/// Row `i` of a BIGINT argument, a scalar standing for every row.
fn int_at(a: &ColumnarValue, i: usize) -> Option<i64> {
    match a {
        ColumnarValue::Scalar(ScalarValue::Int64(v)) => *v,
        ColumnarValue::Array(a) => {
            let a = a.as_primitive::<Int64Type>();
            a.is_valid(i).then(|| a.value(i))
        }
        _ => None,
    }
}

impl ScalarUDFImpl for RegexpExtract {
    fn name(&self) -> &str {
        "weir_regexp_extract"
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
        let [s, p, g] = args.args.as_slice() else {
            return datafusion::common::exec_err!("REGEXP_EXTRACT takes 2 or 3 arguments");
        };
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        // A group is usually a short part of the text: start small, let the builder grow.
        let mut out = StringBuilder::with_capacity(rows, rows * 8);
        let mut cached: Option<(String, Option<(regex::Regex, regex::CaptureLocations)>)> = None;
        for i in 0..rows {
            let (Some(text), Some(pattern), Some(group)) =
                (str_at(s, i), str_at(p, i), int_at(g, i))
            else {
                out.append_null();
                continue;
            };
            if cached.as_ref().is_none_or(|(c, _)| c != pattern) {
                let re = regex::Regex::new(pattern).ok().map(|re| {
                    let locs = re.capture_locations();
                    (re, locs)
                });
                cached = Some((pattern.to_string(), re));
            }
            let found = match cached.as_mut().and_then(|(_, re)| re.as_mut()) {
                Some((re, locs)) => usize::try_from(group)
                    .ok()
                    .filter(|g| *g < locs.len())
                    .and_then(|g| re.captures_read(locs, text).and_then(|_| locs.get(g))),
                None => None,
            };
            match found {
                Some((from, to)) => out.append_value(&text[from..to]),
                None => out.append_null(),
            }
        }
        let out = out.finish();
        Ok(match scalar {
            true => ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?),
            false => ColumnarValue::Array(Arc::new(out)),
        })
    }
}

/// `CHR(n)`: the character whose code is the low 8 bits of `n` (`CHR(353)` = `a`); `''` for a
/// negative `n`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Chr {
    signature: Signature,
}

impl Default for Chr {
    fn default() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Int64], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Chr {
    fn name(&self) -> &str {
        "chr"
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
        map_rows(&args, |a| {
            let n = a[0].as_primitive::<Int64Type>();
            let mut out = StringBuilder::with_capacity(n.len(), n.len());
            let mut buf = [0u8; 4];
            for v in n.iter() {
                match v {
                    None => out.append_null(),
                    Some(v) if v < 0 => out.append_value(""),
                    Some(v) => out.append_value(char::from((v & 0xFF) as u8).encode_utf8(&mut buf)),
                }
            }
            Ok(Arc::new(out.finish()) as ArrayRef)
        })
    }
}

/// `LEFT(str, n)` / `RIGHT(str, n)`: the first / last `n` characters; `''` when `n` is not
/// positive (DataFusion's, like PostgreSQL's, drop characters for a negative `n`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LeftRight {
    signature: Signature,
    right: bool,
}

impl LeftRight {
    /// `LEFT`.
    pub fn left() -> Self {
        Self::new(false)
    }

    /// `RIGHT`.
    pub fn right() -> Self {
        Self::new(true)
    }

    fn new(right: bool) -> Self {
        Self {
            signature: Signature::one_of(
                vec![TypeSignature::Exact(vec![DataType::Utf8, DataType::Int64])],
                Volatility::Immutable,
            ),
            right,
        }
    }
}

impl ScalarUDFImpl for LeftRight {
    fn name(&self) -> &str {
        if self.right { "right" } else { "left" }
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
        map_rows(&args, |a| {
            let (s, n) = (a[0].as_string::<i32>(), a[1].as_primitive::<Int64Type>());
            let mut out = StringBuilder::with_capacity(s.len(), s.value_data().len());
            for i in 0..s.len() {
                if s.is_null(i) || n.is_null(i) {
                    out.append_null();
                    continue;
                }
                let (text, n) = (s.value(i), n.value(i).max(0) as usize);
                let chars = text.chars().count();
                let piece = if n == 0 {
                    ""
                } else if n >= chars {
                    text
                } else if self.right {
                    let start = text.char_indices().nth(chars - n).map_or(0, |(b, _)| b);
                    &text[start..]
                } else {
                    let end = text.char_indices().nth(n).map_or(text.len(), |(b, _)| b);
                    &text[..end]
                };
                out.append_value(piece);
            }
            Ok(Arc::new(out.finish()) as ArrayRef)
        })
    }
}

/// `CAST(x AS STRING)` (and VARCHAR, CHAR) with Flink's text forms: a TIMESTAMP(p) prints as
/// `yyyy-MM-dd HH:mm:ss` with the fraction padded to its precision (`.SSS` for
/// TIMESTAMP(3)), a BOOLEAN as `TRUE` / `FALSE`. Other types cast as DataFusion does.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CastToString {
    signature: Signature,
    /// The session time zone TIMESTAMP_LTZ values print in.
    zone: super::zone::SessionZone,
}

/// The name the planner rewrites string casts to.
pub const CAST_TO_STRING: &str = "cast_to_string";

impl Default for CastToString {
    fn default() -> Self {
        Self::in_zone("UTC")
    }
}

impl CastToString {
    /// Printing TIMESTAMP_LTZ values in the zone named `zone`.
    pub fn in_zone(zone: &str) -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
            zone: super::zone::SessionZone::new(zone),
        }
    }
}

impl ScalarUDFImpl for CastToString {
    fn name(&self) -> &str {
        CAST_TO_STRING
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
        use datafusion::arrow::datatypes::TimeUnit;
        map_rows(&args, |a| {
            let local = self.zone.localize(&a[0])?;
            let x = &local;
            match x.data_type() {
                DataType::Timestamp(unit, _) => {
                    let ts = datafusion::arrow::compute::cast(
                        x,
                        &DataType::Timestamp(TimeUnit::Nanosecond, None),
                    )?;
                    let ns =
                        ts.as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>();
                    let digits = match unit {
                        TimeUnit::Second => 0,
                        TimeUnit::Millisecond => 3,
                        TimeUnit::Microsecond => 6,
                        TimeUnit::Nanosecond => 9,
                    };
                    let mut out = StringBuilder::with_capacity(ns.len(), ns.len() * 23);
                    let mut text = TimestampText::default();
                    for v in ns.iter() {
                        match v {
                            None => out.append_null(),
                            Some(v) => out.append_value(text.format(v, digits)),
                        }
                    }
                    Ok(Arc::new(out.finish()) as ArrayRef)
                }
                DataType::Boolean => {
                    let b = x.as_boolean();
                    let out: datafusion::arrow::array::StringArray = b
                        .iter()
                        .map(|v| v.map(|v| if v { "TRUE" } else { "FALSE" }))
                        .collect();
                    Ok(Arc::new(out) as ArrayRef)
                }
                _ => Ok(datafusion::arrow::compute::cast(x, &DataType::Utf8)?),
            }
        })
    }
}

/// Flink's text of TIMESTAMPs (`yyyy-MM-dd HH:mm:ss` and `digits` of fraction), the text of
/// a second kept while rows stay within it: chrono formats once per second of input, not
/// once per row.
#[derive(Default)]
struct TimestampText {
    /// The second last formatted, and its text (None: out of chrono's range).
    second: Option<(i64, Option<String>)>,
    out: String,
}

impl TimestampText {
    /// Nanoseconds since the epoch as Flink prints a TIMESTAMP with `digits` of fraction.
    fn format(&mut self, ns: i64, digits: usize) -> &str {
        let secs = ns.div_euclid(1_000_000_000);
        let frac = ns.rem_euclid(1_000_000_000);
        if self.second.as_ref().is_none_or(|(s, _)| *s != secs) {
            let text = chrono::DateTime::from_timestamp(secs, 0)
                .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string());
            self.second = Some((secs, text));
        }
        self.out.clear();
        match self.second.as_ref().and_then(|(_, t)| t.as_ref()) {
            Some(t) => self.out.push_str(t),
            None => {
                self.out.push_str(&ns.to_string());
                return &self.out;
            }
        }
        if digits > 0 {
            self.out.push('.');
            let mut scale = 100_000_000;
            let mut rest = frac;
            for _ in 0..digits.min(9) {
                self.out.push(char::from(b'0' + (rest / scale) as u8));
                rest %= scale;
                scale /= 10;
            }
        }
        &self.out
    }
}

/// Nanoseconds since the epoch as Flink prints a TIMESTAMP with `digits` of fraction (the
/// reference [`TimestampText`] is tested against).
#[cfg(test)]
fn format_timestamp(ns: i64, digits: usize) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let Some(t) = chrono::DateTime::from_timestamp(secs, frac as u32) else {
        return ns.to_string();
    };
    let mut s = t.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string();
    if digits > 0 {
        let f = format!("{frac:09}");
        s.push('.');
        s.push_str(&f[..digits]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-second text answers as formatting each row afresh: rows within a second, across
    /// seconds, before 1970, out of chrono's range, at every number of digits.
    #[test]
    fn timestamp_text_reuses_a_second_and_answers_the_same() {
        let mut values: Vec<i64> = vec![0, -1, 1, 999_999_999, 1_000_000_000, -1_000_000_001];
        let base = 1_700_000_000_123_456_789i64;
        for i in 0..200i64 {
            values.push(base + i * 7_654_321);
            values.push(-base / 3 + i * 123_456_789);
        }
        values.extend([i64::MAX, i64::MIN, base, base]);
        for digits in [0, 3, 6, 9] {
            let mut text = TimestampText::default();
            for v in &values {
                assert_eq!(
                    text.format(*v, digits),
                    format_timestamp(*v, digits),
                    "{v} {digits}"
                );
            }
        }
    }
}
