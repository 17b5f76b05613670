//! The surfaces a video feed is served on: one type for the event log, the
//! ranker's requests, the server and the simulator.

use std::{fmt, str::FromStr};

/// Where an impression was shown, and where a feed is asked for: which
/// video formats are eligible (reels: short, watch: long, feed: all).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Surface {
    /// Full-screen vertical short videos.
    Reels,
    /// The mixed home feed (short and long videos).
    Feed,
    /// Long-form video tab.
    Watch,
}

impl Surface {
    /// All surfaces, in a stable order (per-surface models store theirs in it).
    pub const ALL: [Surface; 3] = [Surface::Reels, Surface::Feed, Surface::Watch];

    /// Its name in files, requests and model files.
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Reels => "reels",
            Surface::Feed => "feed",
            Surface::Watch => "watch",
        }
    }

    /// Its position in [`Surface::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Surface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown surface name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown surface `{0}` (expected reels, feed or watch)")]
pub struct UnknownSurface(pub String);

impl FromStr for Surface {
    type Err = UnknownSurface;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Surface::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownSurface(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_index_follows_all() {
        for (i, s) in Surface::ALL.into_iter().enumerate() {
            assert_eq!(s.as_str().parse::<Surface>(), Ok(s));
            assert_eq!(s.index(), i);
            assert_eq!(s.to_string(), s.as_str());
        }
        let err = "shorts".parse::<Surface>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown surface `shorts` (expected reels, feed or watch)"
        );
        assert!("Reels".parse::<Surface>().is_err());
    }
}
