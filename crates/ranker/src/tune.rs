//! Hyper-parameter search on a validation split: a coarse log-scale pass,
//! then local refinement around the best point, within a time budget.
//!
//! - **EASE**: one basis of the training part serves every λ
//!   ([`EaseBasis::factors`] costs `O((users + items) r)`), so λ is searched
//!   on a half-decade grid from 1 to 10⁴ (from the middle out) and then
//!   refined around the best by quarter and eighth decades.
//! - **iALS**: a coarse (α, λ) grid at 64 factors, with and without
//!   frequency-scaled λ (ν = 1), then refinement in Rendle et al. (2022)'s
//!   coordinates, the weight α0 of unobserved pairs and λ' (see
//!   `Search::ials`): the four neighbours of the best, steps halving when
//!   none improves,
//!   then 128, 256 and 512 factors while they help. Each run is validated
//!   every 5 epochs and stopped when NDCG falls twice in a row (the best
//!   checkpoint is kept).
//! - **BPR**: a small grid of dimension, learning rate and λ.
//! - **Popularity compensation** (last, for each algorithm's best model):
//!   the item bias `β · s · ln(1 + n_j)` of [`TrainParams::pop_bias`] on a
//!   grid of β from −0.6 to 0.1, refined by ±0.05, no retraining; the β
//!   kept is the smallest |β| within one standard error (paired, per user)
//!   of the best.
//!
//! Settings are tried in that order while each is expected to end within
//! the budget with room left for the final fit (from the times of earlier
//! runs); the first always runs, so a tiny budget still returns a model.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::als::{EpochReport, TrainControl};
use crate::ease::EaseBasis;
use crate::error::Result;
use crate::eval::{evaluate_embeddings, item_counts, ranked_lists, user_metrics, Metrics};
use crate::factors::Factors;
use crate::params::{Algo, TrainParams};
use crate::split::Split;
use crate::topk::ItemTable;

/// What to search and for how long.
#[derive(Debug, Clone)]
pub struct TuneOptions {
    /// Algorithms to search (EASE is tried first: it is cheap).
    pub algos: Vec<Algo>,
    /// Metric cut-off: the search maximises NDCG@k.
    pub k: usize,
    /// Wall time after which no new setting starts.
    pub budget: Duration,
    /// Seed of every trained model.
    pub seed: u64,
    /// EASE's basis dimension (exact up to this many users or items).
    pub ease_dim: usize,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions {
            algos: vec![Algo::Ease, Algo::Ials],
            k: 10,
            budget: Duration::from_secs(60),
            seed: 42,
            ease_dim: crate::ease::EASE_DIM,
        }
    }
}

/// One setting tried and its validation metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// The search stage: "coarse", "refine", "debias" (the popularity
    /// compensation kept) or "debias-candidate" (one it did not keep).
    pub stage: &'static str,
    /// The parameters (epochs = the best checkpoint's).
    #[serde(flatten)]
    pub params: TrainParams,
    /// NDCG@k on the validation part.
    pub ndcg: f64,
    /// Recall@k.
    pub recall: f64,
    /// Hit rate@k.
    pub hit_rate: f64,
    /// MAP@k.
    pub map: f64,
    /// Seconds the setting took (training and validation).
    pub seconds: f64,
}

/// Metrics of `f` on a split's validation part (full catalogue, training
/// items excluded).
pub fn validate(f: &Factors, split: &Split, k: usize) -> Metrics {
    let table = ItemTable::new(f.dim, &f.items, Some(&f.item_bias));
    let counts = item_counts(&split.train.matrix);
    evaluate_embeddings(
        &table,
        &f.users,
        &split.train.matrix,
        &split.test,
        k,
        &counts,
    )
}

/// Each validation user's (recall, precision, NDCG, hit, AP) at k of `f`
/// (training items excluded), in user order.
fn per_user(f: &Factors, split: &Split, k: usize) -> Vec<UserScores> {
    let table = ItemTable::new(f.dim, &f.items, Some(&f.item_bias));
    let test = &split.test;
    ranked_lists(&table, &f.users, &split.train.matrix, test, k)
        .iter()
        .enumerate()
        .filter_map(|(u, r)| r.as_ref().map(|r| user_metrics(r, test.row(u).0, k)))
        .collect()
}

