//! The policies of an off-policy study: how its arms answer, and the
//! logging policy that mixes them.
//!
//! **How a candidate answers.** An experiment's arms walk one list per
//! user-day, and a replayed candidate can too ([`Replaying::Own`]): it walks
//! its own list page after page whichever member's page the log showed, and
//! each day's list leaves out what it offered before, so its answers are
//! those it would give serving the user alone. A service instead answers
//! every request afresh, its best videos the user has not seen
//! ([`Replaying::Log`], what `reelkit ope` replays): in a log mostly of other
//! rankers' pages that is its very best page every time, which its own play
//! would have used up; the study's truth then plays every arm answering each
//! page that way ([`EachPage`]) so that truth and replay are one policy.
//!
//! **The logging policy.** [`Mixture`] asks its base ranker and every
//! candidate for the page (each its own realised answer, random draws
//! included), then shows the base's page with probability `1 − ε` and a
//! candidate's, drawn uniformly, with probability `ε / K` each (the coin
//! thrown per page, or once per session, user-day or user: [`LoggingUnit`]).
//! Given the
//! members' pages, the probability that slot `j` shows video `v` is exactly
//!
//! ```text
//! π₀(v, j) = (1 − ε)·[B_j = v] + (ε / K)·Σ_c [C_cj = v]
//! ```
//!
//! and a candidate's probability of the same is `[C_cj = v]`: its realised
//! answer to the same request, drawn independently of the mixture's coin, so
//! the importance weight `[C_cj = v] / π₀(v, j)` is unbiased for what the
//! candidate earns at that slot whatever its own randomness (fresh-upload
//! slots, or `random`'s draws). Every weight lies in {0} ∪ [1, K / ε]. A
//! page is shown whole, so no video appears twice on it.

use std::sync::Mutex;

use reelkit_sim::{
    policies::{DayContext, FeedRequest, Scratch, SeenSet, Visit},
    random::Rng,
    Policy,
};

use crate::run::ArmPolicy;

/// What history a candidate answers the log's requests from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Replaying {
    /// Its own: it walks its list page after page as it would serving the
    /// user alone, and each new day's list leaves out what it would have
    /// shown before: of each page it offered and the log did not show, as
    /// many videos as the user watched of the page shown.
    Own,
    /// The log's: every page is answered afresh, its best videos the log has
    /// not shown (what `reelkit ope` does with a served model), and the truth
    /// plays each arm answering every page that way too.
    Log,
}

impl std::str::FromStr for Replaying {
    type Err = String;
    fn from_str(s: &str) -> Result<Replaying, String> {
        match s {
            "own" => Ok(Replaying::Own),
            "log" => Ok(Replaying::Log),
            _ => Err(format!("unknown replay `{s}`: own or log")),
        }
    }
}

/// What the logging policy's coin chooses a member for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoggingUnit {
    /// Each page (the estimators weigh slots, and PDIS pages within a session).
    Page,
    /// Each session: all its pages from one member.
    Session,
    /// Each user-day.
    Day,
    /// Each user, for the whole log: an A/B test with the candidates' shares
    /// small, the unit every sequential effect stays inside.
    User,
}

impl LoggingUnit {
    /// Every unit, finest first.
    pub const ALL: [LoggingUnit; 4] = [
        LoggingUnit::Page,
        LoggingUnit::Session,
        LoggingUnit::Day,
        LoggingUnit::User,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            LoggingUnit::Page => "page",
            LoggingUnit::Session => "session",
            LoggingUnit::Day => "day",
            LoggingUnit::User => "user",
        }
    }
}

impl std::str::FromStr for LoggingUnit {
    type Err = String;
    fn from_str(s: &str) -> Result<LoggingUnit, String> {
        LoggingUnit::ALL
            .into_iter()
            .find(|u| u.as_str() == s)
            .ok_or_else(|| format!("unknown logging unit `{s}`: page, session, day or user"))
    }
}

/// Fills `out` from `policy` as an answer to this request alone: its best
/// unseen videos from the top of its list, wherever earlier pages stopped.
/// A short answer leaves the list's cursor where the policy put it, so a
/// policy that rebuilds a used-up list still does.
fn answer(
    policy: &dyn Policy,
    req: &FeedRequest<'_>,
    scratch: &mut Scratch,
    rng: &mut Rng,
    replay: Replaying,
) -> Vec<u32> {
    let mut out = Vec::with_capacity(req.n);
    policy.fill(req, scratch, rng, &mut out);
    if replay == Replaying::Log && out.len() >= req.n {
        scratch.cursor[req.surface.index()] = 0;
    }
    out
}

