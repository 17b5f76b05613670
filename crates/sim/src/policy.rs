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
    /// The world (what a policy may observe of it is its business).
    pub world: &'a World,
    /// 0-based simulated day.
    pub day: u32,
    /// Popularity statistics up to the end of the previous day.
    pub stats: &'a VideoStats,
    /// Videos that can be shown today on each surface, in [`Surface::ALL`] order.
    pub eligible: &'a [Vec<u32>; 3],
    /// The users this policy serves today (in user order), known before any
    /// page is filled: a policy that ranks per user can rank for all of them
    /// at once.
    pub visits: &'a [Visit<'a>],
}

/// A user this policy serves today: the surfaces of the day's sessions and
/// the videos seen before the day starts.
#[derive(Debug, Clone, Copy)]
pub struct Visit<'a> {
    /// User index (row in `world.users`).
    pub user: usize,
    /// Whether a session of the day is on each surface ([`Surface::ALL`] order).
    pub surfaces: [bool; 3],
    /// Every video shown to the user before today.
    pub seen: &'a SeenSet,
}

/// One request for a page of the feed.
#[derive(Debug)]
pub struct FeedRequest<'a> {
    /// The world.
    pub world: &'a World,
    /// 0-based simulated day.
    pub day: u32,
    /// User index (row in `world.users`).
    pub user: usize,
    /// The surface the page is for.
    pub surface: Surface,
    /// The session's id, as its impressions are logged (`session_id`).
    pub session_id: u64,
    /// Impressions already shown in this session.
    pub session_position: u32,
    /// Every video this user has been shown, this session included.
    pub seen: &'a SeenSet,
    /// The videos that can be shown on this surface today.
    pub eligible: &'a [u32],
    /// How many videos to return (fewer only when the catalogue runs out).
    pub n: usize,
    /// Simulated time of the request (Unix ms): the page's first impression
    /// is at this time.
    pub ts_ms: i64,
    /// This page request's id, unique per user: day, session and position
    /// packed (what a client would send a server to seed its interleaving).
    pub request_id: u64,
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
    /// Scratch of policies a policy combines (e.g. the two teams of an
    /// interleaving), each cleared with this one.
    pub sub: Vec<Scratch>,
    /// The last page's propensities, one per video, when an exploring
    /// policy ([`crate::policies::Explore`]) filled it; empty otherwise (the
    /// simulator empties it before every page).
    pub propensity: Vec<f64>,
}

impl Scratch {
    /// Forgets everything (called by the simulator for each new user-day).
    pub fn clear(&mut self) {
        self.filled = [false; 3];
        self.cursor = [0; 3];
        for s in &mut self.sub {
            s.clear();
        }
    }

    /// Appends up to `req.n` unseen videos from this user-day's ranked list for
    /// `req`'s surface, building the list first when it is missing or used up:
    /// the first build keeps the `depth` best unseen eligible videos by `score`
    /// (higher first, ties by lower index), a rebuild ranks them all. `score`
    /// returns `None` for videos the policy cannot rank.
    pub fn walk_ranked(
        &mut self,
        req: &FeedRequest<'_>,
        depth: usize,
        out: &mut Vec<u32>,
        score: impl Fn(u32) -> Option<f64>,
    ) {
        let s = req.surface.index();
        if !self.filled[s] || self.cursor[s] >= self.ranked[s].len() {
            let depth = if self.filled[s] { usize::MAX } else { depth };
            let best = best_unseen(req, depth, score);
            self.ranked[s].clear();
            self.ranked[s].extend(best);
            self.cursor[s] = 0;
            self.filled[s] = true;
        }
        take_unseen(&self.ranked[s], &mut self.cursor[s], req.seen, req.n, out);
    }
}

