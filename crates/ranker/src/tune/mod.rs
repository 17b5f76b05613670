//! Model selection on a validation split, judged as the result will be.
//!
//! **Protocol.** The caller carves a per-user holdout out of the training
//! data ([`crate::split_random`]); every candidate is trained on the rest and
//! judged by NDCG@k over the whole catalogue with each user's training items
//! excluded — the metric, cut-off and ranking the result is judged by. Each
//! trial keeps every validation user's NDCG, so two candidates are compared
//! on the same users: the standard error of a difference is that of the
//! paired per-user differences.
//!
//! **Budget.** The budget counts modeled seconds of work, not the wall
//! clock: each operation (an EASE basis, a judging of the users, an iALS
//! epoch, RP3beta's weights) is charged what it costs on a reference machine
//! (2 cores) from its sizes alone, so which settings run, and the choice, are
//! the same on a loaded machine, with any thread count and from run to run.
//! The wall clock only guards: at twice the budget plus 30 s no setting
//! starts, with a warning.
//!
//! **Candidates** (in this order, while the budget lasts; each is expected
//! to end, with the final fit, within the budget, and the first always
//! runs; popularity always runs, after the trained models, being one
//! judging of the users and no training):
//! - **EASE** (Steck 2019) per weighting of the interactions: one basis per
//!   weighting serves every λ ([`EaseBasis::factors`]), so λ is searched on
//!   odd half-decades from 10^0.5 to 10^4.5 and refined by half and quarter
//!   decades around the best. EASE takes at most 40% of the budget: a
//!   weighting starts only when its basis and coarse grid fit in it (then
//!   iALS judges the weightings EASE could not).
//! - **RP3beta** ([`crate::rp3`]): α × β × neighbours on a small grid, judged
//!   by sparse scoring (no embedding until it is chosen).
//! - **iALS** with the best weighting: a coarse (α, λ) grid with and without
//!   frequency-scaled λ (ν = 1, Rendle et al. 2022), refined in their (α0,
//!   λ') coordinates, then wider embeddings while they help; each run
//!   validated every 5 epochs, stopped when NDCG falls twice in a row.
//! - **BPR** when asked for.
//! - **Popularity**: every user the most interacted-with items. On sparse
//!   sets (most users and items with a handful of interactions, as in
//!   Book-Crossing) the personalised models are often no better; it is
//!   chosen only when it validates best outright, and it is a blend's
//!   partner when it is among the best two kinds.
//! - **A blend of the best two** of different kinds: their scores, each
//!   divided by its root-mean-square, mixed with a weight on {¼, ½, ¾},
//!   judged on the union of the two top-100 lists of every user (which holds
//!   the blend's top k but for rare ties at the edge).
//! - **Popularity compensation** of the chosen model: item bias `β · s ·
//!   ln(1 + n_j)` ([`TrainParams::pop_bias`]), β on a grid, no retraining.
//!
//! **Judged users.** Every trial is judged on the same validation users: all
//! of them, or a seeded sample of [`TuneOptions::judged_users`] when there
//! are more (ranking a large catalogue for every user of a large set would
//! cost more than training).
//!
//! **Choice, not noise.** The best mean NDCG is found; every candidate whose
//! paired difference to it is within one standard error is as good on this
//! evidence, and the simplest of those is chosen (EASE, then RP3beta, then
//! iALS by embedding size, BPR, then a blend; the popularity baseline last:
//! it is not a simpler model of users' tastes but no model of them); β the
//! same way, smallest |β|.
//!
//! **Weightings.** A weight column (plays, ratings) becomes training weights
//! `binary` (every interaction 1), `log` (`1 + ln(1 + w)`: counts
//! compressed, a rating of 0 still an interaction) or `linear` (`w` itself:
//! a weight of 0 is no interaction); data without weights is binary.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::als::TrainControl;
use crate::csr::Csr;
use crate::ease::EaseBasis;
use crate::error::Result;
use crate::eval::{item_counts, user_metrics, Metrics};
use crate::factors::Factors;
use crate::params::{Algo, TrainParams};
use crate::rp3::{binary, rp3beta_factors, Rp3Params};
use crate::split::Split;

mod cost;
mod scorer;
mod search;
#[cfg(test)]
mod tests;

use scorer::Scorer;
#[cfg(test)]
use search::judged_sample;
pub use search::tune;

/// Candidate list length kept for blends and compensation (and the list
/// whose scores scale a blend's parts: [`Factors::score_scale`]'s).
const POOL: usize = crate::factors::SCALE_LIST;

/// The stage of a popularity compensation the one-SE rule did not keep.
const CANDIDATE: &str = "debias-candidate";

/// A user's union of two lists: its items and both models' scores of them.
type Union = (Vec<u32>, Vec<f32>, Vec<f32>);

