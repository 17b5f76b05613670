//! A trained recipe (siloed or unified) as a simulator policy.
//!
//! **Fitting.** Each fit trains iALS on the engagement-weighted impressions of
//! the trailing `window_days` (a siloed recipe: one model per surface on that
//! surface's impressions; a unified recipe: one model on all of them). The
//! first fit trains from scratch on the window one day earlier, then continues
//! on the whole window; each daily refresh continues from yesterday's factors
//! for `refresh_epochs` sweeps, new users and new uploads joining with small
//! random factors. Users and videos without a positive interaction in the
//! window are unknown to the model: they get trailing popularity (users) or
//! only fresh-upload exploration (videos).
//!
//! **Ranking.** With `ranking = "value"`, a linear value head per surface
//! predicts an impression's engagement weight (the quantity the model trains
//! on) from the features
//!
//! - siloed: `[1, u·v, ln(1 + n_v), b_v]`,
//! - unified: `[1, u·v, p_s·v, ln(1 + n_v), b_v]`,
//!
//! where `u` is the user's embedding, `p_s` their taste on surface `s` folded
//! in (exact least squares on the fixed item factors) from their window's
//! impressions on that surface, `n_v` the video's training count and `b_v`
//! its bias. Heads are fitted by ridge least squares on the last day's
//! impressions scored by the model that had not trained on that day (for the
//! first fit, the one trained a day earlier), so they learn how features of
//! unseen videos predict engagement, which is what serving asks. The score is
//! linear in the item vectors: `(β_u u + β_p p_s)·v + β_n ln(1 + n_v) + β_b b_v`,
//! so retrieval and ranking are one exact top-K.
//!
//! **Serving.** At the start of each day the simulator says which users will
//! come to which surfaces; every (user, surface) list (the best [`DEPTH`]
//! unseen eligible videos) is computed in one batched top-K per surface, and
//! the day's pages walk those lists.

use std::time::Instant;

use rayon::prelude::*;
use reelkit_logs::{Events, Surface};
use reelkit_ranker::{
    fold_in, gram, train_ials, train_ials_from, EngagementWeights, Factors, IdMap, ItemTable,
    TrainControl, TrainingData, ValidTrainParams,
};
use reelkit_sim::{
    surface_index, take_unseen, DayContext, FeedRequest, Policy, PopularPolicy, Rng, Scratch,
    World, SURFACES,
};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::recipe::{Ranking, Retrain, Trained};

/// Videos ranked per user, surface and day before walking the list.
pub const DEPTH: usize = 400;

/// Queries per batched top-K call (bounds the memory of one call).
const QUERY_BATCH: usize = 4096;

const TAG_INIT: u64 = 0x1A8;

/// What one (re)fit of one model did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refresh {
    pub arm: String,
    /// The simulated day it serves.
    pub day: u32,
    /// `all` (unified) or the surface of a siloed model.
    pub model: String,
    /// `scratch` (first fit, on the window a day earlier), `warm`.
    pub kind: String,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    pub epochs: usize,
    /// Wall time of building the data and training (not deterministic).
    #[serde(skip)]
    pub seconds: f64,
}

/// One fitted model and what serving needs of it.
#[derive(Debug, Clone)]
struct Fit {
    users: IdMap,
    items: IdMap,
    factors: Factors,
    item_counts: Vec<u32>,
    /// Unified: `n_users × 3 × dim` surface tastes (zeros without history there).
    surface_users: Vec<f32>,
    /// Value heads per surface (`None`: rank by the dot product).
    heads: [Option<Head>; SURFACES],
    /// World video index → item row (videos with a positive interaction).
    video_row: Vec<Option<u32>>,
    /// World user index → user row (users with a positive interaction).
    user_row: Vec<Option<u32>>,
}

/// A linear value head: `coef · features`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Head {
    /// Unified: `[1, u·v, p_s·v, ln(1+n), b]`; siloed: `[1, u·v, ln(1+n), b]`.
    pub coef: Vec<f64>,
    /// Impressions it was fitted on.
    pub n: usize,
}

