//! Column names and small types of the reelkit event schema (one row per impression).
//!
//! See `DESIGN.md` / `datasets/README.md` for the table; the names here are the
//! single source of truth used by every reader, writer and SQL emitter.

/// Viewer id, `u64`.
pub const USER_ID: &str = "user_id";
/// Unique per session, `u64`.
pub const SESSION_ID: &str = "session_id";
/// Impression time, Unix milliseconds, `i64`.
pub const TS_MS: &str = "ts_ms";
/// `u64`.
pub const VIDEO_ID: &str = "video_id";
/// `u64`.
pub const CREATOR_ID: &str = "creator_id";
/// `reels`, `feed` or `watch`.
pub const SURFACE: &str = "surface";
/// 0-based slot in the session, `u32`.
pub const POSITION: &str = "position";
/// Video length in ms, `u32`.
pub const DURATION_MS: &str = "duration_ms";
/// Time watched in ms, `u32`; may exceed `duration_ms` when the video loops.
pub const WATCH_MS: &str = "watch_ms";
/// `bool`.
pub const LIKED: &str = "liked";
/// `bool`.
pub const SHARED: &str = "shared";
/// `bool`.
pub const COMMENTED: &str = "commented";
/// `bool`.
pub const FOLLOWED: &str = "followed";
/// Experiment arm, optional string.
pub const VARIANT: &str = "variant";
/// Optional `f64` in (0, 1]: the probability the logging policy had of
/// showing this video at this position (null where the policy does not
/// explore); what off-policy estimators weigh impressions by.
pub const PROPENSITY: &str = "propensity";

/// The required event columns, in file order.
pub const EVENT_COLUMNS: [&str; 13] = [
    USER_ID,
    SESSION_ID,
    TS_MS,
    VIDEO_ID,
    CREATOR_ID,
    SURFACE,
    POSITION,
    DURATION_MS,
    WATCH_MS,
    LIKED,
    SHARED,
    COMMENTED,
    FOLLOWED,
];

/// Generic interactions: item id column default name.
pub const ITEM_ID: &str = "item_id";
/// Generic interactions: optional weight column default name.
pub const WEIGHT: &str = "weight";

/// A watch shorter than this (or than the whole video, if shorter) is a skip.
pub const SKIP_THRESHOLD_MS: u32 = 3000;

/// `completed = watch_ms >= duration_ms`.
#[inline]
pub fn is_completed(watch_ms: u32, duration_ms: u32) -> bool {
    watch_ms >= duration_ms
}

/// `skipped = watch_ms < min(3000, duration_ms)`.
#[inline]
pub fn is_skipped(watch_ms: u32, duration_ms: u32) -> bool {
    watch_ms < SKIP_THRESHOLD_MS.min(duration_ms)
}

pub use reelkit_assign::{Surface, UnknownSurface};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_flags_follow_the_schema() {
        assert!(is_completed(10_000, 10_000));
        assert!(!is_completed(9_999, 10_000));
        // A 2 s video watched 1.9 s is a skip; watched 2 s is not.
        assert!(is_skipped(1_900, 2_000));
        assert!(!is_skipped(2_000, 2_000));
        // A long video: the threshold is 3 s.
        assert!(is_skipped(2_999, 60_000));
        assert!(!is_skipped(3_000, 60_000));
    }

    #[test]
    fn surface_round_trips() {
        for s in Surface::ALL {
            assert_eq!(s.as_str().parse::<Surface>(), Ok(s));
        }
        assert!("tv".parse::<Surface>().is_err());
    }
}
