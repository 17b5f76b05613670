use std::path::PathBuf;

/// Errors of the ranker. Not `#[non_exhaustive]` on purpose: the server maps
/// every variant to an HTTP status in one exhaustive `match`, so a new variant
/// cannot reach a client without a decision.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("parameter `{field}` must be in {allowed}, got {got}")]
    InvalidParam {
        field: &'static str,
        allowed: &'static str,
        got: String,
    },
    #[error("dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("{what} has {got} values, expected {expected}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("no interactions to train on")]
    Empty,
    #[error("{what} `{value}` at row {row} is not a finite number")]
    NotFinite {
        what: &'static str,
        row: usize,
        value: f32,
    },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a reelkit model file")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error("{path}: not a reelkit model file: {reason}")]
    InvalidModel { path: PathBuf, reason: String },
    #[error(
        "{path}: model format version {found} is not supported (this build reads {supported:?})"
    )]
    Incompatible {
        path: PathBuf,
        found: String,
        supported: &'static [u32],
    },
    #[error("unknown user {0}")]
    UnknownUser(u64),
    #[error("unknown item {0}")]
    UnknownItem(u64),
    #[error("{0}")]
    InvalidInput(String),
    #[error("training stopped")]
    Stopped,
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