impl Fit {
    fn dim(&self) -> usize {
        self.factors.dim
    }

    fn surface_user(&self, row: usize, s: usize) -> &[f32] {
        let d = self.dim();
        let at = (row * SURFACES + s) * d;
        &self.surface_users[at..at + d]
    }

    /// The query vector of a user row on surface `s`, and the item term
    /// coefficients `(β_n, β_b)`.
    fn query(&self, row: usize, s: usize, unified: bool) -> (Vec<f32>, f64, f64) {
        let u = self.factors.user(row);
        match &self.heads[s] {
            None => (u.to_vec(), 0.0, 1.0),
            Some(h) if unified => {
                let p = self.surface_user(row, s);
                let (bu, bp) = (h.coef[1] as f32, h.coef[2] as f32);
                let q = u.iter().zip(p).map(|(a, b)| bu * a + bp * b).collect();
                (q, h.coef[3], h.coef[4])
            }
            Some(h) => {
                let bu = h.coef[1] as f32;
                (u.iter().map(|a| bu * a).collect(), h.coef[2], h.coef[3])
            }
        }
    }
}

/// The observed events so far, one entry per simulated day (day `d` at `d`).
pub(crate) type DayLog<'a> = [&'a Events];

/// A trained recipe serving an arm.
#[derive(Debug)]
pub(crate) struct TrainedPolicy {
    name: String,
    recipe: Trained,
    unified: bool,
    params: ValidTrainParams,
    /// Unified: one fit; siloed: one per surface (`None`: nothing to train on).
    fits: Vec<Option<Fit>>,
    fitted_once: bool,
    fallback: PopularPolicy,
    /// Per surface: user index → index into `lists[s]` (`u32::MAX`: none).
    list_of: [Vec<u32>; SURFACES],
    lists: [Vec<Vec<u32>>; SURFACES],
    /// Every fit so far.
    pub refreshes: Vec<Refresh>,
}

impl TrainedPolicy {
    pub(crate) fn new(name: &str, recipe: &Trained, unified: bool) -> Result<TrainedPolicy> {
        let params = recipe.train.clone().check()?;
        Ok(TrainedPolicy {
            name: name.to_string(),
            recipe: recipe.clone(),
            unified,
            params,
            fits: vec![None; if unified { 1 } else { SURFACES }],
            fitted_once: false,
            fallback: PopularPolicy::default(),
            list_of: Default::default(),
            lists: Default::default(),
            refreshes: Vec::new(),
        })
    }

    /// The fit serving surface `s`.
    fn fit_for(&self, s: usize) -> Option<&Fit> {
        self.fits[if self.unified { 0 } else { s }].as_ref()
    }

