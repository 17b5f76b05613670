use std::path::PathBuf;

/// Errors of the ranker. Not `#[non_exhaustive]` on purpose: the server maps
/// every variant to an HTTP status in one exhaustive `match`, so a new variant
/// cannot reach a client without a decision.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A training or retrieval parameter is outside its range.
    #[error("parameter `{field}` must be in {allowed}, got {got}")]
    InvalidParam {
        /// The parameter's name.
        field: &'static str,
        /// Its allowed range, in words.
        allowed: &'static str,
        /// The value given.
        got: String,
    },
    /// A vector's length differs from the model's dimension.
    #[error("dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch {
        /// The model's dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// Two parts that must agree in length do not.
    #[error("{what} has {got} values, expected {expected}")]
    LengthMismatch {
        /// The part whose length is wrong.
        what: &'static str,
        /// The length wanted.
        expected: usize,
        /// The length found.
        got: usize,
    },
    /// Training was given no positive interaction (none, or none whose
    /// weight is above the minimum).
    #[error("no positive interactions to train on")]
    Empty,
    /// EASE was asked to train on a catalogue above its limit.
    #[error("EASE solves an items × items problem: {items} items is above its limit of {limit}; train with --algo ials instead")]
    TooManyItemsForEase {
        /// Items in the training data.
        items: usize,
        /// [`crate::ease::EASE_MAX_ITEMS`].
        limit: usize,
    },
    /// A weight, factor or score is NaN or infinite.
    #[error("{what} `{value}` at row {row} is not a finite number")]
    NotFinite {
        /// What holds the value (e.g. "weight").
        what: &'static str,
        /// Its 0-based row.
        row: usize,
        /// The value.
        value: f32,
    },
    /// The model file could not be opened, mapped or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not Arrow IPC (or is truncated).
    #[error("{path}: not a reelkit model file")]
    Arrow {
        /// The file.
        path: PathBuf,
        /// What arrow said.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// The file is Arrow IPC but not a well-formed reelkit model.
    #[error("{path}: not a reelkit model file: {reason}")]
    InvalidModel {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An IVF index file that cannot serve this model: truncated, foreign,
    /// of another format version, or built from another item table.
    #[error("{path}: not a usable IVF index: {reason}")]
    InvalidIndex {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The model was written in a format version this build cannot read.
    #[error(
        "{path}: model format version {found} is not supported (this build reads {supported:?})"
    )]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// The file's format version.
        found: String,
        /// The versions this build reads.
        supported: &'static [u32],
    },
    /// A user id the model has no embedding for.
    #[error("unknown user {0}")]
    UnknownUser(u64),
    /// An item id the model does not know.
    #[error("unknown item {0}")]
    UnknownItem(u64),
    /// A request that cannot be served as given (the text says why).
    #[error("{0}")]
    InvalidInput(String),
    /// Training was stopped by its caller (the stop flag was raised).
    #[error("training stopped")]
    Stopped,
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
