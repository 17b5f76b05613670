//! The `Policy` trait (what fills a user's feed) and the built-in policies.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use reelkit_logs::Surface;

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::world::World;

/// A cheap hasher for `u32` video indices (multiplicative hashing).
#[derive(Debug, Default, Clone, Copy)]
pub struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.0 = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The videos a user has been shown (by video index).
pub type SeenSet = HashSet<u32, BuildHasherDefault<IndexHasher>>;

/// Engagement counts per video, accumulated by the simulator day after day.
#[derive(Debug, Clone, Default)]
pub struct VideoStats {
    /// Impressions so far.
    pub impressions: Vec<u64>,
    /// Engaged impressions so far (watched at least half, or liked).
    pub engaged: Vec<u64>,
    /// Likes so far.
    pub likes: Vec<u64>,
    /// Trailing popularity: engaged views decayed by half every two days, seeded
    /// with the engagement gathered before day 0.
    pub trailing: Vec<f64>,
}

/// What a policy sees at the start of each day.
#[derive(Debug)]
pub struct DayContext<'a> {
    pub world: &'a World,
    /// 0-based simulated day.
    pub day: u32,
    /// Popularity statistics up to the end of the previous day.
    pub stats: &'a VideoStats,
    /// Videos that can be shown today on each surface, in [`Surface::ALL`] order.
    pub eligible: &'a [Vec<u32>; 3],
}

/// One request for a page of the feed.
#[derive(Debug)]
pub struct FeedRequest<'a> {
    pub world: &'a World,
    pub day: u32,
    /// User index (row in `world.users`).
    pub user: usize,
    pub surface: Surface,
    /// Impressions already shown in this session.
    pub session_position: u32,
    /// Every video this user has been shown, this session included.
    pub seen: &'a SeenSet,
    /// The videos that can be shown on this surface today.
    pub eligible: &'a [u32],
    /// How many videos to return (fewer only when the catalogue runs out).
    pub n: usize,
}

/// Per user-day scratch space for policies: the simulator clears it at the start
/// of each user's day, so a policy can rank once per day and surface and walk its
/// list page after page.
#[derive(Debug, Default)]
pub struct Scratch {
    /// A ranked list per surface (in [`Surface::ALL`] order).
    pub ranked: [Vec<u32>; 3],
    /// Position reached in each ranked list.
    pub cursor: [usize; 3],
    /// Whether `ranked[s]` is filled for today.
    pub filled: [bool; 3],
}

impl Scratch {
    /// Forgets everything (called by the simulator for each new user-day).
    pub fn clear(&mut self) {
        self.filled = [false; 3];
        self.cursor = [0; 3];
    }
}

/// Index of a surface in [`Surface::ALL`].
pub fn surface_index(s: Surface) -> usize {
    match s {
        Surface::Reels => 0,
        Surface::Feed => 1,
        Surface::Watch => 2,
    }
}

/// Fills `out` with up to `n` videos of `ranked` from `cursor` on that `seen`
/// does not hold, advancing the cursor.
pub fn take_unseen(
    ranked: &[u32],
    cursor: &mut usize,
    seen: &SeenSet,
    n: usize,
    out: &mut Vec<u32>,
) {
    while out.len() < n && *cursor < ranked.len() {
        let v = ranked[*cursor];
        *cursor += 1;
        if !seen.contains(&v) && !out.contains(&v) {
            out.push(v);
        }
    }
}

/// What fills a user's feed. Implement it to plug any ranker into the simulator
/// (the `reelkit` CLI adapts a trained `reelkit-ranker` model this way).
///
/// `fill` is called concurrently for different users; it must be deterministic
/// given its inputs and `rng` for results to be reproducible.
pub trait Policy: Send + Sync {
    /// A short name (written as the arm's `variant` in experiments).
    fn name(&self) -> &str;

    /// Called once at the start of each simulated day.
    fn begin_day(&mut self, _ctx: &DayContext<'_>) -> Result<()> {
        Ok(())
    }

    /// Appends up to `req.n` video indices to `out`, best first, none of them in
    /// `req.seen` (the simulator shows a repeat if a policy returns one).
    fn fill(&self, req: &FeedRequest<'_>, scratch: &mut Scratch, rng: &mut Rng, out: &mut Vec<u32>);
}

/// Uniformly random unseen videos: the lower bound.
#[derive(Debug, Default)]
pub struct RandomPolicy;

impl Policy for RandomPolicy {
    fn name(&self) -> &str {
        "random"
    }

