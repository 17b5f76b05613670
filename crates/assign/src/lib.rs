//! reelkit-assign: who is served by which ranker, and where.
//!
//! Two deterministic functions that the server (`reelkit serve`), the simulator
//! and offline jobs (`reelkit ab assign`) share, so that they always agree:
//!
//! - [`Allocation`]: users hashed into arms by a salt ([`bucket`]), each arm taking
//!   its weight's share of the unit interval;
//! - [`team_draft`]: team-draft interleaving (Radlinski, Kurup & Joachims,
//!   2008) of two rankers' lists into one, each position labelled with the
//!   team that placed it, with coin flips drawn from [`interleave_seed`].
//!
//! and the one [`Surface`] type (reels, feed, watch) the event log, the
//! ranker's requests, the server and the simulator name surfaces with.
//!
//! ```
//! use reelkit_assign::{interleave_seed, team_draft, Allocation, Team};
//!
//! let split = Allocation::parse("control=0.5,treatment=0.5")?;
//! let arm = split.arm("exp-7", 42);
//! assert_eq!(arm, split.arm("exp-7", 42)); // the same user, the same arm
//! assert!(split.names()[arm] == "control" || split.names()[arm] == "treatment");
//!
//! let a = [10u64, 11, 12, 13];
//! let b = [12u64, 20, 10, 21];
//! let merged = team_draft(&a, &b, 4, interleave_seed("exp-7", 42, 1));
//! assert_eq!(merged.len(), 4);
//! // Each team placed two of the four videos.
//! assert_eq!(merged.iter().filter(|(_, t)| *t == Team::A).count(), 2);
//! # Ok::<(), reelkit_assign::Error>(())
//! ```

mod interleave;
mod split;
mod surface;

pub use interleave::{interleave_seed, team_draft, team_draft_by, Team};
pub use split::{bucket, Allocation, Error};
pub use surface::{Surface, UnknownSurface};

/// SplitMix64's step: a bijective mix of 64 bits (Steele, Lea & Flood 2014),
/// the one hash behind arms, interleaving seeds and the simulator's streams.
#[inline]
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a salt string.
#[inline]
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
