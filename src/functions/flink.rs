//! Flink built-in functions DataFusion lacks: `LOCATE`, `TIMESTAMPDIFF` / `TIMESTAMPADD`,
//! `UNIX_TIMESTAMP` / `FROM_UNIXTIME`, `JSON_VALUE` / `JSON_QUERY` / `JSON_EXISTS`,
//! `PARSE_URL`, `MD5` / `SHA2` / `SHA224` … `SHA512` and `TYPEOF`. `IF(c, a, b)` is rewritten to
//! `CASE` by the planner, and `TIMESTAMPDIFF`'s unit to a string argument.
//!
//! Each follows Flink's function reference; an argument that cannot be read (a malformed JSON
//! document or URL) gives NULL, as in Flink, rather than failing the job.

use std::sync::Arc;

use chrono::{Datelike, NaiveDateTime};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMillisecondType};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use super::map_rows;

/// Register this module's functions.
pub fn register(ctx: &SessionContext) {
    for f in [
        Func::Locate,
        Func::TimestampDiff,
        Func::TimestampAdd,
        Func::UnixTimestamp,
        Func::FromUnixtime,
        Func::JsonValue,
        Func::JsonQuery,
        Func::JsonExists,
        Func::ParseUrl,
        Func::Md5,
        Func::Sha2,
        Func::Sha(224),
        Func::Sha(256),
        Func::Sha(384),
        Func::Sha(512),
    ] {
        ctx.register_udf(ScalarUDF::from(Flink::new(f)));
    }
    ctx.register_udf(ScalarUDF::from(TypeOf::default()));
}

/// Which function a [`Flink`] UDF is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Func {
    Locate,
    TimestampDiff,
    TimestampAdd,
    UnixTimestamp,
    FromUnixtime,
    JsonValue,
    JsonQuery,
    JsonExists,
    ParseUrl,
    Md5,
    Sha2,
    Sha(u16),
}

/// The name the planner gives `TIMESTAMPDIFF` (its unit becomes a string argument).
pub const TIMESTAMPDIFF: &str = "weir_timestampdiff";
/// The name the planner gives `TIMESTAMPADD`.
pub const TIMESTAMPADD: &str = "weir_timestampadd";

/// A row-wise Flink function (see the module doc).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Flink {
    func: Func,
    name: String,
    signature: Signature,
}

impl Flink {
    fn new(func: Func) -> Self {
        use DataType::{Int64, Utf8};
        use TypeSignature::{Exact, Nullary};
        let (name, sigs, volatility) = match func {
            Func::Locate => (
                "locate".to_string(),
                vec![Exact(vec![Utf8, Utf8]), Exact(vec![Utf8, Utf8, Int64])],
                Volatility::Immutable,
            ),
            // Any TIMESTAMP or DATE: cast to milliseconds when invoked.
            Func::TimestampDiff => (
                TIMESTAMPDIFF.to_string(),
                vec![TypeSignature::Any(3)],
                Volatility::Immutable,
            ),
            Func::TimestampAdd => (
                TIMESTAMPADD.to_string(),
                vec![TypeSignature::Any(3)],
                Volatility::Immutable,
            ),
            Func::UnixTimestamp => (
                "unix_timestamp".to_string(),
                vec![Nullary, Exact(vec![Utf8]), Exact(vec![Utf8, Utf8])],
                Volatility::Volatile,
            ),
            Func::FromUnixtime => (
                "from_unixtime".to_string(),
                vec![Exact(vec![Int64]), Exact(vec![Int64, Utf8])],
                Volatility::Immutable,
            ),
            Func::JsonValue | Func::JsonQuery | Func::JsonExists => (
                match func {
                    Func::JsonValue => "json_value",
                    Func::JsonQuery => "json_query",
                    _ => "json_exists",
                }
                .to_string(),
                vec![Exact(vec![Utf8, Utf8])],
                Volatility::Immutable,
            ),
            Func::ParseUrl => (
                "parse_url".to_string(),
                vec![Exact(vec![Utf8, Utf8]), Exact(vec![Utf8, Utf8, Utf8])],
                Volatility::Immutable,
            ),
            Func::Md5 => (
                "md5".to_string(),
                vec![Exact(vec![Utf8])],
                Volatility::Immutable,
            ),
            Func::Sha2 => (
                "sha2".to_string(),
                vec![Exact(vec![Utf8, Int64])],
                Volatility::Immutable,
            ),
            Func::Sha(bits) => (
                format!("sha{bits}"),
                vec![Exact(vec![Utf8])],
                Volatility::Immutable,
            ),
        };
        Self {
            func,
            name,
            signature: Signature::one_of(sigs, volatility),
        }
    }
}

