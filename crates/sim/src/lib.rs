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
