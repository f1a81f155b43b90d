//! Time zones as Flink names them: an IANA name (`America/Los_Angeles`), `UTC` / `Z`, or a
//! fixed offset (`GMT+08:00`, `UTC-5`, `+05:30`). Used by `CONVERT_TZ` and by the session time
//! zone (`'table.local-time-zone'`): [`Local`] (`weir_local(x)`) reads a TIMESTAMP_LTZ as the
//! wall-clock time in that zone, for `HOUR(…)`, `DATE_FORMAT(…)` and `CAST(… AS STRING)`.

use chrono::{FixedOffset, NaiveDateTime, Offset, TimeZone};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// The name `weir_local(x)`: a TIMESTAMP_LTZ as the session zone's wall-clock TIMESTAMP.
pub const LOCAL: &str = "weir_local";

/// A parsed time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// A fixed offset from UTC.
    Fixed(FixedOffset),
    /// A zone of the IANA database, with its daylight-saving rules.
    Named(chrono_tz::Tz),
}

impl Zone {
    /// The zone named `s`, or None when it is not a zone.
    pub fn parse(s: &str) -> Option<Zone> {
        let s = s.trim();
        if let Ok(tz) = s.parse::<chrono_tz::Tz>() {
            return Some(Zone::Named(tz));
        }
        let upper = s.to_ascii_uppercase();
        if matches!(upper.as_str(), "UTC" | "GMT" | "Z" | "UT") {
            return Some(Zone::Fixed(FixedOffset::east_opt(0)?));
        }
        let rest = ["UTC", "GMT", "UT"]
            .iter()
            .find_map(|p| upper.strip_prefix(p))
            .unwrap_or(&upper);
        let (sign, rest) = match rest.as_bytes().first()? {
            b'+' => (1, &rest[1..]),
            b'-' => (-1, &rest[1..]),
            _ => return None,
        };
        let (h, m) = match rest.split_once(':') {
            Some((h, m)) => (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?),
            None if rest.len() == 4 => (rest[..2].parse().ok()?, rest[2..].parse().ok()?),
            None => (rest.parse().ok()?, 0),
        };
        if h > 18 || m > 59 {
            return None;
        }
        Some(Zone::Fixed(FixedOffset::east_opt(
            sign * (h * 3600 + m * 60),
        )?))
    }

    /// The instant (as UTC) of a local time in this zone. A time skipped by a daylight-saving
    /// change moves forward by the change, an ambiguous one takes the earlier instant (as
    /// Java's `LocalDateTime.atZone`).
    pub fn to_utc(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        match self {
            Zone::Fixed(off) => {
                Some(local - chrono::Duration::seconds(off.local_minus_utc().into()))
            }
            Zone::Named(tz) => {
                let resolved = tz.from_local_datetime(&local).earliest().or_else(|| {
                    // In a gap: the offset before it applies.
                    let before = tz
                        .from_local_datetime(&(local - chrono::Duration::hours(3)))
                        .earliest()?;
                    let off = before.offset().fix().local_minus_utc();
                    Some(tz.from_utc_datetime(&(local - chrono::Duration::seconds(off.into()))))
                })?;
                Some(resolved.naive_utc())
            }
        }
    }

    /// The zone's offset from UTC, in seconds, at an instant (seconds since the epoch).
    pub fn offset_secs(&self, utc_secs: i64) -> i64 {
        match self {
            Zone::Fixed(off) => off.local_minus_utc().into(),
            Zone::Named(tz) => match chrono::DateTime::from_timestamp(utc_secs, 0) {
                Some(t) => tz
                    .offset_from_utc_datetime(&t.naive_utc())
                    .fix()
                    .local_minus_utc()
                    .into(),
                None => 0,
            },
        }
    }

    /// The wall-clock time in this zone (as milliseconds of a zone-less timestamp) of an
    /// instant in milliseconds since the epoch.
    pub fn wall_clock_ms(&self, utc_ms: i64) -> i64 {
        utc_ms + self.offset_secs(utc_ms.div_euclid(1000)) * 1000
    }

    /// The offset in milliseconds when it never changes between 1970 and 2100, else None.
    pub fn fixed_offset_ms(&self) -> Option<i64> {
        self.fixed_from(0)
    }

    /// The offset in milliseconds when it has not changed since 2000 and will not until 2100
    /// (no daylight saving time: Asia/Shanghai, Asia/Kolkata, …), else None. Windows over a
    /// TIMESTAMP_LTZ are aligned in such a zone.
    pub fn recent_fixed_offset_ms(&self) -> Option<i64> {
        self.fixed_from(946_684_800)
    }

    fn fixed_from(&self, start: i64) -> Option<i64> {
        let first = self.offset_secs(start);
        let half_year = 365 * 86_400 / 2;
        (0..260)
            .map(|k| start + k * half_year)
            .take_while(|t| *t < 4_102_444_800)
            .all(|t| self.offset_secs(t) == first)
            .then_some(first * 1000)
    }

    /// The local time in this zone of an instant given as UTC.
    pub fn from_utc(&self, utc: NaiveDateTime) -> NaiveDateTime {
        match self {
            Zone::Fixed(off) => off.from_utc_datetime(&utc).naive_local(),
            Zone::Named(tz) => tz.from_utc_datetime(&utc).naive_local(),
        }
    }
}

/// A session time zone parsed once, with its offset when that never changes (so batches need
/// not look it up per value). Equal and hashed by its name, as a UDF's state must be.
#[derive(Debug, Clone)]
pub struct SessionZone {
    name: String,
    zone: Zone,
    fixed_ms: Option<i64>,
}

