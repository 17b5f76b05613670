use std::path::PathBuf;

/// Errors from reading, writing and validating reelkit logs.
///
/// Every variant names what is wrong and where: the file, the column and, for
/// value errors, the 0-based data row.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}")]
    Polars {
        path: PathBuf,
        #[source]
        source: polars::error::PolarsError,
    },
    #[error("{path}: unsupported file extension (expected .parquet, .csv, .tsv, .arrow, .ipc or .feather)")]
    UnsupportedFormat { path: PathBuf },
    #[error("{path}: missing column `{column}` (columns present: {available})")]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: String,
    },
    #[error("{path}: column `{column}` has type {found}, expected {expected}")]
    WrongType {
        path: PathBuf,
        column: String,
        expected: &'static str,
        found: String,
    },
    #[error("{path}: column `{column}` is null at row {row} (0-based data row)")]
    NullValue {
        path: PathBuf,
        column: String,
        row: usize,
    },
    #[error(
        "{path}: column `{column}` at row {row} (0-based data row): {reason} (value: {value})"
    )]
    InvalidValue {
        path: PathBuf,
        column: String,
        row: usize,
        value: String,
        reason: &'static str,
    },
    #[error(
        "{path}: user {user_id} is assigned to two arms, `{first}` and `{second}` (row {row}, 0-based data row)"
    )]
    UserInTwoArms {
        path: PathBuf,
        user_id: u64,
        first: String,
        second: String,
        row: usize,
    },
    #[error("{path}: {what} has {got} rows, expected {expected}")]
    LengthMismatch {
        path: PathBuf,
        what: &'static str,
        expected: usize,
        got: usize,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn polars(path: impl Into<PathBuf>, source: polars::error::PolarsError) -> Self {
        Error::Polars {
            path: path.into(),
            source,
        }
    }
}
