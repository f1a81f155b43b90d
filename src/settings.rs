//! Job settings (`SET 'key' = 'value'`): which keys exist, how their values are checked, and
//! the checkpoint settings they make. Flink's names are used where Flink has one.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::runtime::checkpoint::CheckpointConfig;
use crate::sql::interval::parse_duration_option;
use crate::state::DEFAULT_MAX_PARALLELISM;
use crate::{Error, Result};

/// What a setting's value must be.
#[derive(Clone, Copy)]
enum Kind {
    Duration,
    Count,
    Bool,
    Text,
    Mode,
}

/// Every key `SET` accepts.
const KNOWN: &[(&str, Kind)] = &[
    ("parallelism", Kind::Count),
    ("table.exec.source.idle-timeout", Kind::Duration),
    ("table.exec.state.ttl", Kind::Duration),
    ("table.local-time-zone", Kind::Text),
    ("pipeline.name", Kind::Text),
    ("pipeline.max-parallelism", Kind::Count),
    ("state.checkpoints.dir", Kind::Text),
    ("execution.checkpointing.dir", Kind::Text),
    ("execution.checkpointing.interval", Kind::Duration),
    ("execution.checkpointing.timeout", Kind::Duration),
    ("execution.checkpointing.mode", Kind::Mode),
    ("execution.checkpointing.min-pause", Kind::Duration),
    (
        "execution.checkpointing.tolerable-failed-checkpoints",
        Kind::Count,
    ),
    ("state.checkpoints.num-retained", Kind::Count),
    ("execution.savepoint.path", Kind::Text),
    ("execution.savepoint.ignore-unclaimed-state", Kind::Bool),
    ("weir.restore", Kind::Bool),
    ("weir.trace-latency", Kind::Bool),
];

/// Check a `SET`: the key must exist (else a suggestion) and the value must fit it.
pub fn validate(key: &str, value: &str) -> Result<()> {
    let Some((_, kind)) = KNOWN.iter().find(|(k, _)| *k == key) else {
        return Err(Error::Plan(
            match suggest(key, KNOWN.iter().map(|(k, _)| *k)) {
                Some(k) => format!("unknown setting '{key}': did you mean '{k}'?"),
                None => format!(
                    "unknown setting '{key}' (known: {})",
                    KNOWN.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                ),
            },
        ));
    };
    if key == "table.local-time-zone" && crate::functions::zone::Zone::parse(value).is_none() {
        return Err(Error::Plan(format!(
            "'table.local-time-zone' = '{value}': not a time zone (an IANA name such as 'Asia/Shanghai', 'UTC', or an offset such as 'GMT+08:00')"
        )));
    }
    let ok = match kind {
        Kind::Duration => parse_duration_option(value).is_some_and(|ms| ms >= 0),
        Kind::Count => value.trim().parse::<u64>().is_ok(),
        Kind::Bool => matches!(value.to_ascii_lowercase().as_str(), "true" | "false"),
        Kind::Mode => matches!(
            value.to_ascii_uppercase().as_str(),
            "EXACTLY_ONCE" | "AT_LEAST_ONCE"
        ),
        Kind::Text => true,
    };
    if !ok {
        let want = match kind {
            Kind::Duration => "a duration such as '10 s' or '1 min'",
            Kind::Count => "a whole number",
            Kind::Bool => "'true' or 'false'",
            Kind::Mode => "'EXACTLY_ONCE' or 'AT_LEAST_ONCE'",
            Kind::Text => "text",
        };
        return Err(Error::Plan(format!(
            "setting '{key}' = '{value}': expected {want}"
        )));
    }
    Ok(())
}

/// The candidate nearest to a misspelt `key`, if one is near enough to be a likely typo.
pub(crate) fn suggest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|k| (distance(key, k), k))
        .min()
        .filter(|(d, _)| *d <= key.len() / 4 + 1)
        .map(|(_, k)| k)
}

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn duration(settings: &BTreeMap<String, String>, key: &str, default: Duration) -> Result<Duration> {
    match settings.get(key) {
        None => Ok(default),
        Some(v) => match parse_duration_option(v) {
            Some(ms) if ms >= 0 => Ok(Duration::from_millis(ms as u64)),
            _ => Err(Error::Plan(format!(
                "setting '{key}' = '{v}' is not a duration such as '10 s'"
            ))),
        },
    }
}

fn count(settings: &BTreeMap<String, String>, key: &str, default: u64) -> Result<u64> {
    match settings.get(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| Error::Plan(format!("setting '{key}' = '{v}' is not a whole number"))),
    }
}

/// The checkpoint directory and settings, or None when checkpointing is off (no directory).
pub fn checkpoint_config(
    settings: &BTreeMap<String, String>,
) -> Result<Option<(String, CheckpointConfig)>> {
    let dir = settings
        .get("state.checkpoints.dir")
        .or_else(|| settings.get("execution.checkpointing.dir"))
        .filter(|d| !d.trim().is_empty());
    let Some(dir) = dir else {
        if settings.contains_key("execution.checkpointing.interval") {
            return Err(Error::Plan(
                "'execution.checkpointing.interval' is set but there is no checkpoint \
                 directory: SET 'state.checkpoints.dir' = '/path' (or 's3://bucket/prefix')"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let interval = duration(
        settings,
        "execution.checkpointing.interval",
        Duration::from_secs(10),
    )?;
    if interval.is_zero() {
        return Err(Error::Plan(
            "'execution.checkpointing.interval' must be more than 0".into(),
        ));
    }
    let key_groups = count(
        settings,
        "pipeline.max-parallelism",
        DEFAULT_MAX_PARALLELISM as u64,
    )? as usize;
    if !(1..=32768).contains(&key_groups) {
        return Err(Error::Plan(format!(
            "'pipeline.max-parallelism' = {key_groups} must be between 1 and 32768"
        )));
    }
    let mode = settings
        .get("execution.checkpointing.mode")
        .map_or("EXACTLY_ONCE".to_string(), |m| m.to_ascii_uppercase());
    Ok(Some((
        dir.clone(),
        CheckpointConfig {
            interval,
            timeout: duration(
                settings,
                "execution.checkpointing.timeout",
                Duration::from_secs(600),
            )?,
            retained: count(settings, "state.checkpoints.num-retained", 3)?.max(1) as usize,
            tolerable_failures: count(
                settings,
                "execution.checkpointing.tolerable-failed-checkpoints",
                3,
            )?,
            exactly_once: mode != "AT_LEAST_ONCE",
            min_pause: duration(
                settings,
                "execution.checkpointing.min-pause",
                Duration::ZERO,
            )?,
            key_groups,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_get_a_suggestion() {
        let e = validate("state.checkpoint.dir", "/x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean 'state.checkpoints.dir'"), "{e}");
        assert!(validate("execution.checkpointing.interval", "ten").is_err());
        assert!(validate("execution.checkpointing.interval", "10 s").is_ok());
    }

    #[test]
    fn interval_without_a_directory_is_an_error() {
        let mut s = BTreeMap::new();
        s.insert("execution.checkpointing.interval".into(), "1 s".into());
        assert!(checkpoint_config(&s).is_err());
        s.insert("state.checkpoints.dir".into(), "/tmp/x".into());
        let (_, c) = checkpoint_config(&s).unwrap().unwrap();
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.retained, 3);
        assert!(c.exactly_once);
    }
}
