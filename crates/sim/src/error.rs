/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("parameter `{field}` must be in {allowed}, got {got}")]
    InvalidParam {
        field: &'static str,
        allowed: String,
        got: String,
    },
    #[error("unknown policy `{0}` (known: random, popular, oracle; ranker with --model)")]
    UnknownPolicy(String),
    #[error("policy `{policy}` failed: {message}")]
    Policy { policy: String, message: String },
    #[error("building a frame")]
    Frame(#[source] reelkit_logs::polars::error::PolarsError),
    #[error(transparent)]
    Logs(#[from] reelkit_logs::Error),
    #[error("serialising {what}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