    fn fill(&self, req: &FeedRequest<'_>, _: &mut Scratch, rng: &mut Rng, out: &mut Vec<u32>) {
        let pool = req.eligible;
        if pool.is_empty() {
            return;
        }
        let mut tries = 0;
        while out.len() < req.n && tries < 64 * req.n {
            tries += 1;
            let v = pool[rng.below(pool.len() as u64) as usize];
            if !req.seen.contains(&v) && !out.contains(&v) {
                out.push(v);
            }
        }
        if out.len() < req.n {
            // Nearly everything seen: scan from a random offset instead.
            let start = rng.below(pool.len() as u64) as usize;
            let mut cursor = 0;
            let rotated: Vec<u32> = pool[start..]
                .iter()
                .chain(&pool[..start])
                .copied()
                .collect();
            take_unseen(&rotated, &mut cursor, req.seen, req.n, out);
        }
    }
}

/// Trailing popularity (engaged views, decayed), seen videos excluded: the
/// usual production baseline. A small share of slots goes to fresh uploads
/// (uploaded in the last [`FRESH_DAYS`] days) drawn at random, so new videos
/// can earn engagement and become popular.
#[derive(Debug)]
pub struct PopularPolicy {
    ranked: [Vec<u32>; 3],
    fresh: [Vec<u32>; 3],
    /// Probability that a slot is filled with a fresh upload.
    pub explore_fresh: f64,
}

/// Uploads younger than this many days count as fresh for exploration.
pub const FRESH_DAYS: i32 = 3;

impl Default for PopularPolicy {
    fn default() -> Self {
        PopularPolicy {
            ranked: Default::default(),
            fresh: Default::default(),
            explore_fresh: 0.1,
        }
    }
}

impl Policy for PopularPolicy {
    fn name(&self) -> &str {
        "popular"
    }

    fn begin_day(&mut self, ctx: &DayContext<'_>) -> Result<()> {
        let score = &ctx.stats.trailing;
        let uploads = &ctx.world.videos.upload_day;
        for (fresh, eligible) in self.fresh.iter_mut().zip(ctx.eligible) {
            fresh.clear();
            fresh.extend(
                eligible
                    .iter()
                    .copied()
                    .filter(|&v| uploads[v as usize] > ctx.day as i32 - FRESH_DAYS),
            );
        }
        for (ranked, eligible) in self.ranked.iter_mut().zip(ctx.eligible) {
            ranked.clear();
            ranked.extend_from_slice(eligible);
            ranked.sort_unstable_by(|&a, &b| {
                score[b as usize]
                    .total_cmp(&score[a as usize])
                    .then(a.cmp(&b))
            });
        }
        Ok(())
    }

    fn fill(
        &self,
        req: &FeedRequest<'_>,
        scratch: &mut Scratch,
        rng: &mut Rng,
        out: &mut Vec<u32>,
    ) {
        let s = surface_index(req.surface);
        let fresh = &self.fresh[s];
        while out.len() < req.n {
            let before = out.len();
            if !fresh.is_empty() && rng.bernoulli(self.explore_fresh) {
                let v = fresh[rng.below(fresh.len() as u64) as usize];
                if !req.seen.contains(&v) && !out.contains(&v) {
                    out.push(v);
                    continue;
                }
            }
            take_unseen(
                &self.ranked[s],
                &mut scratch.cursor[s],
                req.seen,
                before + 1,
                out,
            );
            if out.len() == before {
                break; // the ranked list is exhausted
            }
        }
    }
}

/// Ranks by the true response of the user to each video: the upper bound no
/// learned ranker can beat on average.
#[derive(Debug, Default)]
pub struct OraclePolicy;

/// How many of the best videos the oracle ranks per user-day and surface before
/// falling back to ranking everything.
const ORACLE_DEPTH: usize = 400;

impl Policy for OraclePolicy {
    fn name(&self) -> &str {
        "oracle"
    }

    fn fill(&self, req: &FeedRequest<'_>, scratch: &mut Scratch, _: &mut Rng, out: &mut Vec<u32>) {
        let s = surface_index(req.surface);
        if !scratch.filled[s] || scratch.cursor[s] >= scratch.ranked[s].len() {
            let depth = if scratch.filled[s] {
                usize::MAX
            } else {
                ORACLE_DEPTH
            };
            let w = req.world;
            let mut scored: Vec<(f64, u32)> = req
                .eligible
                .iter()
                .filter(|v| !req.seen.contains(v))
                .map(|&v| (w.response(req.user, v as usize), v))
                .collect();
            let by_score = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
            if scored.len() > depth {
                scored.select_nth_unstable_by(depth, by_score);
                scored.truncate(depth);
            }
            scored.sort_unstable_by(by_score);
            scratch.ranked[s].clear();
            scratch.ranked[s].extend(scored.iter().map(|x| x.1));
            scratch.cursor[s] = 0;
            scratch.filled[s] = true;
        }
        take_unseen(
            &scratch.ranked[s],
            &mut scratch.cursor[s],
            req.seen,
            req.n,
            out,
        );
    }
}

/// A built-in policy by name: `random`, `popular` or `oracle`.
pub fn builtin_policy(name: &str) -> Result<Box<dyn Policy>> {
    match name {
        "random" => Ok(Box::new(RandomPolicy)),
        "popular" => Ok(Box::new(PopularPolicy::default())),
        "oracle" => Ok(Box::new(OraclePolicy)),
        other => Err(Error::UnknownPolicy(other.to_string())),
    }
}
