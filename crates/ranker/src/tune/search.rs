//! The search: candidates in order while the budget lasts, each judged on
//! the validation users.

use std::time::Instant;

use crate::als::{EpochReport, TrainControl};
use crate::ease::EaseBasis;
use crate::error::Result;
use crate::eval::{item_counts, Metrics};
use crate::factors::Factors;
use crate::params::{Algo, TrainParams};
use crate::rng::SplitMix;
use crate::rp3::{binary, Rp3Params};
use crate::split::Split;

use super::cost::{self, Meter};

use super::*;

/// A kept candidate: what the blend and the compensation stages reuse.
struct Kept {
    trial: usize,
    scorer: Scorer,
    /// Top-100 lists with scores.
    lists: Lists,
}

/// The most of the search's budget EASE (its bases and λ grids) takes.
const EASE_SHARE: f64 = 0.4;

/// The share of the budget kept for the blend and compensation stages.
const LATE_SHARE: f64 = 0.1;

/// Each validation user's top items with scores (`None`: not judged).
type Lists = Vec<Option<Vec<(u32, f32)>>>;

struct Search<'a> {
    split: &'a Split,
    opts: &'a TuneOptions,
    /// Modeled seconds of work: what decides which settings fit.
    meter: Meter,
    trials: Vec<Trial>,
    kept: Vec<Kept>,
    best_weighting: Weighting,
    /// Whether `best_weighting` was chosen on validation (by EASE); when not
    /// (no EASE: a catalogue above its limit, or not asked for), iALS judges
    /// the weightings itself.
    weighting_judged: bool,
    /// Per trial, the modeled seconds of its final fit on the training
    /// part: its own work, but for an iALS or BPR run, whose trial also
    /// ran the epochs after its best checkpoint and judged every
    /// checkpoint, an epoch's work times its best epochs.
    fit_work: Vec<f64>,
    /// The final fit's interactions over the training part's (the
    /// validation part trains too): a factorisation's epochs cost this much
    /// more at the final fit; EASE's basis, over the same users and items, not.
    full: f64,
    /// Validation users with something to find (those judging ranks for).
    judged: usize,
    /// Each iALS or BPR run's algorithm, epochs and checkpoints judged (the
    /// longest one is the next run's expected length).
    ran: Vec<(Algo, usize, usize)>,
}

