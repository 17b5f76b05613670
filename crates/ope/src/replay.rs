//! A deterministic candidate ranker replayed on a log's requests: what it
//! would have shown at each logged slot, hence its probability of the
//! logged video there (1 or 0), and a cross-fitted reward model of what
//! each slot would have earned.
//!
//! A log of impressions does not hold its requests; they are rebuilt from
//! it. A request is a page of a session: the impressions of one session
//! whose positions fall in the same run of `page_size` (positions
//! `0..page_size` are the first page, and so on), slot `position %
//! page_size`, which is how the simulator and a feed that fetches a page at
//! a time fill a session. What the user had seen before the page is every
//! video of the user's earlier pages in the log (the log's first impression
//! of a user starts an empty history), and the candidate answers the page
//! with its `page_size` best videos outside that set.

use std::collections::HashMap;

use rayon::prelude::*;
use reelkit_assign::splitmix64;

use crate::error::{Error, Result};

/// The columns of a log that rebuild its requests, one row per impression.
#[derive(Debug, Clone, Copy)]
pub struct Impressions<'a> {
    /// The user shown the video.
    pub user: &'a [u64],
    /// The session (unique across users).
    pub session: &'a [u64],
    /// When it was shown: orders a user's sessions.
    pub ts_ms: &'a [i64],
    /// The 0-based slot in the session.
    pub position: &'a [u32],
    /// The surface, as a small index (reels 0, feed 1, watch 2, or any
    /// numbering the candidate understands).
    pub surface: &'a [u8],
    /// The video shown.
    pub video: &'a [u64],
}

/// One request rebuilt from the log.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    /// The user.
    pub user: u64,
    /// The surface's index.
    pub surface: u8,
    /// When the page's first impression was shown (videos uploaded later
    /// were not there to show).
    pub ts_ms: i64,
    /// The videos of the user's earlier pages, sorted.
    pub seen: &'a [u64],
    /// Slots on the page.
    pub k: usize,
}

/// A ranker that answers a request deterministically.
pub trait Candidate: Sync {
    /// What the candidate may keep between one user's requests (a longer
    /// list to answer later pages from); a fresh one per user.
    type Memo: Default;

