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
//! **Ranking.** `ranking = "dot"` ranks by `u·v` (plus the item bias).
//! `"surface"` gives a unified recipe a linear head per surface predicting an
//! impression's engagement weight (the quantity the model trains on) from
//! `[1, u·v, p_s·v]`, where `u` is the user's embedding and `p_s` their taste
//! on surface `s`, folded in (exact least squares on the fixed item factors)
//! from their window's impressions on that surface: the head learns, per
//! surface, how far to trust the global taste against the surface's own.
//! (A siloed model is surface-specific already; for it `"surface"` is
//! `"dot"`.) `"value"` adds the video's log training count and its bias as
//! features. Heads are fitted by ridge least squares on the last day's
//! impressions scored by the model that had not trained on that day (for the
//! first fit, the one trained a day earlier), so they learn how features of
//! unseen videos predict engagement, which is what serving asks. The score
//! stays linear in the item vectors, `(β_u u + β_p p_s)·v + β_n ln(1 + n_v) +
//! β_b b_v`, so retrieval and ranking are one exact top-K.
//!
//! **Serving.** At the start of each day the simulator says which users will
//! come to which surfaces; every (user, surface) list (the best [`DEPTH`]
//! unseen eligible videos) is computed in one batched top-K per surface, and
//! the day's pages walk those lists.

use std::time::Instant;

use reelkit_logs::{Events, Surface};
use reelkit_ranker::{
    algorithms::{keep_above, solve_rows, train_ials, train_ials_from, EngagementWeights},
    per_surface::{HeldOutScore, SurfaceData},
    retrieval::ItemTable,
    Csr, Factors, IdMap, TrainControl, TrainingData, ValidTrainParams,
};
use reelkit_sim::{
    policies::{take_unseen, DayContext, FeedRequest, PopularPolicy, Scratch},
    population::SURFACES,
    random::Rng,
    Policy, World,
};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::recipe::{Judge, Retrain, Specific, Trained, UserVectors};

mod heads;
mod hier;
use heads::{fit_heads, Features, Head};
use hier::pool_days;

/// Videos ranked per user, surface and day before walking the list.
const DEPTH: usize = 400;

/// The row of each of the world's `ids` in `map`, where it has one that
/// `known` accepts (a row with data to rank by).
fn rows_of(ids: &[u64], map: &IdMap, known: impl Fn(u32) -> bool) -> Vec<Option<u32>> {
    ids.iter()
        .map(|&id| map.get(id).filter(|&r| known(r)))
        .collect()
}

/// The row key of a user's vector on surface `s` (user ids are below 2⁶²).
fn surface_key(user_id: u64, s: usize) -> u64 {
    (user_id << 2) | s as u64
}

/// Queries per batched top-K call (bounds the memory of one call).
const QUERY_BATCH: usize = 4096;

const TAG_INIT: u64 = 0x1A8;

/// Standard errors by which a video share must beat a more shared one on
/// the pooled held-out days to be kept (the users' shares take the best,
/// 0). A noisy choice of the videos' shares splits every video's evidence:
/// on the second world at divergence 0 the best share jumped between 0 and
/// 1 from day to day and cost 11 points overall against one vector per video.
const ITEM_TOLERANCE: f64 = 1.0;

/// Held-out days pooled before the videos' shares leave 0 (one day's
/// evidence chose 1 on reels and watch at divergence 0, where 0 is right).
const ITEM_MIN_DAYS: usize = 3;

/// What one (re)fit of one model did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refresh {
    /// The arm.
    pub arm: String,
    /// The simulated day it serves.
    pub day: u32,
    /// `all` (unified) or the surface of a siloed model.
    pub model: String,
    /// `scratch` (first fit, on the window a day earlier), `warm`.
    pub kind: String,
    /// Users with at least one interaction in the training window.
    pub users: usize,
    /// Items with at least one interaction in the training window.
    pub items: usize,
    /// Weighted (user, item) pairs trained on.
    pub interactions: usize,
    /// Epochs run.
    pub epochs: usize,
    /// Hierarchical unified models: each surface's specific share `φ_s`
    /// (reels, feed, watch) this fit used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub specific: Option<Vec<f32>>,
    /// Hierarchical unified models: each surface's video specific share
    /// `ψ_s` this fit used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_specific: Option<Vec<f32>>,
    /// Wall time of its parts (not deterministic: not serialised here).
    #[serde(skip)]
    pub time: FitTime,
}

