//! reelkit-sim: a synthetic Reels-style world whose engagement responds to the
//! ranking, so a better ranker really yields longer sessions, more watch time and
//! more returning users.
//!
//! The world ([`World`]) draws users with mixed topic tastes and heavy-tailed
//! activity, creators with Zipf popularity and videos with a topic, a latent
//! vector, a quality, a duration and an upload day. The [`Simulator`] plays
//! sessions day after day; any [`Policy`] fills the feed. Everything is
//! reproducible from `(params, seed)`, whatever the number of threads.
//!
//! A tiny world, two days under the built-in `oracle` and `random` policies:
//! the policy that knows the users' tastes earns more watch time.
//!
//! ```
//! use reelkit_sim::{builtin_policy, SimParams, Simulator, World};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let params = SimParams { users: 300, videos: 2_000, creators: 100, days: 2, seed: 7,
//!                          ..SimParams::default() }.check()?;
//! let world = World::generate(&params);
//! let watch = |name: &str| -> Result<u64, Box<dyn std::error::Error>> {
//!     let mut policy = builtin_policy(name)?;
//!     let events = Simulator::new(&world).run(params.days, policy.as_mut(), &|_day| {})?;
//!     Ok(events.watch_ms.iter().map(|&w| u64::from(w)).sum())
//! };
//! let (oracle, random) = (watch("oracle")?, watch("random")?);
//! assert!(oracle > random, "oracle {oracle} ms, random {random} ms");
//! // The same parameters and seed give the same log.
//! assert_eq!(watch("random")?, random);
//! # Ok(())
//! # }
//! ```

mod arms;
mod error;
mod experiment;
mod explore;
mod output;
mod params;
mod policy;
mod rng;
mod simulate;
mod world;

// What a simulation needs, at the root: parameters, the world, the
// simulator and its policies' trait, experiments and their files, errors.
pub use error::{Error, Result};
pub use experiment::{Experiment, ExperimentRun};
pub use output::{write_run, RunFiles};
pub use params::{SimParams, ValidSimParams, DEFAULT_CONFIG};
pub use policy::{builtin_policy, Policy};
pub use simulate::{RunSummary, Simulator};
pub use world::World;

/// Splitting users into arms by a salted hash.
pub mod assignment {
    pub use crate::arms::{bucket, Arms};
}

/// Frames of a world's users and videos (what `simulate` writes beside the
/// events).
pub mod frames {
    pub use crate::output::{users_frame, videos_frame};
}

/// What a policy sees and the built-in policies: the day's context, a
/// request, the seen sets, video statistics, fresh-upload exploration.
pub mod policies {
    pub use crate::explore::Explore;
    pub use crate::policy::{
        best_unseen, take_unseen, DayContext, ExploreFresh, FeedRequest, IndexHasher, OraclePolicy,
        PopularPolicy, RandomPolicy, Scratch, SeenSet, VideoStats, Visit, DEFAULT_EXPLORE,
        FRESH_DAYS,
    };
}

/// A world's hidden population: users, creators, videos, and their ids.
pub mod population {
    pub use crate::world::{dot, scramble_id, Creators, Users, Videos, SURFACES};
}

/// Seeded random streams.
pub mod random {
    pub use crate::rng::{splitmix64, Discrete, Rng};
}

/// The parts of [`SimParams`]: behaviour, surfaces, users, videos.
pub mod settings {
    pub use crate::params::{BehaviourParams, SurfaceMix, UserParams, VideoParams};
}