    /// The `k` videos (or fewer, when it has no more) the candidate shows,
    /// best first, none of them in `seen`. The user's requests come in the
    /// order they were shown, with `memo`.
    fn page(&self, req: &PageRequest<'_>, memo: &mut Self::Memo) -> Vec<u64>;
}

impl<F> Candidate for F
where
    F: Fn(&PageRequest<'_>) -> Vec<u64> + Sync,
{
    type Memo = ();

    fn page(&self, req: &PageRequest<'_>, _: &mut ()) -> Vec<u64> {
        self(req)
    }
}

/// The candidate's choices on a log's requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// The video the candidate puts at each row's slot (`None`: its list
    /// ends before the slot).
    pub choice: Vec<Option<u64>>,
    /// The candidate's probability of the row's logged video at its slot:
    /// 1 when it is its choice, else 0.
    pub target: Vec<f64>,
    /// Requests (pages) rebuilt.
    pub pages: usize,
}

impl Replay {
    /// Share of rows where the candidate chose the logged video.
    pub fn agreement(&self) -> f64 {
        if self.target.is_empty() {
            return 0.0;
        }
        self.target.iter().sum::<f64>() / self.target.len() as f64
    }
}

/// Every named column has `n` rows.
fn same_len(n: usize, columns: &[(&'static str, usize)]) -> Result<()> {
    match columns.iter().find(|&&(_, len)| len != n) {
        Some(&(column, got)) => Err(Error::Length {
            column,
            expected: n,
            got,
        }),
        None => Ok(()),
    }
}

fn check(imp: &Impressions<'_>) -> Result<usize> {
    let n = imp.user.len();
    if n == 0 {
        return Err(Error::Empty);
    }
    same_len(
        n,
        &[
            ("session", imp.session.len()),
            ("ts_ms", imp.ts_ms.len()),
            ("position", imp.position.len()),
            ("surface", imp.surface.len()),
            ("video", imp.video.len()),
        ],
    )?;
    Ok(n)
}

/// The rows of each distinct key, groups in order of first appearance.
fn groups(keys: &[u64]) -> Vec<Vec<usize>> {
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut rows: Vec<Vec<usize>> = Vec::new();
    for (i, &k) in keys.iter().enumerate() {
        let next = rows.len();
        let at = *index.entry(k).or_insert(next);
        if at == next {
            rows.push(Vec::new());
        }
        rows[at].push(i);
    }
    rows
}

/// Each user's rows in the order they were shown (time, session, position).
fn by_user(imp: &Impressions<'_>) -> Vec<Vec<usize>> {
    let mut rows = groups(imp.user);
    rows.par_iter_mut().for_each(|r| {
        r.sort_by_key(|&i| (imp.ts_ms[i], imp.session[i], imp.position[i]));
    });
    rows
}

/// Replays `candidate` on every request of the log (see the module's text).
/// Users are replayed in parallel; the result does not depend on the
/// thread count.
pub fn replay<C: Candidate>(
    imp: &Impressions<'_>,
    page_size: usize,
    candidate: &C,
) -> Result<Replay> {
    let n = check(imp)?;
    if page_size == 0 {
        return Err(Error::Setting {
            field: "page_size",
            got: 0.0,
            allowed: "at least 1",
        });
    }
    let users = by_user(imp);
    // Per user: (row, choice) pairs and the pages rebuilt.
    type Choices = (Vec<(usize, Option<u64>)>, usize);
    let per_user: Vec<Choices> = users
        .par_iter()
        .map(|rows| {
            let mut seen: Vec<u64> = Vec::new();
            let mut memo = C::Memo::default();
            let mut out = Vec::with_capacity(rows.len());
            let mut pages = 0;
            let mut at = 0;
            while at < rows.len() {
                let first = rows[at];
                let key = |i: usize| (imp.session[i], imp.position[i] as usize / page_size);
                let end = at
                    + rows[at..]
                        .iter()
                        .take_while(|&&i| key(i) == key(first))
                        .count();
                let req = PageRequest {
                    user: imp.user[first],
                    surface: imp.surface[first],
                    ts_ms: imp.ts_ms[first],
                    seen: &seen,
                    k: page_size,
                };
                let list = candidate.page(&req, &mut memo);
                pages += 1;
                for &i in &rows[at..end] {
                    let slot = imp.position[i] as usize % page_size;
                    out.push((i, list.get(slot).copied()));
                }
                for &i in &rows[at..end] {
                    if let Err(p) = seen.binary_search(&imp.video[i]) {
                        seen.insert(p, imp.video[i]);
                    }
                }
                at = end;
            }
            (out, pages)
        })
        .collect();
    let mut choice = vec![None; n];
    let mut pages = 0;
    for (rows, p) in per_user {
        pages += p;
        for (i, c) in rows {
            choice[i] = c;
        }
    }
    let target = choice
        .iter()
        .zip(imp.video)
        .map(|(c, &v)| if *c == Some(v) { 1.0 } else { 0.0 })
        .collect();
    Ok(Replay {
        choice,
        target,
        pages,
    })
}

/// Per-decision weights ([`crate::Estimator::Pdis`]): for each row, the
/// product over its session's rows up to and including it (by time, then
/// position) of `target / propensity`. A session's weight stays 0 from the
/// first impression the candidate would not have shown.
pub fn session_weights(
    imp: &Impressions<'_>,
    propensity: &[f64],
    target: &[f64],
) -> Result<Vec<f64>> {
    let n = check(imp)?;
    same_len(
        n,
        &[("propensity", propensity.len()), ("target", target.len())],
    )?;
    if let Some(row) = propensity.iter().position(|&p| !(p > 0.0 && p <= 1.0)) {
        return Err(Error::OutOfRange {
            column: "propensity",
            row,
            value: propensity[row],
            allowed: "in (0, 1]",
        });
    }
    let mut weight = vec![0.0; n];
    for rows in &mut groups(imp.session) {
        rows.sort_by_key(|&i| (imp.ts_ms[i], imp.position[i]));
        let mut w = 1.0;
        for &i in rows.iter() {
            w *= target[i] / propensity[i];
            weight[i] = w;
        }
    }
    Ok(weight)
}

/// A reward model's predictions, owned (see [`crate::RewardModel`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FittedRewardModel {
    /// The predicted reward of each row's logged video.
    pub logged: Vec<f64>,
    /// The predicted reward of the candidate's choice at each row's slot (0
    /// where it shows nothing).
    pub target: Vec<f64>,
}

impl FittedRewardModel {
    /// Borrowed, for [`crate::Log::reward_model`].
    pub fn as_model(&self) -> crate::RewardModel<'_> {
        crate::RewardModel {
            logged: &self.logged,
            target: &self.target,
        }
    }
}

/// Prior weight, in impressions, of a surface's mean in a video's predicted
/// reward: a video seen a few times is predicted near its surface's mean.
const SHRINKAGE: f64 = 20.0;

/// One fold's reward model: each surface's mean plus each (video,
/// surface)'s mean residual, shrunk by [`SHRINKAGE`].
#[derive(Default)]
struct Fold {
    surface: HashMap<u8, (f64, f64)>,
    video: HashMap<(u64, u8), (f64, f64)>,
    overall: (f64, f64),
}

impl Fold {
    fn mean(&self, surface: u8) -> f64 {
        self.surface
            .get(&surface)
            .map_or(self.overall.0 / self.overall.1.max(1.0), |&(s, n)| s / n)
    }