    /// Fits or refreshes the models before simulated day `today`, on the
    /// observed events of the days before it (`log[d]` is day `d`'s).
    pub(crate) fn refresh(&mut self, world: &World, log: &DayLog<'_>, today: u32) -> Result<()> {
        if self.fitted_once && self.recipe.retrain == Retrain::Never {
            return Ok(());
        }
        let first = !self.fitted_once;
        let w = self.recipe.window_days;
        let window = |end: u32| -> std::ops::Range<usize> {
            end.saturating_sub(w) as usize..(end as usize).min(log.len())
        };
        let slots: Vec<Option<usize>> = if self.unified {
            vec![None]
        } else {
            (0..SURFACES).map(Some).collect()
        };
        for (k, &surface) in slots.iter().enumerate() {
            let model = match surface {
                None => "all".to_string(),
                Some(s) => Surface::ALL[s].as_str().to_string(),
            };
            // The model whose features score yesterday's impressions: one that
            // did not train on them.
            let before = if first {
                let t = Instant::now();
                let fit = self.fit_window(world, log, window(today.saturating_sub(1)), surface, None)?;
                if let Some((fit, stats)) = &fit {
                    self.refreshes.push(Refresh {
                        arm: self.name.clone(),
                        day: today,
                        model: model.clone(),
                        kind: "scratch".into(),
                        users: fit.users.len(),
                        items: fit.items.len(),
                        interactions: stats.0,
                        epochs: stats.1,
                        seconds: t.elapsed().as_secs_f64(),
                    });
                }
                fit.map(|f| f.0)
            } else {
                self.fits[k].take()
            };
            let t = Instant::now();
            let fit = self.fit_window(world, log, window(today), surface, before.as_ref())?;
            let Some((mut fit, stats)) = fit else {
                self.fits[k] = None;
                continue;
            };
            if self.recipe.ranking == Ranking::Value {
                if let (Some(before), Some(yesterday)) = (&before, today.checked_sub(1)) {
                    if let Some(events) = log.get(yesterday as usize) {
                        fit.heads = self.fit_heads(before, events, surface);
                    }
                }
            }
            self.refreshes.push(Refresh {
                arm: self.name.clone(),
                day: today,
                model,
                kind: if before.is_some() { "warm" } else { "scratch" }.into(),
                users: fit.users.len(),
                items: fit.items.len(),
                interactions: stats.0,
                epochs: stats.1,
                seconds: t.elapsed().as_secs_f64(),
            });
            self.fits[k] = Some(fit);
        }
        self.fitted_once = true;
        if self.fits.iter().all(Option::is_none) {
            return Err(Error::Arm {
                arm: self.name.clone(),
                message: format!(
                    "no positive interaction in the {}-day training window before day {today}",
                    self.recipe.window_days
                ),
            });
        }
        Ok(())
    }

