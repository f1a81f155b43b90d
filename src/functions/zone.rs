//! Time zones as Flink names them: an IANA name (`America/Los_Angeles`), `UTC` / `Z`, or a
//! fixed offset (`GMT+08:00`, `UTC-5`, `+05:30`). Used by `CONVERT_TZ`.

use chrono::{FixedOffset, NaiveDateTime, Offset, TimeZone};

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

    /// The local time in this zone of an instant given as UTC.
    pub fn from_utc(&self, utc: NaiveDateTime) -> NaiveDateTime {
        match self {
            Zone::Fixed(off) => off.from_utc_datetime(&utc).naive_local(),
            Zone::Named(tz) => tz.from_utc_datetime(&utc).naive_local(),
        }
    }
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
}