    fn predict(&self, video: u64, surface: u8) -> f64 {
        let effect = self
            .video
            .get(&(video, surface))
            .map_or(0.0, |&(s, n)| s / (n + SHRINKAGE));
        self.mean(surface) + effect
    }
}

/// A reward model cross-fitted over users: each user's rows are predicted by
/// a model fitted on the other users' rows (two folds by a seeded hash of
/// the user), so its errors are not the rows' own. The model: each
/// surface's mean reward plus each video's shrunk mean residual there. (No
/// slot term: where the logging policy puts the same videos at the same
/// slots, a slot's mean would absorb the videos' own differences.)
pub fn cross_fit_rewards(
    imp: &Impressions<'_>,
    reward: &[f64],
    replay: &Replay,
    seed: u64,
) -> Result<FittedRewardModel> {
    let n = check(imp)?;
    same_len(
        n,
        &[("reward", reward.len()), ("choice", replay.choice.len())],
    )?;
    if let Some(row) = reward.iter().position(|r| !r.is_finite()) {
        return Err(Error::OutOfRange {
            column: "reward",
            row,
            value: reward[row],
            allowed: "a finite number",
        });
    }
    let fold_of = |u: u64| (splitmix64(seed ^ splitmix64(u)) & 1) as usize;
    let mut folds = [Fold::default(), Fold::default()];
    for (i, &r) in reward.iter().enumerate() {
        let f = &mut folds[fold_of(imp.user[i])];
        let e = f.surface.entry(imp.surface[i]).or_default();
        e.0 += r;
        e.1 += 1.0;
        f.overall.0 += r;
        f.overall.1 += 1.0;
    }
    for (i, &r) in reward.iter().enumerate() {
        let f = &mut folds[fold_of(imp.user[i])];
        let base = f.mean(imp.surface[i]);
        let e = f.video.entry((imp.video[i], imp.surface[i])).or_default();
        e.0 += r - base;
        e.1 += 1.0;
    }
    let mut logged = Vec::with_capacity(n);
    let mut target = Vec::with_capacity(n);
    for i in 0..n {
        // The other fold's model; with one fold empty (one user), the row's own.
        let mut k = 1 - fold_of(imp.user[i]);
        if folds[k].overall.1 == 0.0 {
            k = 1 - k;
        }
        let f = &folds[k];
        logged.push(f.predict(imp.video[i], imp.surface[i]));
        target.push(match replay.choice[i] {
            Some(v) => f.predict(v, imp.surface[i]),
            None => 0.0,
        });
    }
    Ok(FittedRewardModel { logged, target })
}
