//! The one error type of weir, [`Error`], and the `Result` alias used everywhere.
//!
//! Errors carry context: SQL errors keep the parser's "Line: N, Column: M", planning errors name
//! the statement position, execution errors name the operator, I/O errors name the file.
//! The macros at the bottom (`plan_err!`, `not_supported!`, `exec_err!`) keep call sites short.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// Result with weir's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in weir.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL text could not be parsed. The message names the line and column.
    #[error("SQL error: {0}")]
    Sql(String),
    /// The statement parsed but cannot be planned (unknown table, wrong types, ...).
    #[error("planning error: {0}")]
    Plan(String),
    /// Valid SQL that weir does not run yet. Never silently answered with wrong rows.
    #[error("not supported yet: {0}")]
    NotSupported(String),
    /// A record of an input could not be decoded and the table's options say to fail.
    #[error("malformed record at {location}: {message}")]
    Malformed {
        /// file:line (or shard and offset) of the record.
        location: String,
        /// What was wrong with it.
        message: String,
    },
    /// An operator or connector failed while the job ran.
    #[error("execution error in {operator}: {message}")]
    Execution {
        /// The operator or connector that failed.
        operator: String,
        /// What went wrong.
        message: String,
    },
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What weir was doing (usually names the file).
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An Arrow kernel error, with context.
    #[error("{context}: {source}")]
    Arrow {
        /// What weir was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: ArrowError,
    },
    /// A DataFusion error, with context.
    #[error("{context}: {source}")]
    DataFusion {
        /// What weir was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<DataFusionError>,
    },
    /// A Parquet error, with context.
    #[error("{context}: {source}")]
    Parquet {
        /// What weir was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// The job was cancelled (Ctrl-C, SIGTERM, or `Job::cancel`).
    #[error("job cancelled")]
    Cancelled,
    /// An external system (Kinesis, Kafka, S3, PostgreSQL) failed or refused a request.
    #[error("{context}: {message}")]
    Connector {
        /// What was being done: `kinesis stream clicks, shard shardId-000000000001: GetRecords`.
        context: String,
        /// The service's error, with its code where it has one.
        message: String,
    },
}

/// `Err(Error::Connector { context, message })`
#[macro_export]
macro_rules! connector_err {
    ($ctx:expr, $($arg:tt)*) => {
        Err($crate::Error::Connector { context: $ctx.to_string(), message: format!($($arg)*) })
    };
}

impl From<ArrowError> for Error {
    fn from(source: ArrowError) -> Self {
        Error::Arrow {
            context: "arrow".into(),
            source,
        }
    }
}

impl From<DataFusionError> for Error {
    fn from(source: DataFusionError) -> Self {
        match source {
            // Raised by an expression as it runs (weir's functions among them): the message is
            // for the user, without DataFusion's wording around it.
            DataFusionError::Execution(message) => Error::Execution {
                operator: "query".into(),
                message,
            },
            source => Error::DataFusion {
                context: "datafusion".into(),
                source: Box::new(source),
            },
        }
    }
}

impl From<parquet::errors::ParquetError> for Error {
    fn from(source: parquet::errors::ParquetError) -> Self {
        Error::Parquet {
            context: "parquet".into(),
            source,
        }
    }
}

impl From<sqlparser::parser::ParserError> for Error {
    fn from(e: sqlparser::parser::ParserError) -> Self {
        let msg = match e {
            sqlparser::parser::ParserError::ParserError(m)
            | sqlparser::parser::ParserError::TokenizerError(m) => m,
            sqlparser::parser::ParserError::RecursionLimitExceeded => {
                "query nested too deeply".into()
            }
        };
        Error::Sql(msg)
    }
}

/// Attach context to errors from the libraries weir uses.
pub trait Context<T> {
    /// Wrap the error with a description of what was being done.
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, ArrowError> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Arrow {
            context: context(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, DataFusionError> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::DataFusion {
            context: context(),
            source: Box::new(source),
        })
    }
}

impl<T> Context<T> for std::result::Result<T, parquet::errors::ParquetError> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Parquet {
            context: context(),
            source,
        })
    }
}

/// `return Err(Error::Plan(format!(...)))`
#[macro_export]
macro_rules! plan_err {
    ($($arg:tt)*) => { Err($crate::Error::Plan(format!($($arg)*))) };
}

/// `return Err(Error::NotSupported(format!(...)))`
#[macro_export]
macro_rules! not_supported {
    ($($arg:tt)*) => { Err($crate::Error::NotSupported(format!($($arg)*))) };
}

/// `Err(Error::Execution { operator, message })`
#[macro_export]
macro_rules! exec_err {
    ($op:expr, $($arg:tt)*) => {
        Err($crate::Error::Execution { operator: $op.to_string(), message: format!($($arg)*) })
    };
}
