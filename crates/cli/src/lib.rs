//! The `reelkit` crate's library part: glue that needs more than one reelkit
//! crate, shared by the binary and the end-to-end tests.

mod ranker_policy;

pub use ranker_policy::RankerPolicy;

use reelkit_logs::Events;
use reelkit_ranker::{EngagementWeights, Impressions};

/// The ranker's view of an event log (columns borrowed, all of one length).
pub fn impressions(ev: &Events) -> Impressions<'_> {
    Impressions {
        user_id: &ev.user_id,
        video_id: &ev.video_id,
        duration_ms: &ev.duration_ms,
        watch_ms: &ev.watch_ms,
        liked: &ev.liked,
        shared: &ev.shared,
        commented: &ev.commented,
        followed: &ev.followed,
    }
}

/// Engagement weight of every impression of a log.
pub fn event_weights(ev: &Events, w: &EngagementWeights) -> Vec<f32> {
    let imp = impressions(ev);
    (0..ev.len()).map(|i| w.weight(&imp, i)).collect()
}