impl Search<'_> {
    /// Whether work modeled at `expected` seconds, then the final fit
    /// (`final_fit` modeled seconds) and the late stages all end within the
    /// budget; always true before any trial.
    fn ends_in_time(&self, expected: f64, final_fit: f64) -> bool {
        self.trials.is_empty() || self.ends_within(expected, final_fit, LATE_SHARE)
    }

    /// Whether work of `expected` modeled seconds, then the final fit, end
    /// with `reserve` of the budget to spare (and the wall clock is within
    /// its guard).
    fn ends_within(&self, expected: f64, final_fit: f64, reserve: f64) -> bool {
        let budget = self.opts.budget.as_secs_f64();
        self.meter.spent() + expected + final_fit + reserve * budget <= budget
            && !self.meter.past_guard()
    }

    /// Modeled seconds of judging `scorer`: every judged user's top list.
    fn judge_work(&self, scorer: &Scorer) -> f64 {
        let (train, test) = (&self.split.train.matrix, &self.split.test);
        match scorer {
            Scorer::Factors(f) => cost::judge_dense(self.judged, train.n_cols(), f.dim),
            Scorer::Sparse { rows, .. } => {
                let judged = (0..test.n_rows()).filter(|&u| test.row_len(u) > 0);
                cost::judge_sparse(train, judged, |i| rows[i as usize].len())
            }
        }
    }

    /// The modeled seconds of the best trial so far's setting, as a final
    /// fit's estimate.
    fn final_fit(&self) -> f64 {
        self.trials
            .iter()
            .zip(&self.fit_work)
            .max_by(|a, b| a.0.ndcg.total_cmp(&b.0.ndcg))
            .map_or(0.0, |t| *t.1)
    }

    /// Records a trial that took `seconds` of wall time and `work` modeled
    /// seconds (also its final fit's until the caller says otherwise).
    fn record(
        &mut self,
        stage: &'static str,
        candidate: Candidate,
        weighting: Weighting,
        pop_bias: f32,
        judged: (Metrics, Vec<f64>),
        (seconds, work): (f64, f64),
    ) -> usize {
        let (m, users) = judged;
        self.fit_work.push(work);
        self.trials.push(Trial {
            stage,
            candidate,
            weighting,
            pop_bias,
            ndcg: m.ndcg,
            ndcg_se: se(&users),
            recall: m.recall,
            hit_rate: m.hit_rate,
            map: m.map,
            seconds,
            work,
            users,
        });
        self.trials.len() - 1
    }

    /// Keeps the scorer of trial `t` when it is the best of its kind so far.
    fn keep(&mut self, t: usize, scorer: Scorer, lists: Lists) {
        let kind = self.trials[t].candidate.kind();
        let ndcg = self.trials[t].ndcg;
        match self
            .kept
            .iter_mut()
            .find(|k| self.trials[k.trial].candidate.kind() == kind)
        {
            Some(k) if self.trials[k.trial].ndcg >= ndcg => {}
            Some(k) => {
                *k = Kept {
                    trial: t,
                    scorer,
                    lists,
                }
            }
            None => self.kept.push(Kept {
                trial: t,
                scorer,
                lists,
            }),
        }
    }

    /// Judges a scorer that cost `work` modeled seconds to make (from
    /// `started`): charges the judging, records the trial and keeps it if
    /// best of its kind.
    fn evaluate(
        &mut self,
        stage: &'static str,
        candidate: Candidate,
        weighting: Weighting,
        scorer: Scorer,
        (started, work): (Instant, f64),
    ) -> usize {
        let t = Instant::now();
        let lists = scorer.lists(self.split, POOL);
        let judge = self.judge_work(&scorer);
        self.meter.charge("judge", judge, t);
        self.evaluated(
            stage,
            candidate,
            weighting,
            scorer,
            lists,
            (started, work + judge),
        )
    }

    /// Records a scorer's trial from its top-[`POOL`] lists and keeps it if
    /// best of its kind.
    fn evaluated(
        &mut self,
        stage: &'static str,
        candidate: Candidate,
        weighting: Weighting,
        scorer: Scorer,
        lists: Lists,
        (started, work): (Instant, f64),
    ) -> usize {
        let judged = judge(self.split, &lists, self.opts.k);
        let secs = started.elapsed().as_secs_f64();
        let t = self.record(stage, candidate, weighting, 0.0, judged, (secs, work));
        self.keep(t, scorer, lists);
        t
    }

    fn best_of(&self, kind: &str) -> Option<&Trial> {
        self.trials
            .iter()
            .filter(|t| t.candidate.kind() == kind && t.stage != CANDIDATE)
            .max_by(|a, b| a.ndcg.total_cmp(&b.ndcg))
    }

    /// EASE per weighting; false when its basis is too slow for the budget
    /// (then RP3beta, whose embedding needs the same basis, is left out too).
    fn ease(&mut self) -> Result<bool> {
        let mut best_overall: Option<(f64, Weighting)> = None;
        let m = &self.split.train.matrix;
        // The basis is EASE's cost (and RP3beta's embedding's, at the final
        // fit): one that would not end, with the final fit of the same
        // basis, within the budget's share for the search is not started,
        // even as the first trial.
        let basis = cost::ease_basis(m.n_rows(), m.n_cols(), self.opts.ease_dim);
        let share = (1.0 - LATE_SHARE) * self.opts.budget.as_secs_f64();
        tracing::debug!("EASE basis: {basis:.1} s modeled");
        if 2.3 * basis > share {
            tracing::warn!(
                "EASE's basis of {} items at dimension {} is modeled to take {basis:.0} s: \
                 EASE and RP3beta are left out of the search within a {:.0} s budget",
                m.n_cols(),
                self.opts.ease_dim,
                self.opts.budget.as_secs_f64()
            );
            return Ok(false);
        }
        // EASE's share of the search: a basis and its λ judgings (each a
        // ranking at the basis's dimension) cost as much as a dozen iALS
        // runs, and on Last.fm two weightings' bases and λ grids took two
        // thirds of the budget, leaving iALS, the best kind there by three
        // standard errors, six runs. A weighting starts only when its basis
        // and coarse λ grid fit in the share; without every weighting judged,
        // iALS judges them itself.
        let cap = self.meter.spent() + EASE_SHARE * share;
        let r = self.opts.ease_dim.min(m.n_rows()).min(m.n_cols());
        let per_judge = cost::judge_dense(self.judged, m.n_cols(), r);
        let mut judged = 0;
        for &w in &self.opts.weightings.clone() {
            let x = w.apply(&self.split.train.matrix);
            let coarse = basis + 5.0 * (cost::ease_lambda(&x, r) + per_judge);
            if !self.ends_in_time(basis, basis) || self.meter.spent() + coarse > cap {
                break;
            }
            judged += 1;
            let t = Instant::now();
            let made = EaseBasis::new(&x, self.opts.ease_dim, self.opts.seed)?;
            self.meter.charge("ease basis", basis, t);
            let per_lambda = cost::ease_lambda(&x, made.dim());
            let mut first = true;
            let mut last = 0.0f64;
            let mut best: Option<(f64, f64)> = None;
            // A λ's work: its embedding and judging (the first λ's trial
            // also the basis); its final fit makes the basis again.
            let mut try_lambda = |s: &mut Self, stage, lambda: f64| -> Result<(f64, f64)> {
                let t0 = Instant::now();
                let f = made.factors(lambda)?;
                s.meter.charge("ease lambda", per_lambda, t0);
                let (started, own) = if std::mem::take(&mut first) {
                    (t, basis + per_lambda)
                } else {
                    (t0, per_lambda)
                };
                let before = s.meter.spent();
                let i = s.evaluate(
                    stage,
                    Candidate::Ease { lambda },
                    w,
                    Scorer::Factors(f),
                    (started, own),
                );
                s.fit_work[i] = basis + per_lambda;
                Ok((s.trials[i].ndcg, per_lambda + s.meter.spent() - before))
            };
            // Log₁₀ λ: odd half-decades from the middle out (λ in the
            // hundreds to thousands first), then half- and quarter-decade
            // steps around the best. (An eighth of a decade moved Last.fm's
            // validation NDCG by at most 0.0015, under half a standard error
            // of 0.0035, for a judging that costs as much as an iALS run.)
            for e in [2.5f64, 3.5, 1.5, 4.5, 0.5] {
                if !self.ends_in_time(last, basis) || self.meter.spent() + last > cap {
                    break;
                }
                let lambda = 10f64.powf(e);
                let (n, secs) = try_lambda(self, "coarse", lambda)?;
                last = secs;
                if best.is_none_or(|b: (f64, f64)| n > b.0) {
                    best = Some((n, lambda));
                }
            }
            for step in [0.5, 0.25] {
                let Some((_, b)) = best else { break };
                for sign in [-1.0, 1.0] {
                    if !self.ends_in_time(last, basis) || self.meter.spent() + last > cap {
                        break;
                    }
                    let lambda = b * 10f64.powf(sign * step);
                    let (n, secs) = try_lambda(self, "refine", lambda)?;
                    last = secs;
                    if best.is_none_or(|b: (f64, f64)| n > b.0) {
                        best = Some((n, lambda));
                    }
                }
            }
            if let Some((n, _)) = best {
                if best_overall.is_none_or(|b| n > b.0) {
                    best_overall = Some((n, w));
                }
            }
        }
        if let Some((_, w)) = best_overall {
            self.best_weighting = w;
            self.weighting_judged = judged == self.opts.weightings.len();
        }
        Ok(true)
    }

    /// The popularity baseline: one judging of the users, no training.
    fn popularity(&mut self) {
        let t = Instant::now();
        let f = popularity(&self.split.train.matrix);
        self.evaluate(
            "coarse",
            Candidate::Popularity,
            Weighting::Binary,
            Scorer::Factors(f),
            (t, 0.0),
        );
    }

    /// RP3beta's weights on the binary training matrix, as a sparse scorer.
    fn rp3(&mut self) -> Result<()> {
        let x = binary(&self.split.train.matrix);
        let n_items = x.n_cols();
        let weights_work = cost::rp3(&x);
        // Its final fit: the weights on the validation part's interactions
        // too (pairs grow with the square), written through EASE's basis.
        let fit = self.full * self.full * weights_work
            + cost::ease_basis(x.n_rows(), x.n_cols(), self.opts.ease_dim);
        let mut last = 0.0f64;
        for neighbours in [200usize, 50] {
            for alpha in [1.0f64, 0.75, 0.5] {
                for beta in [0.25f64, 0.5, 0.0, 0.75] {
                    if !self.ends_in_time(last, self.final_fit()) {
                        return Ok(());
                    }
                    let t = Instant::now();
                    let p = Rp3Params {
                        alpha,
                        beta,
                        neighbours,
                    };
                    let rows = crate::rp3::weights(&x, &p)?;
                    self.meter.charge("rp3beta weights", weights_work, t);
                    let scorer = Scorer::Sparse {
                        rows,
                        bias: vec![0.0; n_items],
                    };
                    let before = self.meter.spent();
                    let i = self.evaluate(
                        "coarse",
                        Candidate::Rp3beta(p),
                        Weighting::Binary,
                        scorer,
                        (t, weights_work),
                    );
                    self.fit_work[i] = fit;
                    last = weights_work + self.meter.spent() - before;
                }
            }
        }
        Ok(())
    }

    /// One iALS or BPR run validated every `every` epochs up to `epochs`,
    /// stopped after two falls in a row; records its best checkpoint.
    fn run(&mut self, stage: &'static str, p: TrainParams, every: usize) -> Result<()> {
        if self.tried(&p) || !self.fits(&p) {
            return Ok(());
        }
        let params = p.clone().check()?;
        let t = Instant::now();
        let w = self.best_weighting;
        let x = w.apply(&self.split.train.matrix);
        let (split, k) = (self.split, self.opts.k);
        // Each checkpoint's top-POOL lists: the best one's are the trial's,
        // not computed a second time.
        let mut best: Option<(usize, f64, Factors, Lists)> = None;
        let mut falls = 0;
        let (mut checkpoints, mut epochs_run, mut judge_wall) = (0usize, 0usize, 0.0f64);
        let mut cb = |r: &EpochReport, f: &Factors| {
            epochs_run = r.epoch;
            if !r.epoch.is_multiple_of(every) && r.epoch != params.epochs {
                return true;
            }
            checkpoints += 1;
            let tj = Instant::now();
            let lists = Scorer::Factors(f.clone()).lists(split, POOL);
            let (m, _) = judge(split, &lists, k);
            judge_wall += tj.elapsed().as_secs_f64();
            match &best {
                Some((_, b, _, _)) if m.ndcg <= *b => falls += 1,
                _ => {
                    falls = 0;
                    best = Some((r.epoch, m.ndcg, f.clone(), lists));
                }
            }
            falls < 2
        };
        crate::train(
            &x,
            &params,
            &mut TrainControl {
                stop: None,
                on_epoch: Some(&mut cb),
            },
        )?;
        let per_epoch = cost::epoch(&x, p.algo, p.factors, p.cg_steps);
        let judging = checkpoints as f64 * cost::judge_dense(self.judged, x.n_cols(), p.factors);
        let work = per_epoch * epochs_run as f64 + judging;
        let name = if p.algo == Algo::Bpr { "bpr" } else { "ials" };
        tracing::debug!(
            algo = name,
            factors = p.factors,
            epochs = epochs_run,
            checkpoints,
            judge_wall,
            epochs_modeled = per_epoch * epochs_run as f64,
            epochs_wall = t.elapsed().as_secs_f64() - judge_wall,
            "tune run"
        );
        self.meter.charge(name, work, t);
        self.ran.push((p.algo, epochs_run, checkpoints));
        if let Some((epochs, _, f, lists)) = best {
            let i = self.evaluated(
                stage,
                Candidate::Factorization(TrainParams { epochs, ..p }),
                w,
                Scorer::Factors(f),
                lists,
                (t, work),
            );
            // The final fit trains on the validation part too.
            self.fit_work[i] = self.full * per_epoch * epochs as f64;
        }
        Ok(())
    }

    fn tried(&self, p: &TrainParams) -> bool {
        self.trials.iter().any(|t| match &t.candidate {
            Candidate::Factorization(q) => {
                t.weighting == self.best_weighting
                    && q.algo == p.algo
                    && q.factors == p.factors
                    && (q.reg / p.reg - 1.0).abs() < 1e-3
                    && (q.alpha - p.alpha).abs() <= 1e-3 * p.alpha.max(1e-3)
                    && q.reg_exponent == p.reg_exponent
                    && q.learning_rate == p.learning_rate
            }
            _ => false,
        })
    }

    /// Whether a run of `p` is expected to end in time: as long as the
    /// longest earlier run of its algorithm in epochs (its modeled work at
    /// `p`'s dimension), or all its epochs when it is the first.
    fn fits(&self, p: &TrainParams) -> bool {
        let x = &self.split.train.matrix;
        let (epochs, checkpoints) = self
            .ran
            .iter()
            .filter(|r| r.0 == p.algo)
            .map(|r| (r.1, r.2))
            .max()
            .unwrap_or((p.epochs, p.epochs.div_ceil(5)));
        let expected = cost::epoch(x, p.algo, p.factors, p.cg_steps) * epochs as f64
            + checkpoints as f64 * cost::judge_dense(self.judged, x.n_cols(), p.factors);
        self.ends_in_time(expected, self.final_fit())
    }

    fn base(&self, algo: Algo) -> TrainParams {
        TrainParams {
            algo,
            seed: self.opts.seed,
            ..TrainParams::default()
        }
    }

    /// iALS: implicit's usual (α, λ) grid with and without ν = 1, then
    /// refinement in Rendle et al. (2022)'s coordinates (the weight α0 of
    /// unobserved pairs, λ' relative to it; in (α, λ) the optimum is a narrow
    /// ridge along λ ∝ 1 + α), then wider embeddings while they help.
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
        let regs = [
            (0.0, 1.0),
            (0.0, 10.0),
            (0.0, 100.0),
            (0.0, 0.1),
            (1.0, 0.03),
            (1.0, 0.3),
            (1.0, 0.003),
        ];
        for alpha in [1.0f32, 4.0, 16.0, 0.25] {
            for (nu, reg) in regs {
                let a0 = 1.0 / (1.0 + alpha);
                self.run("coarse", at(a0, reg * a0, nu, 64, &base), 5)?;
            }
        }
        if !self.weighting_judged {
            self.ials_weightings()?;
        }
        let coords = |p: &TrainParams| {
            let a0 = 1.0 / (1.0 + p.alpha);
            (a0, p.reg * a0)
        };
        let best_params = |s: &Self| match s.best_of("ials").map(|t| &t.candidate) {
            Some(Candidate::Factorization(p)) => {
                Some((p.clone(), s.best_of("ials").map_or(0.0, |t| t.ndcg)))
            }
            _ => None,
        };
        let mut step = 0.25f32;
        for _ in 0..4 {
            let Some((b, nb)) = best_params(self) else {
                return Ok(());
            };
            let (a0, lam) = coords(&b);
            let f = 10f32.powf(step);
            for (da, dl) in [(f, 1.0), (1.0 / f, 1.0), (1.0, f), (1.0, 1.0 / f)] {
                let a = (a0 * da).min(1.0);
                let p = at(a, lam * dl, b.reg_exponent, b.factors, &base);
                self.run("refine", p, 5)?;
            }
            if best_params(self).map(|x| x.1) <= Some(nb) {
                step /= 2.0;
            }
        }
        for factors in [128, 256, 512] {
            let Some((b, nb)) = best_params(self) else {
                return Ok(());
            };
            let p = TrainParams {
                factors,
                epochs: 30,
                ..b
            };
            self.run("refine", p, 5)?;
            if best_params(self).map(|x| x.1) <= Some(nb) {
                break;
            }
        }
        Ok(())
    }

    /// Without EASE to choose the weighting, the two best coarse iALS
    /// settings are run again under each other weighting, and the search
    /// goes on with the weighting of the best run.
    fn ials_weightings(&mut self) -> Result<()> {
        let first = self.best_weighting;
        let mut coarse: Vec<(f64, TrainParams)> = self
            .trials
            .iter()
            .filter(|t| t.stage == "coarse" && t.weighting == first)
            .filter_map(|t| match &t.candidate {
                Candidate::Factorization(p) if p.algo == Algo::Ials => Some((t.ndcg, p.clone())),
                _ => None,
            })
            .collect();
        coarse.sort_by(|a, b| b.0.total_cmp(&a.0));
        for &w in &self.opts.weightings.clone() {
            if w == first {
                continue;
            }
            self.best_weighting = w;
            for (_, p) in coarse.iter().take(2) {
                self.run(
                    "coarse",
                    TrainParams {
                        epochs: 30,
                        ..p.clone()
                    },
                    5,
                )?;
            }
        }
        self.best_weighting = self.best_of("ials").map_or(first, |t| t.weighting);
        self.weighting_judged = true;
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

    /// The two best kinds' scores mixed, each divided by its RMS, with
    /// weights ¼, ½, ¾, judged on the union of their top-100 lists.
    fn blend(&mut self) {
        let mut order: Vec<usize> = (0..self.kept.len()).collect();
        order.sort_by(|&a, &b| {
            self.trials[self.kept[b].trial]
                .ndcg
                .total_cmp(&self.trials[self.kept[a].trial].ndcg)
        });
        let [ia, ib, ..] = order[..] else {
            return;
        };
        let t = Instant::now();
        let (ka, kb) = (&self.kept[ia], &self.kept[ib]);
        let (sa, sb) = (Scorer::scale(&ka.lists), Scorer::scale(&kb.lists));
        // Each user's union of the two lists, scored by both.
        let wants: Vec<Option<Vec<u32>>> = ka
            .lists
            .iter()
            .zip(&kb.lists)
            .map(|(la, lb)| {
                let (la, lb) = (la.as_ref()?, lb.as_ref()?);
                let mut items: Vec<u32> = la.iter().chain(lb).map(|e| e.0).collect();
                items.sort_unstable();
                items.dedup();
                Some(items)
            })
            .collect();
        let a = ka.scorer.scores_for(self.split, &wants);
        let b = kb.scorer.scores_for(self.split, &wants);
        let unions: Vec<Option<Union>> = wants
            .into_iter()
            .zip(a.into_iter().zip(b))
            .map(|(w, (a, b))| Some((w?, a?, b?)))
            .collect();
        let (ca, cb) = (
            self.trials[ka.trial].candidate.clone(),
            self.trials[kb.trial].candidate.clone(),
        );
        let weighting = self.trials[ka.trial].weighting;
        let per = t.elapsed().as_secs_f64();
        // Scoring the unions (at most 2 × 100 items a user) by both models,
        // then three judgings of them; a blend's final fit fits both parts.
        let dims = ka.scorer.dim() + kb.scorer.dim();
        let (union_work, judge_work) = cost::blend(self.judged, 2 * POOL, dims);
        self.meter.charge("blend unions", union_work, t);
        let parts_fit = self.fit_work[ka.trial] + self.fit_work[kb.trial];
        for weight in [0.5, 0.75, 0.25] {
            let t = Instant::now();
            let lists: Lists = unions
                .iter()
                .map(|x| {
                    let (items, a, b) = x.as_ref()?;
                    let mut l: Vec<(u32, f32)> = items
                        .iter()
                        .zip(a.iter().zip(b))
                        .map(|(&j, (&a, &b))| {
                            (
                                j,
                                (weight * a as f64 / sa + (1.0 - weight) * b as f64 / sb) as f32,
                            )
                        })
                        .collect();
                    l.sort_unstable_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
                    Some(l)
                })
                .collect();
            let judged = judge(self.split, &lists, self.opts.k);
            let cand = Candidate::Blend {
                a: Box::new(ca.clone()),
                b: Box::new(cb.clone()),
                weight,
            };
            let secs = per + t.elapsed().as_secs_f64();
            self.meter.charge("blend judge", judge_work, t);
            // Blends are judged on the workers' weighting of their first part.
            let i = self.record("blend", cand, weighting, 0.0, judged, (secs, union_work));
            self.fit_work[i] = parts_fit;
        }
    }

    /// Popularity compensation of the chosen model: β on a grid (then ±0.05
    /// around the best), no retraining; β kept is the smallest |β| within one
    /// paired standard error of the best. Blends are compensated through their
    /// parts' lists (the union lists of the best blend).
    fn debias(&mut self) {
        let Some(chosen) = choose(&self.trials).cloned() else {
            return;
        };
        // Popularity compensated by its own popularity is itself rescaled
        // (or reversed): there is nothing to judge.
        if chosen.candidate == Candidate::Popularity {
            return;
        }
        // Only a single kept model (not a blend) can be rescored here.
        let Some(kept) = self
            .kept
            .iter()
            .find(|k| self.trials[k.trial].candidate == chosen.candidate)
        else {
            return;
        };
        let counts = item_counts(&self.split.train.matrix);
        let scale = Scorer::scale(&kept.lists);
        let t = Instant::now();
        let eval = |beta: f32| {
            let s = kept.scorer.with_pop_bias(&counts, beta, scale);
            judge(self.split, &s.lists(self.split, self.opts.k), self.opts.k)
        };
        let mut tried: Vec<(f32, (Metrics, Vec<f64>))> = Vec::new();
        // Each β is one more judging of every user, which on a large set
        // costs as much as a short training run: it starts only when it and
        // the final fit end in time.
        let judge_work = self.judge_work(&kept.scorer);
        let fits = |s: &Self| s.ends_within(judge_work, s.final_fit(), 0.0);
        for beta in [-0.6f32, -0.4, -0.3, -0.2, -0.1, 0.1] {
            if !fits(self) {
                break;
            }
            let t = Instant::now();
            tried.push((beta, eval(beta)));
            self.meter.charge("debias judge", judge_work, t);
        }
        let best = tried
            .iter()
            .max_by(|a, b| a.1 .0.ndcg.total_cmp(&b.1 .0.ndcg))
            .map(|t| t.0);
        if let Some(b) = best {
            for beta in [b - 0.05, b + 0.05] {
                if beta.abs() > 1e-6
                    && !tried.iter().any(|t| (t.0 - beta).abs() < 1e-6)
                    && fits(self)
                {
                    let t = Instant::now();
                    tried.push((beta, eval(beta)));
                    self.meter.charge("debias judge", judge_work, t);
                }
            }
        }
        let secs = t.elapsed().as_secs_f64() / tried.len().max(1) as f64;
        let (cand, w) = (chosen.candidate.clone(), chosen.weighting);
        let chosen_fit = self
            .trials
            .iter()
            .position(|x| x.candidate == chosen.candidate && x.stage != CANDIDATE)
            .map_or(0.0, |i| self.fit_work[i]);
        // The best of β and the unchanged model; the smallest |β| within one SE.
        let top = tried
            .iter()
            .map(|t| (t.0, &t.1 .1, t.1 .0.ndcg))
            .chain(std::iter::once((0.0, &chosen.users, chosen.ndcg)))
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .map(|t| t.1.clone())
            .unwrap_or_default();
        let keep_beta = tried
            .iter()
            .filter(|t| within_one_se(&top, &t.1 .1))
            .map(|t| t.0)
            .chain(within_one_se(&top, &chosen.users).then_some(0.0))
            .min_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap_or(0.0);
        for (beta, judged) in tried {
            let stage = if beta == keep_beta {
                "debias"
            } else {
                CANDIDATE
            };
            let i = self.record(stage, cand.clone(), w, beta, judged, (secs, judge_work));
            self.fit_work[i] = chosen_fit;
        }
    }
}