    /// Trains on the events of `days` (on `surface` only, if given), warm from
    /// `start` when given; `None` when there is nothing to train on. Returns
    /// the fit and (interactions, epochs).
    fn fit_window(
        &self,
        world: &World,
        log: &DayLog<'_>,
        days: std::ops::Range<usize>,
        surface: Option<usize>,
        start: Option<&Fit>,
    ) -> Result<Option<(Fit, (usize, usize))>> {
        let w = EngagementWeights::default();
        let (mut users, mut videos, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        for ev in &log[days.clone()] {
            let imp = crate::train::impressions(ev);
            for i in 0..ev.len() {
                if surface.is_some_and(|s| surface_index(ev.surface[i]) != s) {
                    continue;
                }
                users.push(ev.user_id[i]);
                videos.push(ev.video_id[i]);
                weights.push(w.weight(&imp, i));
            }
        }
        let data = TrainingData::from_triplets(&users, &videos, Some(&weights), w.min_positive)?;
        if data.matrix.nnz() == 0 {
            return Ok(None);
        }
        let p = &self.params;
        let (factors, epochs) = match start {
            None => (
                train_ials(&data.matrix, p, &mut TrainControl::default())?,
                p.epochs,
            ),
            Some(prev) => {
                let init = self.warm_start(&data, prev);
                let refresh = reelkit_ranker::TrainParams {
                    epochs: self.recipe.refresh_epochs,
                    ..p.get().clone()
                }
                .check()?;
                (
                    train_ials_from(&data.matrix, &refresh, init, &mut TrainControl::default())?,
                    refresh.epochs,
                )
            }
        };
        let item_counts = reelkit_ranker::item_counts(&data.matrix);
        let user_row = world
            .users
            .id
            .iter()
            .map(|&id| {
                data.users
                    .get(id)
                    .filter(|&r| data.matrix.row_len(r as usize) > 0)
            })
            .collect();
        let video_row = world
            .videos
            .id
            .iter()
            .map(|&id| data.items.get(id).filter(|&c| item_counts[c as usize] > 0))
            .collect();
        let mut fit = Fit {
            users: data.users.clone(),
            items: data.items.clone(),
            factors,
            item_counts,
            surface_users: Vec::new(),
            heads: Default::default(),
            video_row,
            user_row,
        };
        if self.unified && self.recipe.ranking == Ranking::Value {
            fit.surface_users = self.surface_tastes(&fit, log, days);
        }
        Ok(Some((fit, (data.matrix.nnz(), epochs))))
    }

    /// Yesterday's factors for known rows, small seeded random ones for new
    /// users and items.
    fn warm_start(&self, data: &TrainingData, prev: &Fit) -> Factors {
        let f = self.params.factors;
        let scale = self.params.init_scale as f64;
        let seed = self.params.seed;
        let rows = |ids: &IdMap, old: &IdMap, old_rows: &[f32], side: u64| -> Vec<f32> {
            let mut out = vec![0f32; ids.len() * f];
            for (r, row) in out.chunks_exact_mut(f).enumerate() {
                let id = ids.id(r as u32);
                match old.get(id) {
                    Some(o) => row.copy_from_slice(&old_rows[o as usize * f..(o as usize + 1) * f]),
                    None => {
                        let mut rng = Rng::stream(seed, &[TAG_INIT, side, id]);
                        row.iter_mut()
                            .for_each(|x| *x = ((rng.f64() - 0.5) * 2.0 * scale) as f32);
                    }
                }
            }
            out
        };
        Factors {
            dim: f,
            users: rows(&data.users, &prev.users, &prev.factors.users, 0),
            items: rows(&data.items, &prev.items, &prev.factors.items, 1),
            item_bias: vec![0.0; data.items.len()],
        }
    }

    /// Every user's taste per surface, folded in from their window's positive
    /// interactions on that surface with the fit's item factors fixed.
    fn surface_tastes(&self, fit: &Fit, log: &DayLog<'_>, days: std::ops::Range<usize>) -> Vec<f32> {
        let w = EngagementWeights::default();
        let f = fit.dim();
        let n_users = fit.users.len();
        let g = gram(&fit.factors.items, f);
        // Summed weight per (user row, surface, item row), positives only.
        let mut triples: Vec<(u32, u8, u32, f32)> = Vec::new();
        for ev in &log[days] {
            let imp = crate::train::impressions(ev);
            for i in 0..ev.len() {
                let (Some(u), Some(v)) = (fit.users.get(ev.user_id[i]), fit.items.get(ev.video_id[i]))
                else {
                    continue;
                };
                triples.push((u, surface_index(ev.surface[i]) as u8, v, w.weight(&imp, i)));
            }
        }
        triples.sort_unstable_by_key(|t| (t.0, t.1, t.2));
        let mut merged: Vec<(u32, u8, u32, f32)> = Vec::with_capacity(triples.len());
        for t in triples {
            match merged.last_mut() {
                Some(m) if (m.0, m.1, m.2) == (t.0, t.1, t.2) => m.3 += t.3,
                _ => merged.push(t),
            }
        }
        merged.retain(|t| t.3 > w.min_positive);
        // Ranges of (user, surface) groups.
        let mut starts: Vec<usize> = Vec::new();
        for (i, t) in merged.iter().enumerate() {
            if i == 0 || (merged[i - 1].0, merged[i - 1].1) != (t.0, t.1) {
                starts.push(i);
            }
        }
        starts.push(merged.len());
        let p = &self.params;
        let solved: Vec<(usize, Vec<f32>)> = starts
            .par_windows(2)
            .map(|r| {
                let group = &merged[r[0]..r[1]];
                let items: Vec<u32> = group.iter().map(|t| t.2).collect();
                let weights: Vec<f32> = group.iter().map(|t| t.3).collect();
                let x = fold_in(
                    &fit.factors.items,
                    &g,
                    f,
                    &items,
                    &weights,
                    p.alpha,
                    p.reg,
                    p.reg_exponent,
                );
                (group[0].0 as usize * SURFACES + group[0].1 as usize, x)
            })
            .collect();
        let mut out = vec![0f32; n_users * SURFACES * f];
        for (slot, x) in solved {
            out[slot * f..(slot + 1) * f].copy_from_slice(&x);
        }
        out
    }

    /// Value heads per surface fitted on `events` (a day the model `before`
    /// did not train on).
    fn fit_heads(
        &self,
        before: &Fit,
        events: &Events,
        surface: Option<usize>,
    ) -> [Option<Head>; SURFACES] {
        let w = EngagementWeights::default();
        let imp = crate::train::impressions(events);
        let k = if self.unified { 5 } else { 4 };
        let mut xtx = vec![[0f64; 25]; SURFACES];
        let mut xty = vec![[0f64; 5]; SURFACES];
        let mut n = [0usize; SURFACES];
        for i in 0..events.len() {
            let s = surface_index(events.surface[i]);
            if surface.is_some_and(|x| x != s) {
                continue;
            }
            let (Some(u), Some(v)) = (
                before.users.get(events.user_id[i]),
                before.items.get(events.video_id[i]),
            ) else {
                continue;
            };
            let (u, v) = (u as usize, v as usize);
            if before.item_counts[v] == 0 {
                continue;
            }
            let item = before.factors.item(v);
            let mut x = [0f64; 5];
            x[0] = 1.0;
            x[1] = reelkit_ranker::dot(before.factors.user(u), item) as f64;
            let mut j = 2;
            if self.unified {
                x[2] = reelkit_ranker::dot(before.surface_user(u, s), item) as f64;
                j = 3;
            }
            x[j] = (1.0 + before.item_counts[v] as f64).ln();
            x[j + 1] = before.factors.item_bias[v] as f64;
            let y = w.weight(&imp, i) as f64;
            for a in 0..k {
                xty[s][a] += x[a] * y;
                for b in 0..k {
                    xtx[s][a * 5 + b] += x[a] * x[b];
                }
            }
            n[s] += 1;
        }
        let mut heads: [Option<Head>; SURFACES] = Default::default();
        for s in 0..SURFACES {
            // A handful of impressions cannot fit a head: rank by the dot product.
            if n[s] < 50 * k {
                continue;
            }
            heads[s] = ridge(&xtx[s], &xty[s], k, n[s]).map(|coef| Head { coef, n: n[s] });
        }
        heads
    }
}

/// Ridge least squares on accumulated normal equations (no penalty on the
/// intercept; λ = 1e-6 · n keeps a near-constant feature from blowing up).
fn ridge(xtx: &[f64; 25], xty: &[f64; 5], k: usize, n: usize) -> Option<Vec<f64>> {
    let mut a = vec![vec![0f64; k + 1]; k];
    for r in 0..k {
        for c in 0..k {
            a[r][c] = xtx[r * 5 + c];
        }
        if r > 0 {
            a[r][r] += 1e-6 * n as f64;
        }
        a[r][k] = xty[r];
    }
    for c in 0..k {
        let p = (c..k).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        a.swap(c, p);
        if a[c][c].abs() < 1e-12 {
            return None;
        }
        for r in 0..k {
            if r != c {
                let f = a[r][c] / a[c][c];
                for j in c..=k {
                    a[r][j] -= f * a[c][j];
                }
            }
        }
    }
    let coef: Vec<f64> = (0..k).map(|r| a[r][k] / a[r][r]).collect();
    coef.iter().all(|c| c.is_finite()).then_some(coef)
}

impl Policy for TrainedPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn begin_day(&mut self, ctx: &DayContext<'_>) -> reelkit_sim::Result<()> {
        self.fallback.begin_day(ctx)?;
        let n_users = ctx.world.n_users();
        let n_videos = ctx.world.videos.len();
        let mut table_row = vec![u32::MAX; n_videos];
        for s in 0..SURFACES {
            self.list_of[s].clear();
            self.list_of[s].resize(n_users, u32::MAX);
            self.lists[s].clear();
            let Some(fit) = self.fit_for(s) else {
                continue;
            };
            let d = fit.dim();
            // The table: today's eligible videos on this surface that the model knows.
            let (mut rows, mut videos): (Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new());
            for &v in &ctx.eligible[s] {
                if let Some(r) = fit.video_row[v as usize] {
                    table_row[v as usize] = rows.len() as u32;
                    rows.push(r);
                    videos.push(v);
                }
            }
            let mut table = vec![0f32; rows.len() * d];
            for (t, &r) in table.chunks_exact_mut(d.max(1)).zip(&rows) {
                t.copy_from_slice(fit.factors.item(r as usize));
            }
            // Queries: users the model knows who come to this surface today.
            let mut who: Vec<usize> = Vec::new();
            let mut queries: Vec<Vec<f32>> = Vec::new();
            let mut excludes: Vec<Vec<u32>> = Vec::new();
            let mut terms: Option<(f64, f64)> = None;
            for visit in ctx.visits.iter().filter(|v| v.surfaces[s]) {
                let Some(row) = fit.user_row[visit.user] else {
                    continue;
                };
                let (q, bn, bb) = fit.query(row as usize, s, self.unified);
                terms = Some((bn, bb));
                let mut ex: Vec<u32> = visit
                    .seen
                    .iter()
                    .map(|&v| table_row[v as usize])
                    .filter(|&r| r != u32::MAX)
                    .collect();
                ex.sort_unstable();
                who.push(visit.user);
                queries.push(q);
                excludes.push(ex);
            }
            // The item term is the same for every query of a surface.
            let bias: Vec<f32> = match terms {
                Some((bn, bb)) => rows
                    .iter()
                    .map(|&r| {
                        let r = r as usize;
                        (bn * (1.0 + fit.item_counts[r] as f64).ln()
                            + bb * fit.factors.item_bias[r] as f64) as f32
                    })
                    .collect(),
                None => Vec::new(),
            };
            for &v in &ctx.eligible[s] {
                table_row[v as usize] = u32::MAX;
            }
            if who.is_empty() || rows.is_empty() {
                continue;
            }
            let items = ItemTable::new(d, &table, Some(&bias));
            for start in (0..who.len()).step_by(QUERY_BATCH) {
                let end = (start + QUERY_BATCH).min(who.len());
                let qs: Vec<&[f32]> = queries[start..end].iter().map(Vec::as_slice).collect();
                let ex: Vec<&[u32]> = excludes[start..end].iter().map(Vec::as_slice).collect();
                let ks = vec![DEPTH; end - start];
                let tops = items.top_k_batch(&qs, &ks, &ex);
                for (user, top) in who[start..end].iter().zip(tops) {
                    self.list_of[s][*user] = self.lists[s].len() as u32;
                    self.lists[s].push(top.iter().map(|x| videos[x.item as usize]).collect());
                }
            }
        }
        Ok(())
    }