/// Where the time of one fit went, seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct FitTime {
    /// Gathering the window's weighted interactions.
    pub data: f64,
    /// iALS sweeps.
    pub train: f64,
    /// Folding in users' tastes (per surface, or overall).
    pub fold_in: f64,
    /// Fitting the value heads.
    pub heads: f64,
    /// Choosing the specific shares on the held-out day.
    pub choose: f64,
}

impl FitTime {
    /// The whole fit.
    pub fn total(&self) -> f64 {
        self.data + self.train + self.fold_in + self.heads + self.choose
    }
}

/// What a fit reports besides the model.
#[derive(Debug, Clone, Copy)]
struct FitStats {
    interactions: usize,
    epochs: usize,
    time: FitTime,
}

/// One fitted model and what serving needs of it.
#[derive(Debug, Clone)]
struct Fit {
    users: IdMap,
    items: IdMap,
    factors: Factors,
    item_counts: Vec<u32>,
    /// Hierarchical: `n_items × 3`, each video's positives on each surface
    /// (its popularity there; empty: `item_counts` on every surface).
    surface_counts: Vec<u32>,
    /// Unified: `n_users × 3 × dim` surface tastes (zeros without history there).
    surface_users: Vec<f32>,
    /// Hierarchical: `n_items × 3 × dim`, each video's vector on each
    /// surface (empty: `factors.items` on every surface).
    surface_items: Vec<f32>,
    /// Value heads per surface (`None`: rank by the dot product).
    heads: [Option<Head>; SURFACES],
    /// World video index → item row (videos with a positive interaction).
    video_row: Vec<Option<u32>>,
    /// World user index → user row (users with a positive interaction).
    user_row: Vec<Option<u32>>,
    /// With per-surface user vectors: the trained rows' keys (`user_id · 4 +
    /// surface`), whose vectors are `surface_users` (for the next warm start).
    keys: Option<IdMap>,
    /// Hierarchical: the data it trained on (the next day chooses its shares
    /// by re-solving these users), and its shares. A user's vector on a
    /// surface is then `surface_users`, their shared taste `factors.users`.
    hier: Option<Box<Hier>>,
}

/// What a hierarchical fit keeps besides its vectors.
#[derive(Debug, Clone)]
struct Hier {
    /// The data it trained on (the next day chooses its shares by
    /// re-solving these users and videos).
    data: SurfaceData,
    /// The users' specific shares it used.
    specific: Vec<f32>,
    /// The videos' shares it used.
    item_specific: Vec<f32>,
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

    /// Video `row`'s positives on surface `s` (its popularity feature there).
    fn popularity(&self, row: usize, s: usize) -> u32 {
        if self.surface_counts.is_empty() {
            self.item_counts[row]
        } else {
            self.surface_counts[row * SURFACES + s]
        }
    }

    /// The video vector a dot product on surface `s` uses.
    fn item_vector(&self, row: usize, s: usize) -> &[f32] {
        if self.surface_items.is_empty() {
            self.factors.item(row)
        } else {
            let d = self.dim();
            let at = (row * SURFACES + s) * d;
            &self.surface_items[at..at + d]
        }
    }

    /// The user vector a dot product on surface `s` uses: a hierarchical
    /// model's vector on the surface, else the user's one vector.
    fn user_vector(&self, row: usize, s: usize) -> &[f32] {
        if self.hier.is_some() {
            self.surface_user(row, s)
        } else {
            self.factors.user(row)
        }
    }

