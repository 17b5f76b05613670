//! A model as served: the ranker and what the service reports about it. Its
//! own module so the batcher (which scores on it) and the state (which swaps
//! it on reload) both use it without importing each other.

use reelkit_ranker::Ranker;

/// A model being served.
#[derive(Debug)]
pub struct Loaded {
    /// The model, ready to answer.
    pub ranker: Ranker,
    /// Content hash of the model file (or a caller-given name).
    pub version: String,
    /// When it was loaded (seconds since the Unix epoch).
    pub loaded_at: f64,
    /// How long loading took, seconds.
    pub load_seconds: f64,
}