/// An arm as a study plays it alone (see the module's text).
pub(super) struct EachPage(pub ArmPolicy, pub Replaying);

impl Policy for EachPage {
    fn name(&self) -> &str {
        self.0.as_policy().name()
    }

    fn begin_day(&mut self, ctx: &DayContext<'_>) -> reelkit_sim::Result<()> {
        self.0.policy().begin_day(ctx)
    }

    fn fill(&self, req: &FeedRequest<'_>, state: &mut Scratch, rng: &mut Rng, out: &mut Vec<u32>) {
        out.extend(answer(self.0.as_policy(), req, state, rng, self.1));
    }
}

/// One page the logging policy showed: where it starts, each slot's
/// propensity and every candidate's answer.
#[derive(Debug, Clone)]
pub(super) struct Page {
    /// The session (`session_id` of its impressions).
    pub session: u64,
    /// The position of its first slot in the session.
    pub position: u32,
    /// `π₀` of the video shown at each slot.
    pub propensity: Vec<f64>,
    /// Whether each candidate (in order) answered each slot with the video
    /// shown there, and the video it answered (`u32::MAX`: none).
    pub answers: Vec<Vec<u32>>,
    /// The videos shown.
    pub shown: Vec<u32>,
    /// The probability of the whole page shown: `(1 − ε)·[B = page] + (ε /
    /// K)·Σ_c [C_c = page]`.
    pub page_propensity: f64,
    /// The member whose page was shown (0: the base).
    pub chosen: usize,
}

/// What the members would have shown a user, beside what the log showed.
#[derive(Default)]
struct History {
    /// `offered[m]`: what member `m` would have shown on pages of other
    /// members'.
    offered: Vec<SeenSet>,
    /// The last page: what was shown, every member's answer and whose was
    /// shown, until the user's next request says how much of it they saw.
    pending: Option<(Vec<u32>, Vec<Vec<u32>>, usize)>,
}

impl History {
    /// Settles the last page: the user saw its first slots up to the first
    /// not in `seen` (a page is watched in order); every other member is
    /// taken to have shown as many of its own.
    fn settle(&mut self, seen: &SeenSet) {
        let Some((shown, answers, chosen)) = self.pending.take() else {
            return;
        };
        let watched = shown.iter().take_while(|v| seen.contains(v)).count();
        if self.offered.len() < answers.len() {
            self.offered.resize_with(answers.len(), SeenSet::default);
        }
        for (m, a) in answers.iter().enumerate().filter(|&(m, _)| m != chosen) {
            self.offered[m].extend(a.iter().take(watched).copied());
        }
    }
}

/// The logging policy (see the module's text): member 0 is the base ranker,
/// the others the candidates.
pub(super) struct Mixture {
    name: String,
    members: Vec<EachPage>,
    epsilon: f64,
    unit: LoggingUnit,
    salt: u64,
    replay: Replaying,
    /// Each user's history with each member (own history only).
    history: Vec<Mutex<History>>,
    pages: Mutex<Vec<Page>>,
}

impl Mixture {
    /// `base` shown with probability `1 − epsilon`, each of `candidates`
    /// with `epsilon / K`, the coin thrown per `unit` (seeded by `salt` and
    /// the unit's keys, except per page: the policy's random stream).
    pub fn new(
        name: &str,
        base: ArmPolicy,
        candidates: Vec<ArmPolicy>,
        epsilon: f64,
        unit: LoggingUnit,
        salt: u64,
        replay: Replaying,
    ) -> Mixture {
        let members: Vec<EachPage> = std::iter::once(base)
            .chain(candidates)
            .map(|p| EachPage(p, replay))
            .collect();
        Mixture {
            name: name.to_string(),
            members,
            epsilon,
            unit,
            salt,
            replay,
            history: Vec::new(),
            pages: Mutex::new(Vec::new()),
        }
    }

    /// The member a coin in [0, 1) chooses: the base below `1 − ε`, else
    /// one of the `K` candidates, each on `ε / K` of the interval.
    fn member(&self, coin: f64) -> usize {
        let (k, eps) = (self.members.len() - 1, self.epsilon);
        if k == 0 || coin < 1.0 - eps {
            0
        } else {
            1 + (((coin - (1.0 - eps)) / eps * k as f64) as usize).min(k - 1)
        }
    }

    /// The member that serves user `u` throughout, with a coin per user.
    pub fn member_of_user(&self, u: usize) -> Option<usize> {
        (self.unit == LoggingUnit::User)
            .then(|| self.member(Rng::stream(self.salt, &[3, u as u64]).f64()))
    }

