//! Debezium JSON as a source format (`'format' = 'debezium-json'`): each record is a change
//! event, `{"before": {…} | null, "after": {…} | null, "op": "c" | "r" | "u" | "d", …}`,
//! optionally wrapped as `{"schema": …, "payload": {…}}` (Debezium's schemas enabled). As
//! Flink's debezium-json format reads them:
//! - `c` (create) and `r` (snapshot read): `+I` of `after`;
//! - `u` (update): `-U` of `before`, then `+U` of `after`;
//! - `d` (delete): `-D` of `before`.
//!
//! A table of this format is an updating (changelog) source: its rows carry the changelog's op
//! column ([`crate::changelog`]). An event that is not of this shape (no `op`, an update
//! without its `before` image, a declared field missing from an image) is malformed: counted,
//! reported and skipped (or dead-lettered), like any other.

use serde_json::{Map, Value};

use crate::changelog::RowKind;

/// The rows of one change event (`line`), each as JSON text of the row's object, with its op.
/// `fields`: the declared column names each image must have.
pub(crate) fn event_rows(
    line: &[u8],
    fields: &[String],
) -> Result<Vec<(RowKind, Vec<u8>)>, String> {
    let Ok(Value::Object(mut event)) = serde_json::from_slice::<Value>(line) else {
        return Err("not a JSON object (a Debezium change event)".into());
    };
    if !event.contains_key("op")
        && let Some(Value::Object(payload)) = event.remove("payload")
    {
        event = payload;
    }
    let op = match event.get("op") {
        Some(Value::String(op)) => op.clone(),
        _ => return Err("change event without an \"op\"".into()),
    };
    let mut image = |key: &str| -> Result<Vec<u8>, String> {
        match event.remove(key) {
            Some(Value::Object(row)) => {
                check_fields(&row, fields, key)?;
                serde_json::to_vec(&row).map_err(|e| e.to_string())
            }
            _ => Err(format!("\"op\": \"{op}\" without its \"{key}\" row")),
        }
    };
    Ok(match op.as_str() {
        "c" | "r" => vec![(RowKind::Insert, image("after")?)],
        "u" => {
            let before = image("before").map_err(|e| {
                format!("{e} (the source must log whole old rows, e.g. REPLICA IDENTITY FULL)")
            })?;
            vec![
                (RowKind::UpdateBefore, before),
                (RowKind::UpdateAfter, image("after")?),
            ]
        }
        "d" => vec![(RowKind::Delete, image("before")?)],
        other => return Err(format!("unknown change event op \"{other}\" (c, r, u, d)")),
    })
}

fn check_fields(row: &Map<String, Value>, fields: &[String], image: &str) -> Result<(), String> {
    let missing: Vec<&str> = fields
        .iter()
        .filter(|f| !row.contains_key(f.as_str()))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing field(s) in \"{image}\": {}",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(line: &str) -> Result<Vec<(RowKind, String)>, String> {
        let fields = vec!["id".to_string(), "price".to_string()];
        event_rows(line.as_bytes(), &fields).map(|rows| {
            rows.into_iter()
                .map(|(k, r)| (k, String::from_utf8(r).unwrap_or_default()))
                .collect()
        })
    }

    #[test]
    fn change_events_become_changelog_rows() {
        assert_eq!(
            kinds(r#"{"before": null, "after": {"id": 1, "price": 2.5}, "op": "c"}"#),
            Ok(vec![(RowKind::Insert, r#"{"id":1,"price":2.5}"#.into())])
        );
        assert_eq!(
            kinds(
                r#"{"before": {"id": 1, "price": 2.5}, "after": {"id": 1, "price": 3.0}, "op": "u"}"#
            ),
            Ok(vec![
                (RowKind::UpdateBefore, r#"{"id":1,"price":2.5}"#.into()),
                (RowKind::UpdateAfter, r#"{"id":1,"price":3.0}"#.into()),
            ])
        );
        assert_eq!(
            kinds(
                r#"{"schema": {}, "payload": {"before": {"id": 1, "price": 3.0}, "after": null, "op": "d"}}"#
            ),
            Ok(vec![(RowKind::Delete, r#"{"id":1,"price":3.0}"#.into())])
        );
        assert!(
            kinds(r#"{"before": null, "after": {"id": 1, "price": 3.0}, "op": "u"}"#)
                .is_err_and(|e| e.contains("REPLICA IDENTITY"))
        );
        assert!(kinds(r#"{"after": {"id": 1}, "op": "c"}"#).is_err_and(|e| e.contains("price")));
        assert!(kinds(r#"{"after": {"id": 1, "price": 1}}"#).is_err());
        assert!(kinds("[1]").is_err());
    }
}