impl ScalarUDFImpl for Flink {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(match self.func {
            Func::Locate => DataType::Int32,
            Func::TimestampDiff => DataType::Int32,
            Func::TimestampAdd => DataType::Timestamp(TimeUnit::Millisecond, None),
            Func::UnixTimestamp => DataType::Int64,
            Func::JsonExists => DataType::Boolean,
            _ => DataType::Utf8,
        })
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        if self.func == Func::UnixTimestamp && args.args.is_empty() {
            let now = chrono::Utc::now().timestamp();
            return Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(now))));
        }
        map_rows(&args, |a| self.rows(a))
    }
}

/// The text of row `i` of a string column, or None when NULL.
fn text(a: &ArrayRef, i: usize) -> Option<&str> {
    let s = a.as_string::<i32>();
    s.is_valid(i).then(|| s.value(i))
}

fn int(a: &ArrayRef, i: usize) -> Option<i64> {
    let s = a.as_primitive::<Int64Type>();
    s.is_valid(i).then(|| s.value(i))
}

fn millis(a: &ArrayRef, i: usize) -> Option<i64> {
    let s = a.as_primitive::<TimestampMillisecondType>();
    s.is_valid(i).then(|| s.value(i))
}

impl Flink {
    fn rows(&self, a: &[ArrayRef]) -> datafusion::error::Result<ArrayRef> {
        let n = a.first().map_or(0, |x| x.len());
        Ok(match self.func {
            Func::Locate => {
                let mut out = Int32Builder::with_capacity(n);
                for i in 0..n {
                    let start = match a.get(2) {
                        Some(p) => int(p, i),
                        None => Some(1),
                    };
                    out.append_option(match (text(&a[0], i), text(&a[1], i), start) {
                        (Some(needle), Some(hay), Some(start)) => Some(locate(needle, hay, start)),
                        _ => None,
                    });
                }
                Arc::new(out.finish())
            }
            Func::TimestampDiff => {
                let (t1, t2) = (
                    cast(&a[1], &DataType::Timestamp(TimeUnit::Millisecond, None))?,
                    cast(&a[2], &DataType::Timestamp(TimeUnit::Millisecond, None))?,
                );
                let unit = cast(&a[0], &DataType::Utf8)?;
                let mut out = Int32Builder::with_capacity(n);
                for i in 0..n {
                    out.append_option(match (text(&unit, i), millis(&t1, i), millis(&t2, i)) {
                        (Some(unit), Some(x), Some(y)) => timestamp_diff(unit, x, y),
                        _ => None,
                    });
                }
                Arc::new(out.finish())
            }
            Func::TimestampAdd => {
                let t = cast(&a[2], &DataType::Timestamp(TimeUnit::Millisecond, None))?;
                let (unit, k) = (
                    cast(&a[0], &DataType::Utf8)?,
                    cast(&a[1], &DataType::Int64)?,
                );
                let a = [unit, k];
                let mut out = TimestampMillisecondBuilder::with_capacity(n);
                for i in 0..n {
                    out.append_option(match (text(&a[0], i), int(&a[1], i), millis(&t, i)) {
                        (Some(unit), Some(k), Some(x)) => timestamp_add(unit, k, x),
                        _ => None,
                    });
                }
                Arc::new(out.finish())
            }
            Func::UnixTimestamp => {
                let mut out = Int64Builder::with_capacity(n);
                let mut pattern: Option<(String, String)> = None;
                for i in 0..n {
                    let chrono_pattern = match a.get(1) {
                        None => "%Y-%m-%d %H:%M:%S".to_string(),
                        Some(p) => match text(p, i) {
                            None => {
                                out.append_null();
                                continue;
                            }
                            Some(java) => {
                                if pattern.as_ref().is_none_or(|(j, _)| j != java) {
                                    pattern = Some((
                                        java.to_string(),
                                        crate::planner::rewrite::java_to_chrono(java),
                                    ));
                                }
                                pattern.as_ref().map(|(_, c)| c.clone()).unwrap_or_default()
                            }
                        },
                    };
                    out.append_option(text(&a[0], i).and_then(|s| {
                        NaiveDateTime::parse_from_str(s.trim(), &chrono_pattern)
                            .ok()
                            .map(|t| t.and_utc().timestamp())
                    }));
                }
                Arc::new(out.finish())
            }
            Func::FromUnixtime => {
                let mut out = StringBuilder::with_capacity(n, n * 19);
                for i in 0..n {
                    let pattern = match a.get(1) {
                        None => Some("%Y-%m-%d %H:%M:%S".to_string()),
                        Some(p) => text(p, i).map(crate::planner::rewrite::java_to_chrono),
                    };
                    out.append_option(match (int(&a[0], i), pattern) {
                        (Some(secs), Some(p)) => chrono::DateTime::from_timestamp(secs, 0)
                            .map(|t| t.naive_utc().format(&p).to_string()),
                        _ => None,
                    });
                }
                Arc::new(out.finish())
            }
            Func::JsonValue | Func::JsonQuery => {
                let mut out = StringBuilder::with_capacity(n, n * 8);
                for i in 0..n {
                    let found = match (text(&a[0], i), text(&a[1], i)) {
                        (Some(doc), Some(path)) => json_at(doc, path),
                        _ => None,
                    };
                    out.append_option(found.and_then(|v| match (self.func, v) {
                        // JSON_VALUE: scalars only, strings unquoted.
                        (Func::JsonValue, serde_json::Value::String(s)) => Some(s),
                        (Func::JsonValue, serde_json::Value::Null) => None,
                        (
                            Func::JsonValue,
                            v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)),
                        ) => Some(v.to_string()),
                        (Func::JsonValue, _) => None,
                        // JSON_QUERY: arrays and objects, as JSON text.
                        (_, v @ (serde_json::Value::Array(_) | serde_json::Value::Object(_))) => {
                            Some(v.to_string())
                        }
                        _ => None,
                    }));
                }
                Arc::new(out.finish())
            }
            Func::JsonExists => {
                let mut out = BooleanBuilder::with_capacity(n);
                for i in 0..n {
                    out.append_option(match (text(&a[0], i), text(&a[1], i)) {
                        (Some(doc), Some(path)) => Some(json_at(doc, path).is_some()),
                        _ => None,
                    });
                }
                Arc::new(out.finish())
            }
            Func::ParseUrl => {
                let mut out = StringBuilder::with_capacity(n, n * 8);
                for i in 0..n {
                    let key = match a.get(2) {
                        Some(k) => match text(k, i) {
                            None => {
                                out.append_null();
                                continue;
                            }
                            some => some,
                        },
                        None => None,
                    };
                    out.append_option(match (text(&a[0], i), text(&a[1], i)) {
                        (Some(u), Some(part)) => parse_url(u, part, key),
                        _ => None,
                    });
                }
                Arc::new(out.finish())
            }
            Func::Md5 | Func::Sha2 | Func::Sha(_) => {
                let mut out = StringBuilder::with_capacity(n, n * 64);
                for i in 0..n {
                    let bits = match self.func {
                        Func::Md5 => Some(0),
                        Func::Sha(b) => Some(i64::from(b)),
                        _ => int(&a[1], i),
                    };
                    out.append_option(match (text(&a[0], i), bits) {
                        (Some(s), Some(bits)) => digest(s.as_bytes(), bits),
                        _ => None,
                    });
                }
                Arc::new(out.finish())
            }
        })
    }
}