/// How interaction weights become training weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weighting {
    /// Every interaction weighs 1.
    Binary,
    /// `1 + ln(1 + w)`: counts compressed; a weight of 0 is an interaction.
    Log,
    /// `w` as given: a weight of 0 is no interaction.
    Linear,
}

impl Weighting {
    /// The training matrix of `m` (raw weights) under this weighting.
    pub fn apply(self, m: &Csr) -> Csr {
        let mut out = m.clone();
        match self {
            Weighting::Binary => out.map_values(|_| 1.0),
            Weighting::Log => out.map_values(|w| 1.0 + w.max(0.0).ln_1p()),
            Weighting::Linear => {}
        }
        out
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Weighting::Binary => "binary",
            Weighting::Log => "log",
            Weighting::Linear => "linear",
        }
    }
}

impl std::str::FromStr for Weighting {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Weighting> {
        match s {
            "binary" => Ok(Weighting::Binary),
            "log" => Ok(Weighting::Log),
            "linear" => Ok(Weighting::Linear),
            other => Err(crate::Error::InvalidParam {
                field: "weights",
                allowed: "binary, log or linear",
                got: other.chars().take(40).collect(),
            }),
        }
    }
}

/// What to search and for how long.
#[derive(Debug, Clone)]
pub struct TuneOptions {
    /// Algorithms to search; EASE also enables RP3beta (both item-item
    /// models on one basis) and a blend needs two kinds.
    pub algos: Vec<Algo>,
    /// Weightings tried (the first is EASE's and RP3beta's order; iALS and
    /// BPR use the best EASE found, or the first).
    pub weightings: Vec<Weighting>,
    /// Metric cut-off: the search maximises NDCG@k.
    pub k: usize,
    /// Modeled seconds of work (on the reference machine: 2 cores) after
    /// which no new setting starts; the wall clock stops them at twice it
    /// plus 30 s.
    pub budget: Duration,
    /// Seed of every trained model.
    pub seed: u64,
    /// EASE's and RP3beta's basis dimension (exact up to this many users or
    /// items).
    pub ease_dim: usize,
    /// Most validation users the search judges: above it, a seeded sample of
    /// this many (the same users for every setting). Judging ranks the whole
    /// catalogue for each of them, so on large sets it, not training, would
    /// take the budget.
    pub judged_users: usize,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions {
            algos: vec![Algo::Ease, Algo::Ials],
            weightings: vec![Weighting::Binary],
            k: 10,
            budget: Duration::from_secs(90),
            seed: 42,
            ease_dim: 2048,
            judged_users: 10_000,
        }
    }
}

/// A model the tuner can choose.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "model", rename_all = "lowercase")]
pub enum Candidate {
    /// Every user gets the most popular items (by training interactions):
    /// the baseline every personalised model must beat, and on sparse sets
    /// (most users with a handful of interactions) often hard to. Chosen
    /// only when it validates best outright.
    Popularity,
    /// EASE with this λ.
    Ease {
        /// λ.
        lambda: f64,
    },
    /// RP3beta.
    Rp3beta(Rp3Params),
    /// iALS or BPR (epochs: the best checkpoint's).
    Factorization(TrainParams),
    /// Two candidates' scores mixed: `weight · a / scale_a + (1 − weight) · b / scale_b`.
    Blend {
        /// The first model.
        a: Box<Candidate>,
        /// The second model.
        b: Box<Candidate>,
        /// The first one's weight.
        weight: f64,
    },
}

impl Candidate {
    /// A short name: popularity, ease, rp3beta, ials, bpr, blend.
    pub fn kind(&self) -> &'static str {
        match self {
            Candidate::Popularity => "popularity",
            Candidate::Ease { .. } => "ease",
            Candidate::Rp3beta(_) => "rp3beta",
            Candidate::Factorization(p) => match p.algo {
                Algo::Bpr => "bpr",
                Algo::Ease => "ease",
                Algo::Ials => "ials",
            },
            Candidate::Blend { .. } => "blend",
        }
    }

    /// How complex it is (the one-SE rule prefers the lowest).
    fn complexity(&self) -> f64 {
        match self {
            // Not simpler in the one-SE rule's sense (less prone to fit
            // noise among models of users' tastes): the non-personal
            // baseline, kept only when it is the best outright.
            Candidate::Popularity => 20.0,
            Candidate::Ease { .. } => 1.0,
            Candidate::Rp3beta(_) => 2.0,
            Candidate::Factorization(p) => {
                3.0 + p.factors as f64 / 1024.0 + (p.algo == Algo::Bpr) as u8 as f64
            }
            Candidate::Blend { .. } => 10.0,
        }
    }

    /// The parameters recorded in a model file for it (fold-in reads
    /// `alpha`, `reg`, `reg_exponent`).
    pub fn params(&self, seed: u64) -> TrainParams {
        match self {
            // Zero item vectors: a folded-in user's vector is zero too, and
            // every user is scored by the items' popularity alone.
            Candidate::Popularity => TrainParams {
                algo: Algo::Ials,
                factors: 1,
                epochs: 1,
                seed,
                ..TrainParams::default()
            },
            Candidate::Ease { lambda } => TrainParams {
                algo: Algo::Ease,
                reg: *lambda as f32,
                epochs: 1,
                seed,
                ..TrainParams::default()
            },
            Candidate::Rp3beta(_) => TrainParams {
                algo: Algo::Ease,
                seed,
                ..TrainParams::default()
            },
            Candidate::Factorization(p) => TrainParams { seed, ..p.clone() },
            Candidate::Blend { a, .. } => a.params(seed),
        }
    }
}

