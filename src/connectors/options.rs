//! The options every connector declares, checked at `CREATE TABLE`.
//!
//! A `WITH (...)` option that no connector reads would be silently ignored: a misspelt
//! `'scan.startup.mod'` would start the job from the default position. So each connector
//! declares its keys and the kind of value each takes, and [`check`] refuses an unknown
//! connector, an unknown key (suggesting the nearest known one) and a value of the wrong kind.
//! Free-form prefixes (`'properties.*'`, passed to the Kafka client) are not checked.
//! Flink options weir does not implement say `not supported yet`.

use std::collections::BTreeMap;

use crate::sql::interval::{parse_duration_option, parse_size_option};

/// What an option's value must be.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Any text.
    Text,
    /// `true` / `false`.
    Bool,
    /// A non-negative integer.
    Count,
    /// A duration: `10 s`, `5 min`, `100ms`.
    Duration,
    /// A size: `128MB`.
    Size,
    /// One of these (case-insensitive).
    OneOf(&'static [&'static str]),
}

use Kind::*;

/// A group of options: each key and the kind of its value.
type Group = &'static [(&'static str, Kind)];

const FORMATS: &[&str] = &[
    "json",
    "csv",
    "parquet",
    "avro",
    "avro-confluent",
    "debezium-json",
];

/// Options of every table.
const COMMON: &[(&str, Kind)] = &[("connector", Text)];

/// Options of tables read as sources (any connector that can be read).
const SOURCE: &[(&str, Kind)] = &[
    ("scan.watermark.idle-timeout", Duration),
    ("scan.watermark.alignment.max-drift", Duration),
    ("late-data.table", Text),
    ("dead-letter.path", Text),
];

/// Options of encoded records.
const FORMAT: &[(&str, Kind)] = &[
    ("format", OneOf(FORMATS)),
    ("csv.field-delimiter", Text),
    ("avro.schema", Text),
    ("avro-confluent.url", Text),
    ("avro-confluent.schema-id", Count),
    ("avro-confluent.schema", Text),
    // `'<format>.ignore-parse-errors'` = 'false' fails the job on a malformed record;
    // `'<format>.fail-on-missing-field'` = 'true' on a missing field.
    ("json.ignore-parse-errors", Bool),
    ("json.fail-on-missing-field", Bool),
    ("csv.ignore-parse-errors", Bool),
    ("csv.fail-on-missing-field", Bool),
    ("parquet.ignore-parse-errors", Bool),
    ("avro.ignore-parse-errors", Bool),
    ("avro-confluent.ignore-parse-errors", Bool),
];

/// AWS access (Kinesis, `s3://` paths).
const AWS: &[(&str, Kind)] = &[
    ("aws.region", Text),
    ("aws.endpoint", Text),
    ("aws.credentials.basic.accesskeyid", Text),
    ("aws.credentials.basic.secretkey", Text),
    ("aws.credentials.basic.sessiontoken", Text),
];

const FILESYSTEM: &[(&str, Kind)] = &[
    ("path", Text),
    ("source.monitor-interval", Duration),
    ("lookup.join.cache.ttl", Duration),
    ("sink.partition-by", Text),
    ("sink.rolling-policy.file-size", Size),
    ("sink.rolling-policy.rollover-interval", Duration),
    ("sink.rolling-policy.check-interval", Duration),
    ("sink.s3.part-size", Size),
];

const KAFKA: &[(&str, Kind)] = &[
    ("topic", Text),
    (
        "scan.startup.mode",
        OneOf(&[
            "earliest-offset",
            "latest-offset",
            "group-offsets",
            "timestamp",
            "specific-offsets",
        ]),
    ),
    ("scan.startup.specific-offsets", Text),
    ("scan.startup.timestamp-millis", Count),
    ("scan.bounded.mode", OneOf(&["unbounded", "latest-offset"])),
    (
        "sink.delivery-guarantee",
        OneOf(&["at-least-once", "exactly-once", "none"]),
    ),
    ("key.format", OneOf(&["raw", "json"])),
    ("key.fields", Text),
];