/// Flink's LOCATE: the 1-based character position of `needle` in `hay` at or after `start`;
/// 0 when absent.
fn locate(needle: &str, hay: &str, start: i64) -> i32 {
    if start < 1 {
        return 0;
    }
    let skip = (start - 1) as usize;
    let Some((byte, _)) = hay
        .char_indices()
        .nth(skip)
        .or((skip == 0).then_some((0, ' ')))
    else {
        return 0;
    };
    match hay[byte..].find(needle) {
        Some(at) => (hay[..byte + at].chars().count() + 1) as i32,
        None => 0,
    }
}

/// Whole `unit`s from `x` to `y` (epoch milliseconds), as Flink's TIMESTAMPDIFF.
fn timestamp_diff(unit: &str, x: i64, y: i64) -> Option<i32> {
    let ms = y - x;
    let months = || {
        let (a, b) = (
            chrono::DateTime::from_timestamp_millis(x)?.naive_utc(),
            chrono::DateTime::from_timestamp_millis(y)?.naive_utc(),
        );
        let mut m = (b.year() - a.year()) * 12 + b.month() as i32 - a.month() as i32;
        // A month is whole only once the day and time of month are reached.
        let later =
            |p: &NaiveDateTime, q: &NaiveDateTime| (p.day(), p.time()) > (q.day(), q.time());
        if m > 0 && later(&a, &b) {
            m -= 1;
        } else if m < 0 && later(&b, &a) {
            m += 1;
        }
        Some(m)
    };
    let v = match unit.to_ascii_uppercase().as_str() {
        "MICROSECOND" => ms * 1000,
        "MILLISECOND" => ms,
        "SECOND" => ms / 1000,
        "MINUTE" => ms / 60_000,
        "HOUR" => ms / 3_600_000,
        "DAY" => ms / 86_400_000,
        "WEEK" => ms / (7 * 86_400_000),
        "MONTH" => i64::from(months()?),
        "QUARTER" => i64::from(months()? / 3),
        "YEAR" => i64::from(months()? / 12),
        _ => return None,
    };
    i32::try_from(v).ok()
}