/// One setting tried and its validation metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// The search stage: "coarse", "refine", "blend", "debias" (the
    /// popularity compensation kept) or "debias-candidate" (one it did not keep).
    pub stage: &'static str,
    /// The model.
    pub candidate: Candidate,
    /// The weighting it trained on.
    pub weighting: Weighting,
    /// Popularity compensation β.
    pub pop_bias: f32,
    /// NDCG@k on the validation part.
    pub ndcg: f64,
    /// Its standard error over validation users.
    pub ndcg_se: f64,
    /// Recall@k.
    pub recall: f64,
    /// Hit rate@k.
    pub hit_rate: f64,
    /// MAP@k.
    pub map: f64,
    /// Wall seconds the setting took (training and validation).
    pub seconds: f64,
    /// Modeled seconds of its work on the reference machine: what the
    /// budget counts (so which settings run does not depend on the
    /// machine's load or thread count).
    pub work: f64,
    /// Each validation user's NDCG, in user order (paired comparisons).
    #[serde(skip)]
    users: Vec<f64>,
}

impl Trial {
    /// How many validation users judged it (all of them, or the seeded
    /// sample of [`TuneOptions::judged_users`]).
    pub fn judged_users(&self) -> usize {
        self.users.len()
    }

    /// The setting's name for a report: e.g. `ease λ=300 (log)`.
    pub fn describe(&self) -> String {
        fn one(c: &Candidate) -> String {
            match c {
                Candidate::Popularity => "popularity".to_string(),
                Candidate::Ease { lambda } => format!("ease λ={lambda:.3}"),
                Candidate::Rp3beta(p) => format!(
                    "rp3beta α={} β={} neighbours={}",
                    p.alpha, p.beta, p.neighbours
                ),
                Candidate::Factorization(p) => format!(
                    "{} factors={} reg={} alpha={} ν={} lr={} epochs={}",
                    p.algo, p.factors, p.reg, p.alpha, p.reg_exponent, p.learning_rate, p.epochs
                ),
                Candidate::Blend { a, b, weight } => {
                    format!("{weight}·[{}] + {}·[{}]", one(a), 1.0 - weight, one(b))
                }
            }
        }
        let mut s = format!("{} ({})", one(&self.candidate), self.weighting.as_str());
        if self.pop_bias != 0.0 {
            s.push_str(&format!(" pop_bias={}", self.pop_bias));
        }
        s
    }
}

/// Per-user (recall, precision, NDCG, hit, AP) and the mean metrics.
fn summarise(users: &[(f64, f64, f64, f64, f64)], k: usize) -> (Metrics, Vec<f64>) {
    let n = users.len().max(1) as f64;
    let col = |f: fn(&(f64, f64, f64, f64, f64)) -> f64| users.iter().map(f).sum::<f64>() / n;
    (
        Metrics {
            k,
            users: users.len(),
            recall: col(|m| m.0),
            precision: col(|m| m.1),
            ndcg: col(|m| m.2),
            hit_rate: col(|m| m.3),
            map: col(|m| m.4),
            ..Metrics::default()
        },
        users.iter().map(|m| m.2).collect(),
    )
}

/// The standard error of the mean of `v`.
fn se(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let m = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0) / n).sqrt()
}

/// Whether `a` is within one paired standard error below `best` (with a
/// rounding tolerance: a difference in one user's NDCG alone has a mean equal
/// to its standard error).
fn within_one_se(best: &[f64], a: &[f64]) -> bool {
    let d: Vec<f64> = best.iter().zip(a).map(|(x, y)| x - y).collect();
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n.max(1.0);
    mean <= se(&d) * (1.0 + 1e-9) + 1e-12
}

/// Metrics of ranked lists against the validation part.
fn judge(split: &Split, lists: &[Option<Vec<(u32, f32)>>], k: usize) -> (Metrics, Vec<f64>) {
    let test = &split.test;
    let per: Vec<(f64, f64, f64, f64, f64)> = lists
        .iter()
        .enumerate()
        .filter_map(|(u, l)| {
            l.as_ref().map(|l| {
                let items: Vec<u32> = l.iter().take(k).map(|e| e.0).collect();
                user_metrics(&items, test.row(u).0, k)
            })
        })
        .collect();
    summarise(&per, k)
}

