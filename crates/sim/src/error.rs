/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is inconsistent as a whole (the text says how).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// One configuration parameter is outside its range.
    #[error("parameter `{field}` must be in {allowed}, got {got}")]
    InvalidParam {
        /// The parameter's name.
        field: &'static str,
        /// Its allowed range, in words.
        allowed: String,
        /// The value given.
        got: String,
    },
    /// A policy name that is not built in.
    #[error("unknown policy `{0}` (known: random, popular, oracle; ranker with --model)")]
    UnknownPolicy(String),
    /// A policy returned an error while choosing a feed.
    #[error("policy `{policy}` failed: {message}")]
    Policy {
        /// The policy's name.
        policy: String,
        /// What it said.
        message: String,
    },
    /// polars could not build an output frame.
    #[error("building a frame")]
    Frame(#[source] reelkit_logs::polars::error::PolarsError),
    /// Writing or validating an output log failed.
    #[error(transparent)]
    Logs(#[from] reelkit_logs::Error),
    /// A JSON output could not be serialised.
    #[error("serialising {what}")]
    Json {
        /// The output being written.
        what: &'static str,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