/// `x` (epoch milliseconds) plus `k` `unit`s, as Flink's TIMESTAMPADD.
fn timestamp_add(unit: &str, k: i64, x: i64) -> Option<i64> {
    let fixed = |ms: i64| x.checked_add(k.checked_mul(ms)?);
    let months = |m: i64| {
        let t = chrono::DateTime::from_timestamp_millis(x)?.naive_utc();
        let shifted = if m >= 0 {
            t.checked_add_months(chrono::Months::new(u32::try_from(m).ok()?))?
        } else {
            t.checked_sub_months(chrono::Months::new(u32::try_from(-m).ok()?))?
        };
        Some(shifted.and_utc().timestamp_millis())
    };
    match unit.to_ascii_uppercase().as_str() {
        "MILLISECOND" => fixed(1),
        "SECOND" => fixed(1000),
        "MINUTE" => fixed(60_000),
        "HOUR" => fixed(3_600_000),
        "DAY" => fixed(86_400_000),
        "WEEK" => fixed(7 * 86_400_000),
        "MONTH" => months(k),
        "QUARTER" => months(k.checked_mul(3)?),
        "YEAR" => months(k.checked_mul(12)?),
        _ => None,
    }
}

/// The value at a JSON path (`$`, `.key`, `['key']`, `[n]`) of a document; None when the
/// document or path does not parse, or nothing is there.
fn json_at(doc: &str, path: &str) -> Option<serde_json::Value> {
    match json_lookup(doc, path) {
        JsonLookup::Found(v) => Some(v),
        JsonLookup::Empty | JsonLookup::Error => None,
    }
}

