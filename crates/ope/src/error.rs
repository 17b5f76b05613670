//! What can be wrong with a log handed to the estimators.

/// An input the estimators refuse, naming the column and the row.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// Two columns of the log have different lengths.
    #[error("column {column} has {got} rows, the log has {expected}")]
    Length {
        /// The column.
        column: &'static str,
        /// Rows of `user`.
        expected: usize,
        /// Rows of this column.
        got: usize,
    },
    /// A value outside its allowed range (or not a number).
    #[error("{column} at row {row} is {value}: it must be {allowed}")]
    OutOfRange {
        /// The column.
        column: &'static str,
        /// The row.
        row: usize,
        /// The value.
        value: f64,
        /// What it must be.
        allowed: &'static str,
    },
    /// The log has no rows.
    #[error("the log has no impressions")]
    Empty,
    /// An estimator needs the reward model's predictions and none were given.
    #[error("{0} needs a reward model's predictions (logged and target)")]
    NeedsRewardModel(&'static str),
    /// An estimator needs the sessions' per-decision weights and none were given.
    #[error("{0} needs the sessions' per-decision weights (session_weight)")]
    NeedsSessions(&'static str),
    /// A setting out of range.
    #[error("{field} is {got}: it must be {allowed}")]
    Setting {
        /// The option.
        field: &'static str,
        /// Its value.
        got: f64,
        /// What it must be.
        allowed: &'static str,
    },
    /// An estimator's name not known.
    #[error("unknown estimator {0:?}: expected ips, snips, dr, dm or pdis")]
    UnknownEstimator(String),
}

/// The crate's result.
pub type Result<T> = std::result::Result<T, Error>;
