use std::path::PathBuf;

/// Errors of the A/B analysis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or validating a log (events, assignments) failed.
    #[error(transparent)]
    Logs(#[from] reelkit_logs::Error),
    /// Polars failed on an input (a file's path or an in-memory frame's name).
    #[error("{input}")]
    Polars {
        /// The file's path or the frame's name.
        input: String,
        /// What polars said.
        #[source]
        source: polars::error::PolarsError,
    },
    /// A metrics file that is not valid TOML for the metric schema.
    #[error("invalid metrics file: {0}")]
    Config(String),
    /// A metric that cannot be computed as defined.
    #[error("metric `{metric}`: {reason}")]
    Metric {
        /// The metric's name.
        metric: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The named control arm has no assigned user.
    #[error("control arm `{control}` is not among the assigned arms ({arms})")]
    UnknownControl {
        /// The control asked for.
        control: String,
        /// The arms that exist, comma-separated.
        arms: String,
    },
    /// An arm without users (the statistics need at least one per arm).
    #[error("arm `{0}` has no assigned user")]
    EmptyArm(String),
    /// No event belongs to an assigned user (files of different experiments,
    /// or ids of another type): without this error, a report of zeros.
    #[error(
        "{events}: none of its {read} events belongs to one of the {assigned} assigned users \
         (assignments start with user {first}): are they the same experiment's files, with \
         the same user ids?"
    )]
    NoOverlap {
        /// The events' input.
        events: String,
        /// Event rows read.
        read: u64,
        /// Assigned users.
        assigned: usize,
        /// The first assigned user.
        first: u64,
    },
    /// Fewer than two arms: nothing to compare.
    #[error("the experiment needs at least two arms, found {0}")]
    TooFewArms(usize),
    /// An input or setting out of its domain.
    #[error("{what}: {reason}")]
    Invalid {
        /// The input or setting.
        what: String,
        /// Why it is refused.
        reason: String,
    },
    /// A report could not be written.
    #[error("writing {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