/// One user's (recall, precision, NDCG, hit, AP).
type UserScores = (f64, f64, f64, f64, f64);

/// Searches `opts.algos` on `split`; returns every trial in the order tried
/// (the best is the one with the highest `ndcg`).
pub fn tune(split: &Split, opts: &TuneOptions) -> Result<Vec<Trial>> {
    let mut s = Search {
        split,
        opts,
        start: Instant::now(),
        trials: Vec::new(),
        kept: Vec::new(),
    };
    for algo in [Algo::Ease, Algo::Ials, Algo::Bpr] {
        if opts.algos.contains(&algo) {
            match algo {
                Algo::Ease => s.ease()?,
                Algo::Ials => s.ials()?,
                Algo::Bpr => s.bpr()?,
            }
        }
    }
    s.debias();
    Ok(s.trials)
}

/// The best trial: the highest validation NDCG among those that compete
/// (every stage but "debias-candidate", the popularity compensations the
/// one-SE rule did not choose).
pub fn best(trials: &[Trial]) -> Option<&Trial> {
    best_in(trials.iter())
}

/// The competing trial with the highest NDCG among `trials`.
fn best_in<'a>(trials: impl Iterator<Item = &'a Trial>) -> Option<&'a Trial> {
    trials
        .filter(|t| t.stage != CANDIDATE)
        .max_by(|a, b| a.ndcg.total_cmp(&b.ndcg))
}

/// The stage of a popularity compensation the one-SE rule did not keep.
const CANDIDATE: &str = "debias-candidate";

/// The share of the budget kept for the popularity-compensation stage
/// (a few dozen validations, no training).
const DEBIAS_SHARE: f64 = 0.1;

struct Search<'a> {
    split: &'a Split,
    opts: &'a TuneOptions,
    start: Instant,
    trials: Vec<Trial>,
    /// The best factors of each algorithm so far, with their NDCG.
    kept: Vec<(Algo, f64, Factors)>,
}