/// Searches on `split` (raw weights in its training matrix); returns every
/// trial in the order tried. [`choose`] picks one; [`fit_trial`] trains it.
pub fn tune(split: &Split, opts: &TuneOptions) -> Result<Vec<Trial>> {
    let train = split.train.matrix.nnz().max(1) as f64;
    let full = (train + split.test.nnz() as f64) / train;
    let sampled = judged_sample(split, opts.judged_users, opts.seed);
    let split = sampled.as_ref().unwrap_or(split);
    let mut s = Search {
        split,
        opts,
        meter: Meter::new(opts.budget),
        trials: Vec::new(),
        kept: Vec::new(),
        best_weighting: opts
            .weightings
            .first()
            .copied()
            .unwrap_or(Weighting::Binary),
        weighting_judged: opts.weightings.len() < 2,
        fit_work: Vec::new(),
        full,
        judged: (0..split.test.n_rows())
            .filter(|&u| split.test.row_len(u) > 0)
            .count(),
        ran: Vec::new(),
    };
    // EASE and RP3beta are items × items models: above EASE's item limit
    // the search goes on without them (iALS scales with the interactions).
    let n_items = split.train.matrix.n_cols();
    if opts.algos.contains(&Algo::Ease) && n_items <= crate::ease::EASE_MAX_ITEMS {
        if s.ease()? {
            s.rp3()?;
        }
    } else if opts.algos.contains(&Algo::Ease) {
        tracing::warn!(
            "{n_items} items is above the item-item models' limit of {}: EASE and RP3beta are \
             left out of the search",
            crate::ease::EASE_MAX_ITEMS
        );
    }
    if opts.algos.contains(&Algo::Ials) {
        s.ials()?;
    }
    if opts.algos.contains(&Algo::Bpr) {
        s.bpr()?;
    }
    s.popularity();
    s.blend();
    s.debias();
    Ok(s.trials)
}

