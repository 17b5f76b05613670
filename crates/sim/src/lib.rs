//! reelkit-sim: a synthetic Reels-style world whose engagement responds to the
//! ranking, so a better ranker really yields longer sessions, more watch time and
//! more returning users.
//!
//! The world ([`World`]) draws users with mixed topic tastes and heavy-tailed
//! activity, creators with Zipf popularity and videos with a topic, a latent
//! vector, a quality, a duration and an upload day. The [`Simulator`] plays
//! sessions day after day; any [`Policy`] fills the feed. Everything is
//! reproducible from `(params, seed)`, whatever the number of threads.

mod arms;
mod error;
mod experiment;
mod output;
mod params;
mod policy;
mod rng;
mod simulate;
mod world;

pub use arms::{bucket, Arms};
pub use error::{Error, Result};
pub use experiment::{Experiment, ExperimentRun};
pub use output::{users_frame, videos_frame, write_run, RunFiles};
pub use params::{
    BehaviourParams, SimParams, SurfaceMix, UserParams, ValidSimParams, VideoParams, DEFAULT_CONFIG,
};
pub use policy::{
    builtin_policy, surface_index, take_unseen, DayContext, ExploreFresh, FeedRequest, IndexHasher,
    OraclePolicy, Policy, PopularPolicy, RandomPolicy, Scratch, SeenSet, VideoStats, Visit,
    DEFAULT_EXPLORE, FRESH_DAYS,
};
pub use rng::{splitmix64, Discrete, Rng};
pub use simulate::{RunSummary, Simulator};
pub use world::{dot, scramble_id, Creators, Users, Videos, World, SURFACES};