/// What a JSON path finds in a document (Flink's SQL/JSON path semantics).
#[derive(Debug, PartialEq)]
pub(crate) enum JsonLookup {
    /// The value at the path.
    Found(serde_json::Value),
    /// Nothing there, in lax mode (the default).
    Empty,
    /// The document is not JSON, the path is malformed, or (in strict mode) nothing is there.
    Error,
}

/// Look `path` (`[lax|strict] $.a.b[0]['c']`) up in `doc`.
pub(crate) fn json_lookup(doc: &str, path: &str) -> JsonLookup {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(doc) else {
        return JsonLookup::Error;
    };
    let path = path.trim();
    let (strict, path) = match path.split_once(char::is_whitespace) {
        Some((mode, rest)) if mode.eq_ignore_ascii_case("strict") => (true, rest.trim_start()),
        Some((mode, rest)) if mode.eq_ignore_ascii_case("lax") => (false, rest.trim_start()),
        _ => (false, path),
    };
    let missing = if strict {
        JsonLookup::Error
    } else {
        JsonLookup::Empty
    };
    let Some(mut p) = path.strip_prefix('$') else {
        return JsonLookup::Error;
    };
    while !p.is_empty() {
        if let Some(rest) = p.strip_prefix('.') {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end == 0 && !rest.starts_with('[') {
                return JsonLookup::Error;
            }
            if end > 0 {
                match v.get_mut(&rest[..end]) {
                    Some(x) => v = x.take(),
                    None => return missing,
                }
            }
            p = &rest[end..];
        } else if let Some(rest) = p.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                return JsonLookup::Error;
            };
            let inner = rest[..end].trim();
            let key = inner
                .strip_prefix('\'')
                .and_then(|k| k.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|k| k.strip_suffix('"')));
            let found = match key {
                Some(k) => v.get_mut(k),
                None => match inner.parse::<usize>() {
                    Ok(i) => v.get_mut(i),
                    Err(_) => return JsonLookup::Error,
                },
            };
            match found {
                Some(x) => v = x.take(),
                None => return missing,
            }
            p = &rest[end + 1..];
        } else {
            return JsonLookup::Error;
        }
    }
    JsonLookup::Found(v)
}

/// Flink's PARSE_URL: HOST, PATH, QUERY (or one query parameter), REF, PROTOCOL, FILE,
/// AUTHORITY or USERINFO of a URL.
fn parse_url(u: &str, part: &str, key: Option<&str>) -> Option<String> {
    let url = url::Url::parse(u).ok()?;
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    match part {
        "HOST" => url.host_str().map(str::to_string),
        "PATH" => Some(url.path().to_string()),
        "QUERY" => match key {
            None => url.query().map(str::to_string),
            Some(k) => url
                .query()?
                .split('&')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                .map(str::to_string),
        },
        "REF" => url.fragment().map(str::to_string),
        "PROTOCOL" => Some(url.scheme().to_string()),
        "FILE" => Some(match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }),
        "AUTHORITY" => {
            let host = url.host_str()?;
            let userinfo = some(url.username()).map(|u| match url.password() {
                Some(p) => format!("{u}:{p}@"),
                None => format!("{u}@"),
            });
            Some(match url.port() {
                Some(port) => format!("{}{host}:{port}", userinfo.unwrap_or_default()),
                None => format!("{}{host}", userinfo.unwrap_or_default()),
            })
        }
        "USERINFO" => some(url.username()).map(|u| match url.password() {
            Some(p) => format!("{u}:{p}"),
            None => u,
        }),
        _ => None,
    }
}

/// Hex digest: MD5 for `bits` 0, else SHA-224/256/384/512 (NULL for other lengths).
fn digest(bytes: &[u8], bits: i64) -> Option<String> {
    use sha2::Digest;
    Some(match bits {
        0 => hex::encode(<md5::Md5 as md5::Digest>::digest(bytes)),
        224 => hex::encode(sha2::Sha224::digest(bytes)),
        256 => hex::encode(sha2::Sha256::digest(bytes)),
        384 => hex::encode(sha2::Sha384::digest(bytes)),
        512 => hex::encode(sha2::Sha512::digest(bytes)),
        _ => return None,
    })
}