/// `split` with validation rows for `cap` of its validation users, chosen
/// by a seeded hash of their row (so the same users whatever the thread
/// count), or `None` when it has no more than `cap`.
pub(super) fn judged_sample(split: &Split, cap: usize, seed: u64) -> Option<Split> {
    let test = &split.test;
    let mut keyed: Vec<(u64, u32)> = (0..test.n_rows())
        .filter(|&u| test.row_len(u) > 0)
        .map(|u| (SplitMix::new(seed, 0x1D6E, u as u64).next_u64(), u as u32))
        .collect();
    let cap = cap.max(1);
    if keyed.len() <= cap {
        return None;
    }
    let all = keyed.len();
    keyed.select_nth_unstable(cap - 1);
    keyed.truncate(cap);
    keyed.sort_unstable_by_key(|k| k.1);
    let (mut rows, mut cols, mut vals) = (Vec::new(), Vec::new(), Vec::new());
    for &(_, u) in &keyed {
        let (items, w) = test.row(u as usize);
        rows.extend(std::iter::repeat_n(u, items.len()));
        cols.extend_from_slice(items);
        vals.extend_from_slice(w);
    }
    tracing::info!(
        "judging a seeded sample of {} of {all} validation users",
        keyed.len()
    );
    Some(Split {
        train: split.train.clone(),
        test: Csr::from_triplets(test.n_rows(), test.n_cols(), &rows, &cols, &vals),
        dropped_test_users: split.dropped_test_users,
        unknown_test_items: split.unknown_test_items,
    })
}
