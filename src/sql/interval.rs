//! Constant interval literals (`INTERVAL '10' SECOND`, `INTERVAL '1 minute'`) as milliseconds.

use sqlparser::ast::{DateTimeField, Expr, Value};

use crate::{Result, not_supported, plan_err};

/// Milliseconds of a constant `INTERVAL` expression, as used by window sizes and watermark delays.
pub fn interval_ms(expr: &Expr) -> Result<i64> {
    let Expr::Interval(iv) = expr else {
        return plan_err!(
            "expected an INTERVAL literal such as INTERVAL '10' SECOND, found {expr}"
        );
    };
    if iv.last_field.is_some() {
        return not_supported!("interval ranges such as {expr}; use a single unit");
    }
    let text = match iv.value.as_ref() {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.to_string(),
            other => return plan_err!("expected a number in {expr}, found {other}"),
        },
        other => return plan_err!("expected a constant in {expr}, found {other}"),
    };
    let text = text.trim();
    match &iv.leading_field {
        Some(field) => {
            let n: f64 = text
                .parse()
                .map_err(|_| crate::Error::Plan(format!("'{text}' in {expr} is not a number")))?;
            Ok((n * unit_ms(field, expr)? as f64).round() as i64)
        }
        None => parse_interval_text(text).ok_or_else(|| {
            crate::Error::Plan(format!(
                "cannot read interval '{text}' (write e.g. INTERVAL '10' SECOND)"
            ))
        }),
    }
}

fn unit_ms(field: &DateTimeField, expr: &Expr) -> Result<i64> {
    use DateTimeField as F;
    Ok(match field {
        F::Millisecond | F::Milliseconds => 1,
        F::Second | F::Seconds => 1_000,
        F::Minute | F::Minutes => 60_000,
        F::Hour | F::Hours => 3_600_000,
        F::Day | F::Days => 86_400_000,
        F::Week(_) | F::Weeks => 7 * 86_400_000,
        other => {
            return not_supported!(
                "interval unit {other} in {expr} (months and years have no fixed length)"
            );
        }
    })
}

/// Parse `'10 seconds'`, `'1 minute 30 seconds'`, `'4 s'`.
pub fn parse_interval_text(text: &str) -> Option<i64> {
    let mut total = 0i64;
    let mut words = text.split_whitespace();
    let mut any = false;
    while let Some(num) = words.next() {
        let n: f64 = num.parse().ok()?;
        let unit = words.next()?.to_ascii_lowercase();
        let ms = match unit.trim_end_matches('s') {
            "m" if unit == "ms" => 1,
            "millisecond" | "milli" => 1,
            "second" | "sec" | "" => 1_000,
            "minute" | "min" | "m" => 60_000,
            "hour" | "h" | "hr" => 3_600_000,
            "day" | "d" => 86_400_000,
            "week" | "w" => 7 * 86_400_000,
            _ => return None,
        };
        total += (n * ms as f64).round() as i64;
        any = true;
    }
    any.then_some(total)
}

/// Parse a duration option value such as `'30 min'`, `'10s'`, `'1 h'`, `'500 ms'`, `'128MB'`-free.
pub fn parse_duration_option(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if unit.trim().is_empty() {
        return num.parse::<f64>().ok().map(|n| n as i64); // bare number: milliseconds
    }
    parse_interval_text(&format!("{num} {}", unit.trim()))
}

/// Parse a size option value such as `'128MB'`, `'1 kb'`, `'1024'` (bytes).
pub fn parse_size_option(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    Some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_option_values() {
        assert_eq!(parse_duration_option("30 min"), Some(1_800_000));
        assert_eq!(parse_duration_option("10s"), Some(10_000));
        assert_eq!(parse_duration_option("500 ms"), Some(500));
        assert_eq!(parse_duration_option("1 h"), Some(3_600_000));
        assert_eq!(parse_size_option("128MB"), Some(128 << 20));
        assert_eq!(parse_size_option("1 kb"), Some(1024));
        assert_eq!(parse_interval_text("1 minute 30 seconds"), Some(90_000));
        assert_eq!(parse_duration_option("soon"), None);
    }
}