/// `TYPEOF(x)`: x's SQL type as Flink prints it (`INT NOT NULL`, `STRING`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TypeOf {
    signature: Signature,
}

impl Default for TypeOf {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for TypeOf {
    fn name(&self) -> &str {
        "typeof"
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
        let field = &args.arg_fields[0];
        let mut name = crate::sql::types::display_type(field.data_type());
        if !field.is_nullable() {
            name.push_str(" NOT NULL");
        }
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flink_reference_examples() {
        // LOCATE('b', 'abcb') = 2; LOCATE('b', 'abcb', 3) = 4.
        assert_eq!(locate("b", "abcb", 1), 2);
        assert_eq!(locate("b", "abcb", 3), 4);
        assert_eq!(locate("z", "abcb", 1), 0);
        // TIMESTAMPDIFF(DAY, TIMESTAMP '2003-01-02 10:00:00', TIMESTAMP '2003-01-03 10:00:00') = 1.
        let t = |s: &str| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc()
                .timestamp_millis()
        };
        assert_eq!(
            timestamp_diff("DAY", t("2003-01-02 10:00:00"), t("2003-01-03 10:00:00")),
            Some(1)
        );
        assert_eq!(
            timestamp_diff("MONTH", t("2003-01-31 10:00:00"), t("2003-02-28 10:00:00")),
            Some(0)
        );
        assert_eq!(
            timestamp_add("MONTH", 1, t("2003-01-31 10:00:00")),
            Some(t("2003-02-28 10:00:00"))
        );
        // JSON_VALUE('{"a": true}', '$.a') = 'true'; JSON_VALUE('{"a": [1, {"b": "x"}]}',
        // '$.a[1].b') = 'x'.
        assert_eq!(
            json_at(r#"{"a": [1, {"b": "x"}]}"#, "$.a[1].b"),
            Some(serde_json::json!("x"))
        );
        assert_eq!(json_at(r#"{"a": true}"#, "$.b"), None);
        assert_eq!(json_at("not json", "$.a"), None);
        // Path modes: a missing member is empty in lax mode (the default), an error in strict.
        use serde_json::json;
        let doc = r#"{"a.b": [0.998, 0.996], "c": {"d": 1}}"#;
        assert_eq!(
            json_lookup(doc, r#"$.["a.b"][0]"#),
            JsonLookup::Found(json!(0.998))
        );
        assert_eq!(json_lookup(doc, "lax $.c.d"), JsonLookup::Found(json!(1)));
        assert_eq!(
            json_lookup(doc, "STRICT $.c.d"),
            JsonLookup::Found(json!(1))
        );
        assert_eq!(json_lookup(doc, "lax $.x[0]"), JsonLookup::Empty);
        assert_eq!(json_lookup(doc, "strict $.x[0]"), JsonLookup::Error);
        assert_eq!(json_lookup(doc, "$.c[7]"), JsonLookup::Empty);
        assert_eq!(json_lookup(doc, "c.d"), JsonLookup::Error);
        assert_eq!(json_lookup("{", "$.a"), JsonLookup::Error);
        // PARSE_URL('http://facebook.com/path1/p.php?k1=v1&k2=v2#Ref1', 'HOST') = facebook.com
        let u = "http://facebook.com/path1/p.php?k1=v1&k2=v2#Ref1";
        assert_eq!(parse_url(u, "HOST", None).as_deref(), Some("facebook.com"));
        assert_eq!(parse_url(u, "QUERY", Some("k1")).as_deref(), Some("v1"));
        assert_eq!(parse_url(u, "REF", None).as_deref(), Some("Ref1"));
        assert_eq!(
            parse_url(u, "FILE", None).as_deref(),
            Some("/path1/p.php?k1=v1&k2=v2")
        );
        // MD5('') and SHA256('abc').
        assert_eq!(
            digest(b"", 0).as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(
            digest(b"abc", 256).as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }
}