/// The `n` best eligible videos of `req` the user has not seen by `score`
/// (higher first, ties by lower index; `None`: a video the policy cannot
/// rank), best first.
pub fn best_unseen(
    req: &FeedRequest<'_>,
    n: usize,
    score: impl Fn(u32) -> Option<f64>,
) -> Vec<u32> {
    let mut scored: Vec<(f64, u32)> = req
        .eligible
        .iter()
        .filter(|v| !req.seen.contains(v))
        .filter_map(|&v| score(v).map(|x| (x, v)))
        .collect();
    let by_score = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if scored.len() > n {
        scored.select_nth_unstable_by(n, by_score);
        scored.truncate(n);
    }
    scored.sort_unstable_by(by_score);
    scored.into_iter().map(|x| x.1).collect()
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
    /// `state` is this user's day with the policy (lists, cursors).
    fn fill(&self, req: &FeedRequest<'_>, state: &mut Scratch, rng: &mut Rng, out: &mut Vec<u32>);
}

/// A boxed policy is a policy (so wrappers such as `Explore` take either).
impl<P: Policy + ?Sized> Policy for Box<P> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn begin_day(&mut self, ctx: &DayContext<'_>) -> Result<()> {
        (**self).begin_day(ctx)
    }

    fn fill(&self, req: &FeedRequest<'_>, state: &mut Scratch, rng: &mut Rng, out: &mut Vec<u32>) {
        (**self).fill(req, state, rng, out)
    }
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
/// usual production baseline. The built-in `popular` wraps it in
/// [`ExploreFresh`] so new uploads get a chance.
#[derive(Debug, Default)]
pub struct PopularPolicy {
    ranked: [Vec<u32>; 3],
}

impl PopularPolicy {
    /// Tops `out` up to `req.n` with the most popular unseen videos, from the
    /// top of the list: for a policy whose own ranking ran out (its scratch
    /// cursors are its own).
    pub fn fill_rest(&self, req: &FeedRequest<'_>, rng: &mut Rng, out: &mut Vec<u32>) {
        if out.len() < req.n {
            let mut own = Scratch::default();
            self.fill(req, &mut own, rng, out);
        }
    }
}

impl Policy for PopularPolicy {
    fn name(&self) -> &str {
        "popular"
    }

    fn begin_day(&mut self, ctx: &DayContext<'_>) -> Result<()> {
        let score = &ctx.stats.trailing;
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

    fn fill(&self, req: &FeedRequest<'_>, state: &mut Scratch, _: &mut Rng, out: &mut Vec<u32>) {
        let s = req.surface.index();
        take_unseen(&self.ranked[s], &mut state.cursor[s], req.seen, req.n, out);
    }
}

/// Uploads younger than this many days count as fresh for exploration.
pub const FRESH_DAYS: i32 = 3;

/// Wraps a policy so that each slot of the feed is, with probability `share`,
/// a random fresh upload (younger than [`FRESH_DAYS`]) the user has not seen:
/// the exploration that lets new videos earn engagement. Use the same share on
/// every arm of an experiment so that only the ranking differs.
#[derive(Debug)]
pub struct ExploreFresh<P> {
    /// The policy ranking the other slots.
    pub inner: P,
    /// Probability that a slot is a random fresh upload, in [0, 1].
    pub share: f64,
    fresh: [Vec<u32>; 3],
}

impl<P: Policy> ExploreFresh<P> {
    /// `inner` with a `share` of fresh slots.
    pub fn new(inner: P, share: f64) -> Self {
        ExploreFresh {
            inner,
            share,
            fresh: Default::default(),
        }
    }
}

impl<P: Policy> Policy for ExploreFresh<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn begin_day(&mut self, ctx: &DayContext<'_>) -> Result<()> {
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
        self.inner.begin_day(ctx)
    }

    fn fill(&self, req: &FeedRequest<'_>, state: &mut Scratch, rng: &mut Rng, out: &mut Vec<u32>) {
        let fresh = &self.fresh[req.surface.index()];
        let n_fresh = if fresh.is_empty() {
            0
        } else {
            (0..req.n).filter(|_| rng.bernoulli(self.share)).count()
        };
        let inner_req = FeedRequest {
            n: req.n - n_fresh,
            ..*req
        };
        self.inner.fill(&inner_req, state, rng, out);
        let mut placed = 0;
        let mut tries = 0;
        while placed < n_fresh && tries < 16 * n_fresh {
            tries += 1;
            let v = fresh[rng.below(fresh.len() as u64) as usize];
            if !req.seen.contains(&v) && !out.contains(&v) {
                let at = rng.below(out.len() as u64 + 1) as usize;
                out.insert(at, v);
                placed += 1;
            }
        }
        if out.len() < req.n {
            // Fresh uploads ran out: let the inner policy fill the rest.
            self.inner.fill(req, state, rng, out);
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

    fn fill(&self, req: &FeedRequest<'_>, state: &mut Scratch, _: &mut Rng, out: &mut Vec<u32>) {
        state.walk_ranked(req, ORACLE_DEPTH, out, |v| {
            Some(
                req.world
                    .response(req.user, v as usize, req.surface.index()),
            )
        });
    }
}

/// Share of fresh-upload slots of the built-in `popular` policy.
pub const DEFAULT_EXPLORE: f64 = 0.1;

/// A built-in policy by name: `random`, `popular` (with fresh exploration) or `oracle`.
pub fn builtin_policy(name: &str) -> Result<Box<dyn Policy>> {
    match name {
        "random" => Ok(Box::new(RandomPolicy)),
        "popular" => Ok(Box::new(ExploreFresh::new(
            PopularPolicy::default(),
            DEFAULT_EXPLORE,
        ))),
        "oracle" => Ok(Box::new(OraclePolicy)),
        other => Err(Error::UnknownPolicy(other.to_string())),
    }
}