    /// The members, base first, to refresh.
    pub fn members_mut(&mut self) -> impl Iterator<Item = &mut ArmPolicy> {
        self.members.iter_mut().map(|m| &mut m.0)
    }

    /// The pages shown so far, taken.
    pub fn take_pages(&self) -> Vec<Page> {
        std::mem::take(&mut *self.pages.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Policy for Mixture {
    fn name(&self) -> &str {
        &self.name
    }

    fn begin_day(&mut self, ctx: &DayContext<'_>) -> reelkit_sim::Result<()> {
        if self.replay == Replaying::Log {
            for m in &mut self.members {
                m.begin_day(ctx)?;
            }
            return Ok(());
        }
        let n_users = ctx.world.n_users();
        if self.history.is_empty() {
            self.history = (0..n_users)
                .map(|_| Mutex::new(History::default()))
                .collect();
        }
        for v in ctx.visits {
            let h = self.history[v.user]
                .get_mut()
                .unwrap_or_else(|p| p.into_inner());
            h.settle(v.seen);
        }
        for (k, m) in self.members.iter_mut().enumerate() {
            // The member's history: what the user saw and what it offered.
            let seen: Vec<SeenSet> = ctx
                .visits
                .iter()
                .map(|v| {
                    let h = self.history[v.user]
                        .get_mut()
                        .unwrap_or_else(|p| p.into_inner());
                    match h.offered.get(k) {
                        Some(own) => v.seen.union(own).copied().collect(),
                        None => v.seen.clone(),
                    }
                })
                .collect();
            let visits: Vec<Visit<'_>> = ctx
                .visits
                .iter()
                .zip(&seen)
                .map(|(v, seen)| Visit { seen, ..*v })
                .collect();
            m.begin_day(&DayContext {
                visits: &visits,
                ..*ctx
            })?;
        }
        Ok(())
    }

    fn fill(&self, req: &FeedRequest<'_>, state: &mut Scratch, rng: &mut Rng, out: &mut Vec<u32>) {
        let n = self.members.len();
        if state.sub.len() < n {
            state.sub.resize_with(n, Scratch::default);
        }
        let answers: Vec<Vec<u32>> = self
            .members
            .iter()
            .zip(state.sub.iter_mut())
            .map(|(m, scratch)| answer(m.0.as_policy(), req, scratch, rng, self.replay))
            .collect();
        let k = n - 1;
        let eps = self.epsilon;
        let coin = match self.unit {
            LoggingUnit::Page => rng.f64(),
            LoggingUnit::Session => Rng::stream(self.salt, &[1, req.session_id]).f64(),
            LoggingUnit::Day => Rng::stream(self.salt, &[2, req.user as u64, req.day as u64]).f64(),
            LoggingUnit::User => Rng::stream(self.salt, &[3, req.user as u64]).f64(),
        };
        let chosen = self.member(coin);
        let shown = answers[chosen].clone();
        let at = |a: &[u32], j: usize, v: u32| a.get(j) == Some(&v);
        let propensity: Vec<f64> = shown
            .iter()
            .enumerate()
            .map(|(j, &v)| {
                let base = if at(&answers[0], j, v) {
                    1.0 - eps
                } else {
                    0.0
                };
                let others = answers[1..].iter().filter(|a| at(a, j, v)).count();
                base + eps / k.max(1) as f64 * others as f64
            })
            .collect();
        let whole = |a: &[u32]| a == shown.as_slice();
        let page_propensity = if whole(&answers[0]) { 1.0 - eps } else { 0.0 }
            + eps / k.max(1) as f64 * answers[1..].iter().filter(|a| whole(a)).count() as f64;
        state.propensity.clear();
        state.propensity.extend_from_slice(&propensity);
        out.extend_from_slice(&shown);
        if let Some(h) = self.history.get(req.user) {
            let mut h = h.lock().unwrap_or_else(|p| p.into_inner());
            h.settle(req.seen);
            h.pending = Some((shown.clone(), answers.clone(), chosen));
        }
        let page = Page {
            session: req.session_id,
            position: req.session_position,
            propensity,
            answers: answers[1..]
                .iter()
                .map(|a| {
                    (0..shown.len())
                        .map(|j| a.get(j).copied().unwrap_or(u32::MAX))
                        .collect()
                })
                .collect(),
            shown,
            page_propensity,
            chosen,
        };
        self.pages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(page);
    }
}