    /// The query vector of a user row on surface `s`, and the item term's
    /// coefficients of `(ln(1 + n_v), b_v)`.
    fn query(&self, row: usize, s: usize) -> (Vec<f32>, f64, f64) {
        let u = self.user_vector(row, s);
        match &self.heads[s] {
            None => (u.to_vec(), 0.0, 1.0),
            Some(h) if h.surface != 0.0 => {
                let p = self.surface_user(row, s);
                let (bu, bp) = (h.user as f32, h.surface as f32);
                let q = u.iter().zip(p).map(|(a, b)| bu * a + bp * b).collect();
                (q, h.popularity, h.bias)
            }
            Some(h) => {
                let bu = h.user as f32;
                (u.iter().map(|a| bu * a).collect(), h.popularity, h.bias)
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
    /// Hierarchical: the specific shares the next fit uses.
    specific: Vec<f32>,
    /// Hierarchical: the videos' specific shares the next fit uses (zeros
    /// until the first choice: one vector per video).
    item_specific: Vec<f32>,
    /// Hierarchical per-surface videos: the held-out evidence of their
    /// shares, as `evidence`.
    item_evidence: std::collections::VecDeque<Vec<HeldOutScore>>,
    /// Hierarchical auto shares: the held-out evidence of the last
    /// `window_days` days, each day's per grid value (newest last).
    evidence: std::collections::VecDeque<Vec<HeldOutScore>>,
    /// Per surface: user index → index into `lists[s]` (`u32::MAX`: none).
    list_of: [Vec<u32>; SURFACES],
    lists: [Vec<Vec<u32>>; SURFACES],
    /// Every fit so far.
    pub refreshes: Vec<Refresh>,
}

impl TrainedPolicy {
    /// The arm's training settings for a warm-started day: its own, with
    /// the recipe's refresh epochs.
    fn refresh_params(&self) -> Result<ValidTrainParams> {
        Ok(reelkit_ranker::TrainParams {
            epochs: self.recipe.refresh_epochs,
            ..self.params.get().clone()
        }
        .check()?)
    }

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
            specific: recipe.specific.initial(),
            item_specific: match &recipe.item_specific {
                Specific::Auto { .. } => vec![0.0; SURFACES],
                Specific::Fixed(v) => v.clone(),
            },
            evidence: Default::default(),
            item_evidence: Default::default(),
            list_of: Default::default(),
            lists: Default::default(),
            refreshes: Vec::new(),
        })
    }

    /// Whether this recipe fits the hierarchical model.
    fn hier(&self) -> bool {
        self.unified && self.recipe.user_vectors == UserVectors::Hierarchical
    }

    /// The fit serving surface `s`.
    fn fit_for(&self, s: usize) -> Option<&Fit> {
        self.fits[if self.unified { 0 } else { s }].as_ref()
    }