const KINESIS: &[(&str, Kind)] = &[
    ("stream", Text),
    ("stream.name", Text),
    (
        "scan.stream.initpos",
        OneOf(&["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]),
    ),
    ("scan.stream.initpos-timestamp", Text),
    ("scan.shard.getrecords.intervalmillis", Count),
    ("sink.partitioner-field-delimiter", Text),
    ("sink.max-retries", Count),
];

const NEXMARK: &[(&str, Kind)] = &[
    ("nexmark.table", OneOf(&["person", "auction", "bid"])),
    ("nexmark.events", Count),
    ("nexmark.event.num", Count),
    ("nexmark.rate", Count),
    ("nexmark.event.rate", Count),
    ("nexmark.shards", Count),
    ("nexmark.split.num", Count),
    ("nexmark.chunk", Count),
    ("nexmark.real-time", Bool),
    ("nexmark.max-rate", Count),
];

const JDBC: &[(&str, Kind)] = &[
    ("url", Text),
    ("table-name", Text),
    ("username", Text),
    ("password", Text),
    ("sink.buffer-flush.max-rows", Count),
    ("sink.buffer-flush.interval", Duration),
    ("sink.max-retries", Count),
    ("lookup.join.cache.ttl", Duration),
];

/// `'connector' = 'upsert-kafka'` (Flink's): a compacted topic read as an upsert stream.
const UPSERT_KAFKA: &[(&str, Kind)] = &[
    ("topic", Text),
    ("key.format", OneOf(&["raw", "json"])),
    ("value.format", OneOf(&["json"])),
    ("value.fields-include", OneOf(&["ALL", "EXCEPT_KEY"])),
    ("scan.bounded.mode", OneOf(&["unbounded", "latest-offset"])),
    (
        "sink.delivery-guarantee",
        OneOf(&["at-least-once", "exactly-once", "none"]),
    ),
    ("json.ignore-parse-errors", Bool),
    ("json.fail-on-missing-field", Bool),
];

const PRINT: &[(&str, Kind)] = &[("print-identifier", Text)];

/// `'connector' = 'webhook'` (see `connectors::webhook`).
const WEBHOOK: &[(&str, Kind)] = &[
    ("url", Text),
    ("format", OneOf(&["json"])),
    ("sink.max-retries", Count),
    ("webhook.timeout", Duration),
    ("webhook.secret", Text),
    ("dead-letter.path", Text),
];

/// `'connector' = 'http'` (`weir serve`'s ingest and served tables, see `connectors::http`).
const HTTP: &[(&str, Kind)] = &[
    ("format", OneOf(&["json"])),
    (
        "scan.startup.mode",
        OneOf(&["earliest-offset", "latest-offset"]),
    ),
    ("scan.watermark.idle-advance", Bool),
    ("http.retention", Duration),
    ("http.max-journal-size", Size),
    ("http.retain", Count),
];

/// Every connector and the option groups it takes.
const CONNECTORS: &[(&str, &[Group])] = &[
    ("filesystem", &[SOURCE, FORMAT, AWS, FILESYSTEM]),
    ("kafka", &[SOURCE, FORMAT, KAFKA]),
    ("upsert-kafka", &[SOURCE, UPSERT_KAFKA]),
    ("kinesis", &[SOURCE, FORMAT, AWS, KINESIS]),
    ("nexmark", &[SOURCE, NEXMARK]),
    ("push", &[SOURCE]),
    ("jdbc", &[JDBC]),
    ("print", &[PRINT]),
    ("webhook", &[WEBHOOK]),
    ("http", &[SOURCE, HTTP]),
    ("blackhole", &[]),
];

/// Free-form prefixes, per connector.
const PREFIXES: &[(&str, &str)] = &[("kafka", "properties."), ("upsert-kafka", "properties.")];

/// Flink options weir does not implement, and what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("sink.parallelism", "sinks run at the job's parallelism"),
    ("value.format", "use 'format'"),
];

/// A problem with one option: the key it is about (to place the error) and the message.
#[derive(Debug)]
pub struct OptionError {
    /// The option's key (lower-cased).
    pub key: String,
    /// What is wrong, in the user's terms.
    pub message: String,
}

/// Check a table's options against its connector's declaration.
pub fn check(options: &BTreeMap<String, String>) -> std::result::Result<(), OptionError> {
    let Some(connector) = options.get("connector") else {
        return Ok(()); // the catalog says that the connector is missing
    };
    let Some((_, groups)) = CONNECTORS.iter().find(|(c, _)| c == connector) else {
        let names: Vec<&str> = CONNECTORS.iter().map(|(c, _)| *c).collect();
        let hint = crate::settings::suggest(connector, names.iter().copied())
            .map(|s| format!("did you mean '{s}'? "))
            .unwrap_or_default();
        return Err(OptionError {
            key: "connector".into(),
            message: format!(
                "unknown connector '{connector}': {hint}(known: {})",
                names.join(", ")
            ),
        });
    };
    let known = || COMMON.iter().chain(groups.iter().flat_map(|g| g.iter()));
    for (key, value) in options {
        if PREFIXES
            .iter()
            .any(|(c, p)| c == connector && key.starts_with(p))
        {
            continue;
        }
        let Some((_, kind)) = known().find(|(k, _)| k == key) else {
            if let Some((_, why)) = UNSUPPORTED.iter().find(|(k, _)| k == key) {
                return Err(OptionError {
                    key: key.clone(),
                    message: format!("not supported yet: option '{key}' ({why})"),
                });
            }
            let hint = crate::settings::suggest(key, known().map(|(k, _)| *k))
                .map(|s| format!(": did you mean '{s}'?"))
                .unwrap_or_else(|| {
                    let mut keys: Vec<&str> = known().map(|(k, _)| *k).collect();
                    keys.sort();
                    keys.dedup();
                    format!(" (its options: {})", keys.join(", "))
                });
            return Err(OptionError {
                key: key.clone(),
                message: format!("unknown option '{key}' for connector '{connector}'{hint}"),
            });
        };
        let ok = match kind {
            Text => true,
            Bool => matches!(value.to_ascii_lowercase().as_str(), "true" | "false"),
            Count => value.trim().parse::<u64>().is_ok(),
            Duration => parse_duration_option(value).is_some_and(|ms| ms >= 0),
            Size => parse_size_option(value).is_some(),
            OneOf(values) => values.iter().any(|v| v.eq_ignore_ascii_case(value.trim())),
        };
        if !ok {
            let expected = match kind {
                Text => String::new(),
                Bool => "true or false".into(),
                Count => "a whole number".into(),
                Duration => "a duration such as '10 s' or '5 min'".into(),
                Size => "a size such as '128MB'".into(),
                OneOf(values) => format!("one of {}", values.join(", ")),
            };
            return Err(OptionError {
                key: key.clone(),
                message: format!("option '{key}' = '{value}' is not {expected}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unknown_connectors_options_and_bad_values_are_refused() {
        let e = check(&opts(&[("connector", "nosuch")])).unwrap_err();
        assert!(e.message.contains("unknown connector 'nosuch'"), "{e:?}");
        let e = check(&opts(&[("connector", "kafak")])).unwrap_err();
        assert!(e.message.contains("did you mean 'kafka'"), "{e:?}");
        let e = check(&opts(&[
            ("connector", "kafka"),
            ("scan.startup.mod", "latest-offset"),
        ]))
        .unwrap_err();
        assert_eq!(e.key, "scan.startup.mod");
        assert!(
            e.message.contains("did you mean 'scan.startup.mode'"),
            "{e:?}"
        );
        let e = check(&opts(&[
            ("connector", "kafka"),
            ("scan.startup.mode", "earliest"),
        ]))
        .unwrap_err();
        assert!(e.message.contains("one of earliest-offset"), "{e:?}");
        let e = check(&opts(&[
            ("connector", "filesystem"),
            ("source.monitor-interval", "soon-ish"),
        ]))
        .unwrap_err();
        assert!(e.message.contains("is not a duration"), "{e:?}");
        let e = check(&opts(&[("connector", "kafka"), ("value.format", "json")])).unwrap_err();
        assert!(e.message.starts_with("not supported yet"), "{e:?}");
    }

    #[test]
    fn declared_options_and_free_form_prefixes_pass() {
        check(&opts(&[
            ("connector", "kafka"),
            ("topic", "t"),
            ("properties.bootstrap.servers", "localhost:9092"),
            ("properties.group.id", "g"),
            ("scan.startup.mode", "Earliest-Offset"),
            ("format", "json"),
        ]))
        .unwrap();
        check(&opts(&[
            ("connector", "filesystem"),
            ("path", "/tmp/x"),
            ("format", "parquet"),
            ("sink.rolling-policy.file-size", "1MB"),
            ("sink.rolling-policy.rollover-interval", "1 s"),
        ]))
        .unwrap();
        // A prefix is free-form only where declared.
        assert!(check(&opts(&[("connector", "filesystem"), ("properties.x", "1")])).is_err());
    }
}
