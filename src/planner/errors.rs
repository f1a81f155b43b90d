//! Planning errors in the user's terms: DataFusion's messages rewritten to name what weir
//! supports, and Flink functions weir lacks said as `not supported yet`.

use crate::Error;

/// A DataFusion planning error, with the source position when DataFusion recorded one.
pub(super) fn planning_error(e: datafusion::error::DataFusionError) -> Error {
    use datafusion::common::SchemaError;
    use datafusion::error::DataFusionError as E;
    let position = e
        .diagnostic()
        .and_then(|d| d.span)
        .map(|s| format!(" at Line: {}, Column: {}", s.start.line, s.start.column))
        .unwrap_or_default();
    // The cause, without DataFusion's wrappers ("Optimizer rule '...' failed", contexts).
    let root = e.find_root();
    let msg = match root {
        E::NotImplemented(m) => return Error::NotSupported(format!("{m}{position}")),
        E::Plan(m) | E::Execution(m) => m.clone(),
        E::SchemaError(se, _) => match se.as_ref() {
            SchemaError::DuplicateUnqualifiedField { name }
            | SchemaError::DuplicateQualifiedField { name, .. } => format!(
                "two columns of a result would both be named \"{name}\": name them apart with AS"
            ),
            SchemaError::FieldNotFound {
                field,
                valid_fields,
            } => {
                let mut valid: Vec<String> = valid_fields
                    .iter()
                    .map(|c| c.name.clone())
                    .filter(|n| !n.starts_with("__"))
                    .collect();
                valid.dedup();
                format!(
                    "no column named {} (columns: {})",
                    field.name,
                    valid.join(", ")
                )
            }
            SchemaError::AmbiguousReference { field } => format!(
                "column {} is ambiguous: qualify it with its table's name or alias",
                field.name
            ),
        },
        E::ArrowError(a, _) => a.to_string(),
        E::Internal(m) => format!("cannot plan this statement ({m})"),
        other => other.to_string(),
    };
    let msg = msg.strip_backtrace_text();
    if let Some(rest) = msg.strip_prefix("Invalid function '") {
        let name = rest.split('\'').next().unwrap_or_default();
        if FLINK_FUNCTIONS_MISSING.contains(&name) {
            return Error::NotSupported(format!(
                "function {} (a Flink built-in weir does not have yet){position}",
                name.to_uppercase()
            ));
        }
        return Error::Plan(format!("unknown function {name}{position}"));
    }
    if msg.contains("This feature is not implemented") {
        return Error::NotSupported(format!("{msg}{position}"));
    }
    Error::Plan(format!("{msg}{position}"))
}

/// Flink built-in functions weir does not have yet (an unknown function of this name is "not
/// supported yet", any other is unknown).
pub(super) const FLINK_FUNCTIONS_MISSING: &[&str] = &[
    "current_row_timestamp",
    "unhex",
    "tumble_proctime",
    "hop_proctime",
    "session_proctime",
    "proctime_materialize",
    "uuid_bytes",
    "array_slice_flink",
    "elt",
    "printf",
    "instr",
    "url_decode",
    "url_encode",
];

/// DataFusion's messages without their backtrace and kind prefixes.
pub(super) trait StripText {
    fn strip_backtrace_text(&self) -> String;
}

impl StripText for String {
    fn strip_backtrace_text(&self) -> String {
        let mut m = self.split("\n\nbacktrace").next().unwrap_or(self).trim();
        for prefix in [
            "Error during planning: ",
            "Execution error: ",
            "Schema error: ",
            "Arrow error: ",
            "Invalid argument error: ",
        ] {
            m = m.strip_prefix(prefix).unwrap_or(m);
        }
        m.to_string()
    }
}