    /// Fits or refreshes the models before simulated day `today`, on the
    /// observed events of the days before it (`log[d]` is day `d`'s).
    /// `judge` is the log held-out settings are judged on (day `d` at `d`): a
    /// log no model of this recipe chose, such as the control arm's; a recipe
    /// with `shares_judged_on = "own"` judges on `log` instead.
    pub(crate) fn refresh(
        &mut self,
        world: &World,
        log: &DayLog<'_>,
        judge: &DayLog<'_>,
        today: u32,
    ) -> Result<()> {
        if self.fitted_once && self.recipe.retrain == Retrain::Never {
            return Ok(());
        }
        let judge = match self.recipe.shares_judged_on {
            Judge::Control => judge,
            Judge::Own => log,
        };
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
                None => "all",
                Some(s) => Surface::ALL[s].as_str(),
            };
            let record = |kind: &str, fit: &Fit, stats: FitStats| Refresh {
                arm: self.name.clone(),
                day: today,
                model: model.to_string(),
                kind: kind.to_string(),
                users: fit.users.len(),
                items: fit.items.len(),
                interactions: stats.interactions,
                epochs: stats.epochs,
                specific: fit.hier.as_ref().map(|h| h.specific.clone()),
                item_specific: fit.hier.as_ref().map(|h| h.item_specific.clone()),
                time: stats.time,
            };
            // The model whose features score yesterday's impressions: one that
            // did not train on them.
            let before = if first {
                let fit =
                    self.fit_window(world, log, window(today.saturating_sub(1)), surface, None)?;
                if let Some((fit, stats)) = &fit {
                    let r = record("scratch", fit, *stats);
                    self.refreshes.push(r);
                }
                fit.map(|f| f.0)
            } else {
                self.fits[k].take()
            };
            // Hierarchical: each surface's share chosen on yesterday's
            // impressions, scored by the model that had not trained on them.
            let mut choose = 0.0;
            let auto = |s: &Specific| matches!(s, Specific::Auto { .. });
            if let (Some(before), Some(yesterday), true) = (
                before.as_ref().filter(|b| b.hier.is_some()),
                today.checked_sub(1).and_then(|d| judge.get(d as usize)),
                auto(&self.recipe.specific) || auto(&self.recipe.item_specific),
            ) {
                let t = Instant::now();
                if let Some((users, items)) = self.choose_specific(before, yesterday)? {
                    let days = self.recipe.window_days as usize;
                    if let Some(users) = users {
                        self.specific = pool_days(&mut self.evidence, users, days, 0.0);
                    }
                    if let Some(items) = items {
                        let psi = pool_days(&mut self.item_evidence, items, days, ITEM_TOLERANCE);
                        // One vector per video until the evidence spans days.
                        if self.item_evidence.len() >= ITEM_MIN_DAYS.min(days) {
                            self.item_specific = psi;
                        }
                    }
                }
                choose = t.elapsed().as_secs_f64();
            }
            let fit = self.fit_window(world, log, window(today), surface, before.as_ref())?;
            let Some((mut fit, mut stats)) = fit else {
                self.fits[k] = None;
                continue;
            };
            stats.time.choose = choose;
            if let Some(features) = Features::of(self.recipe.ranking, self.unified, self.hier()) {
                if let (Some(before), Some(yesterday)) = (&before, today.checked_sub(1)) {
                    if let Some(events) = log.get(yesterday as usize) {
                        let t = Instant::now();
                        fit.heads = fit_heads(features, before, events, surface);
                        stats.time.heads = t.elapsed().as_secs_f64();
                    }
                }
            }
            let r = record(
                if before.is_some() { "warm" } else { "scratch" },
                &fit,
                stats,
            );
            self.refreshes.push(r);
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
    ) -> Result<Option<(Fit, FitStats)>> {
        if self.hier() {
            return self.fit_hier(world, log, days, start);
        }
        let mut time = FitTime::default();
        let t = Instant::now();
        let w = EngagementWeights::default();
        // Rows are users, or (user, surface) pairs with per-surface vectors.
        let keyed = self.unified && self.recipe.user_vectors == UserVectors::PerSurface;
        let (mut rows, mut videos, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        for ev in &log[days.clone()] {
            let imp = crate::train::impressions(ev);
            for i in 0..ev.len() {
                let s = ev.surface[i].index();
                if surface.is_some_and(|x| x != s) {
                    continue;
                }
                rows.push(if keyed {
                    surface_key(ev.user_id[i], s)
                } else {
                    ev.user_id[i]
                });
                videos.push(ev.video_id[i]);
                weights.push(w.weight(&imp, i));
            }
        }
        let data = TrainingData::from_triplets(&rows, &videos, Some(&weights), w.min_positive)?;
        if data.matrix.nnz() == 0 {
            return Ok(None);
        }
        time.data = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let p = &self.params;
        let (factors, epochs) = match start {
            None => (
                train_ials(&data.matrix, p, &mut TrainControl::default())?,
                p.epochs,
            ),
            Some(prev) => {
                let init = self.warm_start(&data, prev);
                let refresh = self.refresh_params()?;
                (
                    train_ials_from(&data.matrix, &refresh, init, &mut TrainControl::default())?,
                    refresh.epochs,
                )
            }
        };
        let item_counts = reelkit_ranker::evaluation::item_counts(&data.matrix);
        let video_row = rows_of(&world.videos.id, &data.items, |c| {
            item_counts[c as usize] > 0
        });
        time.train = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let interactions = data.matrix.nnz();
        let surface_feature =
            Features::of(self.recipe.ranking, self.unified, false).is_some_and(|f| f.surface);
        let fit = if keyed {
            // Users in order of their first row; a user is known when any of
            // their rows has a positive.
            let mut users = IdMap::new();
            let mut known = Vec::new();
            for (r, &key) in data.users.ids().iter().enumerate() {
                let u = users.insert(key >> 2) as usize;
                known.resize(users.len(), false);
                known[u] |= data.matrix.row_len(r) > 0;
            }
            let f = factors.dim;
            let mut surface_users = vec![0f32; users.len() * SURFACES * f];
            for (r, &key) in data.users.ids().iter().enumerate() {
                if let Some(u) = users.get(key >> 2) {
                    let at = (u as usize * SURFACES + (key & 3) as usize) * f;
                    surface_users[at..at + f].copy_from_slice(factors.user(r));
                }
            }
            let user_row = rows_of(&world.users.id, &users, |u| known[u as usize]);
            // The previous fit's overall taste (its `factors.users`) warm-starts this one.
            let global =
                self.fold_ins(&factors.items, &users, &data.items, log, days, false, start)?;
            Fit {
                users,
                items: data.items.clone(),
                factors: Factors {
                    users: global,
                    ..factors
                },
                item_counts,
                surface_counts: Vec::new(),
                surface_users,
                surface_items: Vec::new(),
                heads: Default::default(),
                video_row,
                user_row,
                keys: Some(data.users),
                hier: None,
            }
        } else {
            let user_row = rows_of(&world.users.id, &data.users, |r| {
                data.matrix.row_len(r as usize) > 0
            });
            let surface_users = if surface_feature {
                self.fold_ins(
                    &factors.items,
                    &data.users,
                    &data.items,
                    log,
                    days,
                    true,
                    start,
                )?
            } else {
                Vec::new()
            };
            Fit {
                users: data.users,
                items: data.items,
                factors,
                item_counts,
                surface_counts: Vec::new(),
                surface_users,
                surface_items: Vec::new(),
                heads: Default::default(),
                video_row,
                user_row,
                keys: None,
                hier: None,
            }
        };
        time.fold_in = t.elapsed().as_secs_f64();
        Ok(Some((
            fit,
            FitStats {
                interactions,
                epochs,
                time,
            },
        )))
    }

    /// A new row's starting vector: small, seeded by the row's side (0
    /// users, 1 videos) and id, the same in every refit.
    fn init_row(&self, side: u64, id: u64, row: &mut [f32]) {
        let scale = self.params.init_scale as f64;
        let mut rng = Rng::stream(self.params.seed, &[TAG_INIT, side, id]);
        row.iter_mut()
            .for_each(|x| *x = ((rng.f64() - 0.5) * 2.0 * scale) as f32);
    }

    /// Yesterday's factors for known rows, small seeded random ones for new
    /// users and items.
    fn warm_start(&self, data: &TrainingData, prev: &Fit) -> Factors {
        let f = self.params.factors;
        fn rows<'a>(
            this: &TrainedPolicy,
            ids: &IdMap,
            old: impl Fn(u64) -> Option<&'a [f32]>,
            side: u64,
        ) -> Vec<f32> {
            let f = this.params.factors;
            let mut out = vec![0f32; ids.len() * f];
            for (r, row) in out.chunks_exact_mut(f).enumerate() {
                let id = ids.id(r as u32);
                match old(id) {
                    Some(o) => row.copy_from_slice(o),
                    None => this.init_row(side, id, row),
                }
            }
            out
        }
        let old_user = |key: u64| -> Option<&[f32]> {
            match &prev.keys {
                // Per-surface rows live in `surface_users`.
                Some(keys) => {
                    keys.get(key)?;
                    let u = prev.users.get(key >> 2)? as usize;
                    Some(prev.surface_user(u, (key & 3) as usize))
                }
                None => prev.users.get(key).map(|u| prev.factors.user(u as usize)),
            }
        };
        let old_item = |id: u64| prev.items.get(id).map(|i| prev.factors.item(i as usize));
        Factors {
            dim: f,
            users: rows(self, &data.users, old_user, 0),
            items: rows(self, &data.items, old_item, 1),
            item_bias: vec![0.0; data.items.len()],
        }
    }

    /// Users' tastes folded in from their window's positive interactions with
    /// the item factors `items` fixed: per surface (`n_users × 3 × dim`, zeros
    /// where a user has none there) or over every surface (`n_users × dim`).
    /// One conjugate-gradient half-sweep, warm-started from `prev`'s vectors
    /// of the same users (`cg_steps` steps) or from zeros (`2·cg_steps + 2`).
    #[allow(clippy::too_many_arguments)]
    fn fold_ins(
        &self,
        items: &[f32],
        users: &IdMap,
        item_ids: &IdMap,
        log: &DayLog<'_>,
        days: std::ops::Range<usize>,
        by_surface: bool,
        prev: Option<&Fit>,
    ) -> Result<Vec<f32>> {
        let w = EngagementWeights::default();
        let f = self.params.factors;
        let slots = if by_surface { SURFACES } else { 1 };
        let (mut rows, mut cols, mut vals) = (Vec::new(), Vec::new(), Vec::new());
        for ev in &log[days] {
            let imp = crate::train::impressions(ev);
            for i in 0..ev.len() {
                let (Some(u), Some(v)) = (users.get(ev.user_id[i]), item_ids.get(ev.video_id[i]))
                else {
                    continue;
                };
                let slot = if by_surface { ev.surface[i].index() } else { 0 };
                rows.push((u as usize * slots + slot) as u32);
                cols.push(v);
                vals.push(w.weight(&imp, i));
            }
        }
        let m = Csr::from_triplets(users.len() * slots, item_ids.len(), &rows, &cols, &vals);
        let m = keep_above(&m, w.min_positive);
        let mut start = vec![0f32; users.len() * slots * f];
        let mut warm = false;
        if let Some(prev) = prev {
            for (r, &id) in users.ids().iter().enumerate() {
                let Some(o) = prev.users.get(id) else {
                    continue;
                };
                for s in 0..slots {
                    let old = if by_surface {
                        if prev.surface_users.is_empty() {
                            continue;
                        }
                        prev.surface_user(o as usize, s)
                    } else {
                        prev.factors.user(o as usize)
                    };
                    let at = (r * slots + s) * f;
                    start[at..at + f].copy_from_slice(old);
                    warm = true;
                }
            }
        }
        let steps = if warm {
            self.params.cg_steps
        } else {
            2 * self.params.cg_steps + 2
        };
        Ok(solve_rows(&m, items, &self.params, start, steps)?)
    }
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
                t.copy_from_slice(fit.item_vector(r as usize, s));
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
                // A user with no taste on the surface (new there, and the
                // surface's taste all its own): popularity, as for a user
                // the model does not know.
                if fit.user_vector(row as usize, s).iter().all(|&x| x == 0.0) {
                    continue;
                }
                let (q, bn, bb) = fit.query(row as usize, s);
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
                        (bn * (1.0 + fit.popularity(r, s) as f64).ln()
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

    fn fill(&self, req: &FeedRequest<'_>, state: &mut Scratch, rng: &mut Rng, out: &mut Vec<u32>) {
        let s = req.surface.index();
        let slot = self.list_of[s].get(req.user).copied().unwrap_or(u32::MAX);
        if slot == u32::MAX {
            return self.fallback.fill(req, state, rng, out);
        }
        take_unseen(
            &self.lists[s][slot as usize],
            &mut state.cursor[s],
            req.seen,
            req.n,
            out,
        );
        // The list is used up: trailing popularity for the rest.
        self.fallback.fill_rest(req, rng, out);
    }
}
