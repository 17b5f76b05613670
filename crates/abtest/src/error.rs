use std::path::PathBuf;

/// Errors of the A/B analysis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Logs(#[from] reelkit_logs::Error),
    /// Polars failed on an input (a file's path or an in-memory frame's name).
    #[error("{input}")]
    Polars {
        input: String,
        #[source]
        source: polars::error::PolarsError,
    },
    #[error("invalid metrics file: {0}")]
    Config(String),
    #[error("metric `{metric}`: {reason}")]
    Metric { metric: String, reason: String },
    #[error("control arm `{control}` is not among the assigned arms ({arms})")]
    UnknownControl { control: String, arms: String },
    #[error("arm `{0}` has no assigned user")]
    EmptyArm(String),
    #[error("the experiment needs at least two arms, found {0}")]
    TooFewArms(usize),
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("writing {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