impl SessionZone {
    /// The zone named `name` (UTC when it does not parse; settings check names first).
    pub fn new(name: &str) -> Self {
        let zone = Zone::parse(name).unwrap_or(Zone::Named(chrono_tz::Tz::UTC));
        Self {
            name: name.to_string(),
            fixed_ms: zone.fixed_offset_ms(),
            zone,
        }
    }

    /// Timestamps with a time zone as this zone's wall-clock time ([`localize`]).
    pub fn localize(&self, x: &ArrayRef) -> datafusion::error::Result<ArrayRef> {
        localize(x, &self.zone, self.fixed_ms)
    }
}

impl PartialEq for SessionZone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for SessionZone {}

impl std::hash::Hash for SessionZone {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// Timestamps with a time zone (instants) as the wall-clock time in `zone`, without a zone;
/// other arrays unchanged. `fixed_ms` is the zone's offset when it never changes.
pub fn localize(
    x: &ArrayRef,
    zone: &Zone,
    fixed_ms: Option<i64>,
) -> datafusion::error::Result<ArrayRef> {
    let DataType::Timestamp(unit, Some(_)) = x.data_type() else {
        return Ok(x.clone());
    };
    let per_sec = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    // The raw values are UTC instants whatever the zone of the type.
    let raw = cast(x, &DataType::Int64)?;
    let fixed = fixed_ms.map(|ms| ms / 1000 * per_sec);
    let local: Int64Array = raw
        .as_primitive::<Int64Type>()
        .iter()
        .map(|v| {
            v.map(|v| match fixed {
                Some(off) => v + off,
                None => v + zone.offset_secs(v.div_euclid(per_sec)) * per_sec,
            })
        })
        .collect();
    Ok(cast(&local, &DataType::Timestamp(*unit, None))?)
}

/// `weir_local(x)`: a TIMESTAMP_LTZ as the wall-clock TIMESTAMP in the session zone (any
/// other argument unchanged). The planner wraps the arguments of `HOUR`, `DATE_FORMAT`, … in
/// it, so they answer in the session zone as Flink's do.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Local {
    zone: SessionZone,
    signature: Signature,
}

impl Local {
    /// For the zone named `zone` (UTC when it does not parse; settings check it first).
    pub fn new(zone: &str) -> Self {
        Self {
            zone: SessionZone::new(zone),
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Local {
    fn name(&self) -> &str {
        LOCAL
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(match &args[0] {
            DataType::Timestamp(unit, Some(_)) => DataType::Timestamp(*unit, None),
            other => other.clone(),
        })
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        super::map_rows(&args, |a| self.zone.localize(&a[0]))
    }
}

/// An array of this zone's wall-clock times (for tests).
#[cfg(test)]
fn local_of(ms: Vec<i64>, zone: &str) -> Vec<i64> {
    let x: ArrayRef = std::sync::Arc::new(
        datafusion::arrow::array::TimestampMillisecondArray::from(ms).with_timezone("UTC"),
    );
    let out = SessionZone::new(zone).localize(&x).unwrap();
    let raw = cast(&out, &DataType::Int64).unwrap();
    raw.as_primitive::<Int64Type>().values().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn names_and_offsets() {
        let la = Zone::parse("America/Los_Angeles").unwrap();
        // Flink: CONVERT_TZ('1970-01-01 00:00:00', 'UTC', 'America/Los_Angeles').
        assert_eq!(
            la.from_utc(t("1970-01-01 00:00:00")),
            t("1969-12-31 16:00:00")
        );
        let plus8 = Zone::parse("GMT+08:00").unwrap();
        assert_eq!(
            plus8.to_utc(t("2020-01-01 08:00:00")),
            Some(t("2020-01-01 00:00:00"))
        );
        assert_eq!(
            Zone::parse("UTC-5")
                .unwrap()
                .from_utc(t("2020-01-01 05:00:00")),
            t("2020-01-01 00:00:00")
        );
        assert!(Zone::parse("Mars/Olympus").is_none());
        // A skipped local time (spring forward) moves on by the change.
        let ny = Zone::parse("America/New_York").unwrap();
        assert_eq!(
            ny.to_utc(t("2024-03-10 02:30:00")),
            Some(t("2024-03-10 07:30:00"))
        );
    }

    #[test]
    fn fixed_offsets_and_wall_clock_times() {
        // China kept daylight saving time from 1986 to 1991.
        let shanghai = Zone::parse("Asia/Shanghai").unwrap();
        assert_eq!(shanghai.fixed_offset_ms(), None);
        assert_eq!(shanghai.recent_fixed_offset_ms(), Some(8 * 3_600_000));
        assert_eq!(
            Zone::parse("GMT-03:30").unwrap().fixed_offset_ms(),
            Some(-12_600_000)
        );
        assert_eq!(
            Zone::parse("Europe/Berlin")
                .unwrap()
                .recent_fixed_offset_ms(),
            None
        );
        assert_eq!(local_of(vec![0], "GMT+08:00"), vec![8 * 3_600_000]);
        // Berlin: +01:00 in January, +02:00 in July 2020.
        let jan = 1_577_836_800_000; // 2020-01-01 00:00 UTC
        let jul = 1_593_561_600_000; // 2020-07-01 00:00 UTC
        assert_eq!(
            local_of(vec![jan, jul], "Europe/Berlin"),
            vec![jan + 3_600_000, jul + 7_200_000]
        );
        assert_eq!(shanghai.wall_clock_ms(0), 8 * 3_600_000);
    }
}
