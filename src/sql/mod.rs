//! SQL front end: weir's dialect, statement parser, type mapping and catalog.

pub mod catalog;
pub mod dialect;
pub mod interval;
pub mod statement;
pub mod types;

pub use catalog::Catalog;
pub use statement::{Located, Statement, TableDef, ViewDef, parse_sql};