    fn fill(&self, req: &FeedRequest<'_>, scratch: &mut Scratch, rng: &mut Rng, out: &mut Vec<u32>) {
        let s = surface_index(req.surface);
        let slot = self.list_of[s].get(req.user).copied().unwrap_or(u32::MAX);
        if slot == u32::MAX {
            return self.fallback.fill(req, scratch, rng, out);
        }
        take_unseen(
            &self.lists[s][slot as usize],
            &mut scratch.cursor[s],
            req.seen,
            req.n,
            out,
        );
        if out.len() < req.n {
            // The list is used up: trailing popularity for the rest.
            let mut own = Scratch::default();
            self.fallback.fill(req, &mut own, rng, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_recovers_a_linear_model() {
        // y = 2 + 3 x1 - x2 on a grid.
        let (mut xtx, mut xty, mut n) = ([0f64; 25], [0f64; 5], 0);
        for i in 0..20 {
            for j in 0..20 {
                let x = [1.0, i as f64 / 10.0, (j as f64 / 7.0).sin()];
                let y = 2.0 + 3.0 * x[1] - x[2];
                for a in 0..3 {
                    xty[a] += x[a] * y;
                    for b in 0..3 {
                        xtx[a * 5 + b] += x[a] * x[b];
                    }
                }
                n += 1;
            }
        }
        let c = ridge(&xtx, &xty, 3, n).expect("solvable");
        for (got, want) in c.iter().zip([2.0, 3.0, -1.0]) {
            assert!((got - want).abs() < 1e-3, "{c:?}");
        }
        // A feature that never varies from zero makes the system singular
        // once its ridge is absent: the intercept alone is unpenalised.
        assert!(ridge(&[0.0; 25], &[0.0; 5], 2, 0).is_none());
    }
}
