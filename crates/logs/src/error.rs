use std::path::PathBuf;

/// Errors from reading, writing and validating reelkit logs.
///
/// Every variant names what is wrong and where: the file, the column and, for
/// value errors, the 0-based data row.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened, read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// polars could not read or write the file (corrupt, truncated, or not
    /// the format its extension says).
    #[error("{path}")]
    Polars {
        /// The file.
        path: PathBuf,
        /// What polars said.
        #[source]
        source: polars::error::PolarsError,
    },
    /// A Parquet or Arrow IPC file declares a count or length its own
    /// structure or this machine's memory cannot hold (checked before
    /// polars reads it: it would abort on the allocation).
    #[error("{path}: corrupt file: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong and where in the file.
        what: String,
    },
    /// polars failed inside its reader on this file (it panics on some
    /// corrupt files and on a few valid types it lacks, such as run-end
    /// encoded columns); the failure is caught and reported here.
    #[error("{path}: polars cannot read this file (corrupt, or a column type it does not support): {what}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// polars' message.
        what: String,
    },
    /// The file's extension names no format reelkit reads or writes.
    #[error("{path}: unsupported file extension (expected .parquet, .csv, .tsv, .arrow, .ipc or .feather)")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
    },
    /// The file has a header but no data row.
    #[error("{path}: no data rows (only a header)")]
    NoRows {
        /// The file.
        path: PathBuf,
    },
    /// A required column is absent.
    #[error("{path}: missing column `{column}` (columns present: {available})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column looked for.
        column: String,
        /// The file's columns, comma-separated.
        available: String,
    },
    /// A line of a text file that cannot be read as a row.
    #[error("{path}: line {line}: {reason}: {}", cut(text))]
    BadLine {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// The line, cut to 80 characters.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A column has a type that cannot be read as the one expected.
    #[error("{path}: column `{column}` has type {found}, expected {expected}")]
    WrongType {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// The type wanted (e.g. "integer").
        expected: &'static str,
        /// The column's type in the file.
        found: String,
    },
    /// A required value is null.
    #[error("{path}: column `{column}` is null at row {row} (0-based data row)")]
    NullValue {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// The 0-based data row.
        row: usize,
    },
    /// A value is outside what the column allows (negative, NaN, too large).
    #[error(
        "{path}: column `{column}` at row {row} (0-based data row): {reason} (value: {})",
        cut(value)
    )]
    InvalidValue {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// The 0-based data row.
        row: usize,
        /// The value as found.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An assignment file puts one user in two arms.
    #[error(
        "{path}: user {user_id} is assigned to two arms, `{first}` and `{second}` (row {row}, 0-based data row)"
    )]
    UserInTwoArms {
        /// The assignment file.
        path: PathBuf,
        /// The user.
        user_id: u64,
        /// The arm of the user's first row.
        first: String,
        /// The other arm.
        second: String,
        /// The 0-based data row of the second assignment.
        row: usize,
    },
    /// Two parts that must have one row per item disagree in length.
    #[error("{path}: {what} has {got} rows, expected {expected}")]
    LengthMismatch {
        /// The file (or the in-memory frame's name).
        path: PathBuf,
        /// The part whose length is wrong.
        what: &'static str,
        /// The length wanted.
        expected: usize,
        /// The length found.
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
            source: without_python_hints(source),
        }
    }
}

/// polars' message without its advice to Python users (`infer_schema_length`,
/// `schema_overrides`, `ignore_errors`: options a reelkit user cannot set),
/// and cut to a reasonable length.
pub fn without_python_hints(e: polars::error::PolarsError) -> polars::error::PolarsError {
    const HINTS: [&str; 5] = [
        "infer_schema_length",
        "schema_overrides",
        "ignore_errors",
        "You might want to try",
        "truncate_ragged_lines",
    ];
    let text = e.to_string();
    if !HINTS.iter().any(|h| text.contains(h)) && text.len() <= 600 {
        return e;
    }
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !HINTS.iter().any(|h| l.contains(h)))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let mut msg = kept.join(" ").trim().to_string();
    if msg.len() > 600 {
        let end = (0..=600)
            .rev()
            .find(|&i| msg.is_char_boundary(i))
            .unwrap_or(0);
        msg.truncate(end);
        msg.push('…');
    }
    polars::error::PolarsError::ComputeError(msg.into())
}

/// A value as written, cut to 80 characters for a message.
pub(crate) fn cut(v: &str) -> String {
    let v = v.trim_end();
    match v.char_indices().nth(80) {
        Some((at, _)) => format!("{}… ({} characters)", &v[..at], v.chars().count()),
        None => v.to_string(),
    }
}
