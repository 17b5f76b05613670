//! Errors of the experiment library.

use std::path::PathBuf;

/// Errors of reelkit-lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A spec key with a value it does not allow (or a key it does not know).
    #[error("spec key `{key}`: {message}")]
    Spec { key: String, message: String },
    /// A spec (or a file it names) that is not valid TOML for its schema.
    #[error("{what}: {message}")]
    Parse { what: String, message: String },
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A trained arm could not be fitted (for example no positive interaction
    /// in its training window).
    #[error("arm `{arm}`: {message}")]
    Arm { arm: String, message: String },
    #[error(transparent)]
    Sim(#[from] reelkit_sim::Error),
    #[error(transparent)]
    Ranker(#[from] reelkit_ranker::Error),
    #[error(transparent)]
    Abtest(#[from] reelkit_abtest::Error),
    #[error(transparent)]
    Logs(#[from] reelkit_logs::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn spec(key: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Spec {
            key: key.into(),
            message: message.into(),
        }
    }
}