impl Search<'_> {
    fn spent(&self) -> bool {
        !self.trials.is_empty() && self.start.elapsed() >= self.opts.budget
    }

    /// Whether a run of `p` is expected to end within the budget, leaving
    /// room for the popularity compensation ([`DEBIAS_SHARE`] of the budget)
    /// and the final fit on all the data (about the best run's time again, a
    /// quarter more data). A run is expected to take as long as
    /// the slowest earlier one of its algorithm per factor, times its
    /// factors squared (CG's cost grows with the dimension squared).
    fn fits(&self, p: &TrainParams) -> bool {
        let per = |t: &Trial| t.seconds / (t.params.factors as f64).powi(2);
        let Some(unit) = self
            .trials
            .iter()
            .filter(|t| t.params.algo == p.algo)
            .map(per)
            .max_by(f64::total_cmp)
        else {
            return true;
        };
        let expected = unit * (p.factors as f64).powi(2);
        // The final fit redoes the best setting (for EASE, with its basis:
        // the first trial's time).
        let final_fit = best(&self.trials).map_or(0.0, |b| {
            self.trials
                .iter()
                .filter(|t| t.params.algo == b.params.algo && t.params.factors == b.params.factors)
                .map(|t| t.seconds)
                .fold(b.seconds, f64::max)
        });
        self.ends_in_time(expected, final_fit)
    }

    /// Whether work expected to take `expected` seconds, then the final fit
    /// (`final_fit` seconds on the validation split's data, a quarter more
    /// on all of it) and the popularity stage ([`DEBIAS_SHARE`] of the
    /// budget) all end within the budget; always true before any trial.
    fn ends_in_time(&self, expected: f64, final_fit: f64) -> bool {
        let budget = self.opts.budget.as_secs_f64();
        self.trials.is_empty()
            || self.start.elapsed().as_secs_f64()
                + expected
                + 1.3 * final_fit
                + DEBIAS_SHARE * budget
                <= budget
    }

    fn base(&self, algo: Algo) -> TrainParams {
        TrainParams {
            algo,
            seed: self.opts.seed,
            ..TrainParams::default()
        }
    }

    fn record(&mut self, stage: &'static str, params: TrainParams, m: Metrics, seconds: f64) {
        self.trials.push(Trial {
            stage,
            params,
            ndcg: m.ndcg,
            recall: m.recall,
            hit_rate: m.hit_rate,
            map: m.map,
            seconds,
        });
    }

    /// Keeps `f` if it is the best model of `algo` so far.
    fn keep(&mut self, algo: Algo, ndcg: f64, f: Factors) {
        match self.kept.iter_mut().find(|k| k.0 == algo) {
            Some(k) if k.1 >= ndcg => {}
            Some(k) => *k = (algo, ndcg, f),
            None => self.kept.push((algo, ndcg, f)),
        }
    }

    /// Popularity compensation of each algorithm's best model: the item
    /// bias `β · s · ln(1 + n_j)` on a grid of β, then ±0.05 around the
    /// best (no retraining: the bias is added to the kept factors). Every β
    /// is recorded; the one kept (recorded last, with the NDCG of its own
    /// row) is the smallest |β| whose per-user NDCG is within one standard
    /// error of the paired difference from the best β's (the one-SE rule:
    /// on a few hundred validation users the curve is flat near its top and
    /// the arg-max is mostly noise).
    fn debias(&mut self) {
        let counts = item_counts(&self.split.train.matrix);
        for (algo, _, f) in std::mem::take(&mut self.kept) {
            let Some(best) = self.best_of(algo) else {
                continue;
            };
            let t = Instant::now();
            let eval = |beta: f32| {
                let mut g = f.clone();
                g.add_popularity_bias(&counts, beta);
                per_user(&g, self.split, self.opts.k)
            };
            let mut tried: Vec<(f32, Vec<UserScores>)> = vec![(0.0, eval(0.0))];
            for beta in [-0.6, -0.4, -0.3, -0.2, -0.1, 0.1] {
                tried.push((beta, eval(beta)));
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
            let ndcgs = |v: &[UserScores]| v.iter().map(|m| m.2).collect::<Vec<f64>>();
            let top = |tried: &[(f32, Vec<UserScores>)]| {
                tried
                    .iter()
                    .max_by(|a, b| mean(&ndcgs(&a.1)).total_cmp(&mean(&ndcgs(&b.1))))
                    .map(|t| t.0)
                    .unwrap_or(0.0)
            };
            let b = top(&tried);
            if b != 0.0 {
                for beta in [b - 0.05, b + 0.05] {
                    if beta.abs() > 1e-6 && !tried.iter().any(|t| (t.0 - beta).abs() < 1e-6) {
                        tried.push((beta, eval(beta)));
                    }
                }
            }
            let b = top(&tried);
            let best_users = tried
                .iter()
                .find(|t| t.0 == b)
                .map(|t| ndcgs(&t.1))
                .unwrap_or_default();
            let within = |v: &[UserScores]| {
                let d: Vec<f64> = best_users.iter().zip(v).map(|(a, b)| a - b.2).collect();
                let n = d.len().max(2) as f64;
                let m = mean(&d);
                let var = d.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
                m <= (var / n).sqrt()
            };
            let chosen = tried
                .iter()
                .filter(|t| within(&t.1))
                .min_by(|a, b| a.0.abs().total_cmp(&b.0.abs()))
                .map(|t| t.0)
                .unwrap_or(b);
            let secs = t.elapsed().as_secs_f64() / tried.len() as f64;
            tried.sort_by_key(|t| t.0 == chosen);
            for (beta, users) in tried {
                if beta == 0.0 && chosen != 0.0 {
                    continue;
                }
                let col = |pick: fn(&UserScores) -> f64| {
                    mean(&users.iter().map(pick).collect::<Vec<f64>>())
                };
                let m = Metrics {
                    k: self.opts.k,
                    users: users.len(),
                    recall: col(|m| m.0),
                    precision: col(|m| m.1),
                    ndcg: col(|m| m.2),
                    hit_rate: col(|m| m.3),
                    map: col(|m| m.4),
                    ..Metrics::default()
                };
                let params = TrainParams {
                    pop_bias: beta,
                    ..best.params.clone()
                };
                // The others are reported, but only the chosen β competes.
                let stage = if beta == chosen { "debias" } else { CANDIDATE };
                self.record(stage, params, m, secs);
            }
        }
    }

    fn best_of(&self, algo: Algo) -> Option<Trial> {
        best_in(self.trials.iter().filter(|t| t.params.algo == algo)).cloned()
    }

    fn tried(&self, p: &TrainParams) -> bool {
        self.trials.iter().any(|t| {
            let q = &t.params;
            q.algo == p.algo
                && q.factors == p.factors
                && (q.reg / p.reg - 1.0).abs() < 1e-3
                && (q.alpha - p.alpha).abs() <= 1e-3 * p.alpha.max(1e-3)
                && q.reg_exponent == p.reg_exponent
                && q.learning_rate == p.learning_rate
        })
    }

    fn ease(&mut self) -> Result<()> {
        let t = Instant::now();
        let basis = EaseBasis::new(&self.split.train.matrix, self.opts.ease_dim, self.opts.seed)?;
        let basis_secs = t.elapsed().as_secs_f64();
        let mut first = true;
        let mut last = 0.0f64;
        // A λ starts only if it, the final fit (a new basis) and the
        // popularity stage are expected to end within the budget.
        let mut try_lambda = |s: &mut Self, stage, lambda: f64| -> Result<f64> {
            let t = Instant::now();
            let f = basis.factors(lambda)?;
            let m = validate(&f, s.split, s.opts.k);
            s.keep(Algo::Ease, m.ndcg, f);
            let params = TrainParams {
                factors: basis.dim(),
                reg: lambda as f32,
                epochs: 1,
                ..s.base(Algo::Ease)
            };
            let own = t.elapsed().as_secs_f64();
            // The basis is shared: its time goes to the first trial.
            let secs = own
                + if std::mem::take(&mut first) {
                    basis_secs
                } else {
                    0.0
                };
            s.record(stage, params, m, secs);
            Ok(own)
        };
        // Half decades from the middle out, so a short budget covers the
        // usual optimum (λ in the hundreds) first.
        for e in [4, 5, 3, 6, 2, 7, 1, 8, 0] {
            if !self.ends_in_time(last, basis_secs) {
                return Ok(());
            }
            last = try_lambda(self, "coarse", 10f64.powf(e as f64 / 2.0))?;
        }
        for step in [0.25, 0.125] {
            let Some(b) = self.best_of(Algo::Ease) else {
                break;
            };
            for sign in [-1.0, 1.0] {
                if !self.ends_in_time(last, basis_secs) {
                    return Ok(());
                }
                let lambda = b.params.reg as f64 * 10f64.powf(sign * step);
                last = try_lambda(self, "refine", lambda)?;
            }
        }
        Ok(())
    }

    /// One iALS or BPR run validated every `every` epochs up to `epochs`,
    /// stopped after two falls in a row; records its best checkpoint.
    fn run(&mut self, stage: &'static str, p: TrainParams, every: usize) -> Result<()> {
        if self.spent() || self.tried(&p) || !self.fits(&p) {
            return Ok(());
        }
        let params = p.clone().check()?;
        let t = Instant::now();
        let (split, k) = (self.split, self.opts.k);
        let mut best: Option<(usize, Metrics)> = None;
        let mut best_f: Option<Factors> = None;
        let mut falls = 0;
        let mut cb = |r: &EpochReport, f: &Factors| {
            if !r.epoch.is_multiple_of(every) && r.epoch != params.epochs {
                return true;
            }
            let m = validate(f, split, k);
            match &best {
                Some((_, b)) if m.ndcg <= b.ndcg => falls += 1,
                _ => {
                    falls = 0;
                    best = Some((r.epoch, m));
                    best_f = Some(f.clone());
                }
            }
            falls < 2
        };
        crate::train(
            &split.train.matrix,
            &params,
            &mut TrainControl {
                stop: None,
                on_epoch: Some(&mut cb),
            },
        )?;
        if let (Some((epochs, m)), Some(f)) = (best, best_f) {
            let secs = t.elapsed().as_secs_f64();
            self.keep(p.algo, m.ndcg, f);
            self.record(stage, TrainParams { epochs, ..p }, m, secs);
        }
        Ok(())
    }

    /// iALS: a coarse pass over implicit's usual (α, λ) grid, then local
    /// refinement in Rendle et al. (2022)'s coordinates: the weight α0 of
    /// unobserved pairs (observed pairs weigh 1) and the regularisation λ'
    /// relative to it. For 0/1 data these are implicit's (α, λ) divided
    /// through by 1 + α: α = 1/α0 − 1, λ = λ'/α0. In (α0, λ') the optimum
    /// is a smooth bowl; in (α, λ) it is a narrow ridge along λ ∝ 1 + α,
    /// where a grid steps over it.
    fn ials(&mut self) -> Result<()> {
        let at = |a0: f32, lam: f32, reg_exponent: f32, factors: usize, base: &TrainParams| {
            TrainParams {
                alpha: (1.0 / a0 - 1.0).max(0.0),
                reg: lam / a0,
                reg_exponent,
                factors,
                epochs: 30,
                ..base.clone()
            }
        };
        let base = self.base(Algo::Ials);
        // Coarse: implicit's usual (α, λ) grid, with and without ν = 1.
        let regs = [
            (0.0, 0.1),
            (0.0, 1.0),
            (0.0, 10.0),
            (0.0, 100.0),
            (1.0, 0.003),
            (1.0, 0.03),
            (1.0, 0.3),
        ];
        for alpha in [0.25f32, 1.0, 4.0, 16.0] {
            for (nu, reg) in regs {
                let a0 = 1.0 / (1.0 + alpha);
                self.run("coarse", at(a0, reg * a0, nu, 64, &base), 5)?;
            }
        }
        // Local refinement: the four neighbours of the best, steps halving
        // (in decades) after a round that finds nothing better.
        let coords = |p: &TrainParams| {
            let a0 = 1.0 / (1.0 + p.alpha);
            (a0, p.reg * a0)
        };
        let mut step = 0.25f32;
        for _ in 0..4 {
            let Some(b) = self.best_of(Algo::Ials) else {
                return Ok(());
            };
            let (a0, lam) = coords(&b.params);
            let f = 10f32.powf(step);
            for (da, dl) in [(f, 1.0), (1.0 / f, 1.0), (1.0, f), (1.0, 1.0 / f)] {
                let a = (a0 * da).min(1.0);
                let p = at(a, lam * dl, b.params.reg_exponent, b.params.factors, &base);
                self.run("refine", p, 5)?;
            }
            if self.best_of(Algo::Ials).map(|n| n.ndcg) <= Some(b.ndcg) {
                step /= 2.0;
            }
        }
        // Wider embeddings at the best point, while they keep helping.
        for factors in [128, 256, 512] {
            let Some(b) = self.best_of(Algo::Ials) else {
                return Ok(());
            };
            let p = TrainParams {
                factors,
                epochs: 30,
                ..b.params.clone()
            };
            self.run("refine", p, 5)?;
            if self.best_of(Algo::Ials).map(|n| n.ndcg) <= Some(b.ndcg) {
                break;
            }
        }
        Ok(())
    }

    fn bpr(&mut self) -> Result<()> {
        let base = TrainParams {
            epochs: 100,
            ..self.base(Algo::Bpr)
        };
        for factors in [32, 64, 128] {
            for learning_rate in [0.01, 0.05, 0.1] {
                for reg in [0.0001, 0.001, 0.01] {
                    let p = TrainParams {
                        factors,
                        learning_rate,
                        reg,
                        ..base.clone()
                    };
                    self.run("coarse", p, 10)?;
                }
            }
        }
        Ok(())
    }
}