/// The trial chosen: each kind's best competing trial (all but the
/// popularity compensations not kept), then, of those within one paired
/// standard error of the best mean NDCG, the simplest kind's. Comparing
/// kinds by their best members keeps a noisy, poor member of a simple kind
/// from winning only because its differences are spread over many users.
pub fn choose(trials: &[Trial]) -> Option<&Trial> {
    let pool: Vec<&Trial> = trials.iter().filter(|t| t.stage != CANDIDATE).collect();
    let best = pool.iter().max_by(|a, b| a.ndcg.total_cmp(&b.ndcg))?;
    let mut heads: Vec<&Trial> = Vec::new();
    for t in &pool {
        match heads
            .iter_mut()
            .find(|h| h.candidate.kind() == t.candidate.kind())
        {
            Some(h) if h.ndcg >= t.ndcg => {}
            Some(h) => *h = t,
            None => heads.push(t),
        }
    }
    heads
        .into_iter()
        .filter(|t| within_one_se(&best.users, &t.users))
        .min_by(|a, b| {
            let key = |t: &Trial| (t.candidate.complexity(), t.pop_bias != 0.0);
            key(a)
                .partial_cmp(&key(b))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(b.ndcg.total_cmp(&a.ndcg))
        })
}

/// Trains the model of `trial` on `weights` (raw weights; its weighting is
/// applied), with its popularity compensation.
pub fn fit_trial(trial: &Trial, weights: &Csr, opts: &TuneOptions) -> Result<Factors> {
    let x = trial.weighting.apply(weights);
    let mut f = fit_candidate(&trial.candidate, &x, weights, opts)?;
    if trial.pop_bias != 0.0 {
        f.add_popularity_bias(&x, trial.pop_bias);
    }
    Ok(f)
}

fn fit_candidate(c: &Candidate, x: &Csr, raw: &Csr, opts: &TuneOptions) -> Result<Factors> {
    match c {
        Candidate::Popularity => Ok(popularity(x)),
        Candidate::Ease { lambda } => crate::ease::train_ease(x, *lambda, opts.ease_dim, opts.seed),
        Candidate::Rp3beta(p) => {
            let b = binary(raw);
            let basis = EaseBasis::new(&b, opts.ease_dim, opts.seed)?;
            rp3beta_factors(&b, &basis, p)
        }
        Candidate::Factorization(p) => {
            let params = TrainParams {
                seed: opts.seed,
                ..p.clone()
            }
            .check()?;
            crate::train(x, &params, &mut TrainControl::default())
        }
        Candidate::Blend { a, b, weight } => {
            let fa = fit_candidate(a, x, raw, opts)?;
            let fb = fit_candidate(b, x, raw, opts)?;
            // Each part divided by the scale the search divided it by.
            let (sa, sb) = (fa.score_scale(x), fb.score_scale(x));
            Ok(concat(&fa, &fb, *weight / sa, (1.0 - weight) / sb))
        }
    }
}

/// The popularity model of `x` as factors: one zero dimension, each item's
/// bias `ln(1 + n_j)` with `n_j` its training interactions.
fn popularity(x: &Csr) -> Factors {
    Factors {
        dim: 1,
        users: vec![0.0; x.n_rows()],
        items: vec![0.0; x.n_cols()],
        item_bias: item_counts(x)
            .iter()
            .map(|&n| (n as f64).ln_1p() as f32)
            .collect(),
    }
}

/// `wa · a + wb · b` as one factor model: users `[wa·u_a, wb·u_b]`, items
/// `[v_a, v_b]`, biases `wa·b_a + wb·b_b`.
fn concat(a: &Factors, b: &Factors, wa: f64, wb: f64) -> Factors {
    let (da, db) = (a.dim, b.dim);
    let n_users = a.n_users();
    let n_items = a.n_items();
    let mut users = Vec::with_capacity(n_users * (da + db));
    for u in 0..n_users {
        users.extend(a.user(u).iter().map(|&v| (v as f64 * wa) as f32));
        users.extend(b.user(u).iter().map(|&v| (v as f64 * wb) as f32));
    }
    let mut items = Vec::with_capacity(n_items * (da + db));
    for i in 0..n_items {
        items.extend_from_slice(a.item(i));
        items.extend_from_slice(b.item(i));
    }
    let item_bias = a
        .item_bias
        .iter()
        .zip(&b.item_bias)
        .map(|(&x, &y)| (x as f64 * wa + y as f64 * wb) as f32)
        .collect();
    Factors {
        dim: da + db,
        users,
        items,
        item_bias,
    }
}
