//! Errors of the experiment library.

use std::path::PathBuf;

/// Errors of reelkit-lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A spec key with a value it does not allow (or a key it does not know).
    #[error("spec key `{key}`: {message}")]
    Spec {
        /// The key, dotted (e.g. `arms.unified.dim`).
        key: String,
        /// What is wrong with its value.
        message: String,
    },
    /// A spec (or a file it names) that is not valid TOML for its schema.
    #[error("{what}: {message}")]
    Parse {
        /// The spec or file.
        what: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A trained arm could not be fitted (for example no positive interaction
    /// in its training window).
    #[error("arm `{arm}`: {message}")]
    Arm {
        /// The arm's name.
        arm: String,
        /// Why it could not be fitted.
        message: String,
    },
    /// Training input that cannot be trained on as asked (the text says why).
    #[error("{0}")]
    Input(String),
    /// The simulator failed.
    #[error(transparent)]
    Sim(#[from] reelkit_sim::Error),
    /// Training or retrieval failed.
    #[error(transparent)]
    Ranker(#[from] reelkit_ranker::Error),
    /// The analysis failed.
    #[error(transparent)]
    Abtest(#[from] reelkit_abtest::Error),
    /// Off-policy estimation refused its input.
    #[error(transparent)]
    Ope(#[from] reelkit_ope::Error),
    /// Reading or writing a log failed.
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
