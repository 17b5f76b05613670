//! Training a ranker on an event log: the engagement weighting, the value
//! model and the model file's contents (shared by `reelkit train`, `tune` and
//! the experiment loop).

use reelkit_logs::{Events, Surface};
use reelkit_ranker::{
    algorithms::{EngagementWeights, Impressions},
    per_surface::{
        choose_item_specific, choose_specific, surface_vectors, train_surface_ials,
        train_surface_ials_from, HeldOut, SpecificChoice, SurfaceData, SurfaceParams,
    },
    value_model::{ValueModel, ValueSamples, ValueWeights},
    Factors, Model, TrainControl, TrainParams, TrainingData,
};

use crate::error::{Error, Result};
use crate::recipe::Specific;

/// The ranker's view of an event log (columns borrowed, all of one length).
pub(crate) fn impressions(ev: &Events) -> Impressions<'_> {
    Impressions {
        user_id: &ev.user_id,
        video_id: &ev.video_id,
        duration_ms: &ev.duration_ms,
        watch_ms: &ev.watch_ms,
        liked: &ev.liked,
        shared: &ev.shared,
        commented: &ev.commented,
        followed: &ev.followed,
    }
}

/// Engagement weight of every impression of a log.
pub fn event_weights(ev: &Events, w: &EngagementWeights) -> Vec<f32> {
    let imp = impressions(ev);
    (0..ev.len()).map(|i| w.weight(&imp, i)).collect()
}

/// Fits the value model on impressions of users and videos the model knows.
fn fit_value_model(
    ev: &Events,
    data: &TrainingData,
    f: &Factors,
    item_counts: &[u32],
) -> ValueModel {
    let mut s = ValueSamples::default();
    for i in 0..ev.len() {
        let (Some(u), Some(v)) = (
            data.users.get(ev.user_id[i]),
            data.items.get(ev.video_id[i]),
        ) else {
            continue;
        };
        let (u, v) = (u as usize, v as usize);
        s.dot
            .push(reelkit_ranker::retrieval::dot(f.user(u), f.item(v)));
        s.count.push(item_counts[v]);
        s.bias.push(f.item_bias[v]);
        s.watch_fraction
            .push(ev.watch_ms[i] as f32 / ev.duration_ms[i].max(1) as f32);
        s.liked.push(ev.liked[i]);
        s.shared.push(ev.shared[i]);
    }
    ValueModel::fit(&s, ValueWeights::default())
}

/// A model from trained factors: interaction counts from `data`, and a value
/// model fitted on `events` when given. `source` says what produced it.
pub fn build_model(
    data: &TrainingData,
    factors: Factors,
    params: TrainParams,
    events: Option<&Events>,
    source: String,
) -> Model {
    let mut model = Model::new(data, factors, params);
    model.meta.value_model =
        events.map(|ev| fit_value_model(ev, data, &model.factors, &model.item_counts));
    model.meta.source = source;
    model
}

/// Trains a ranker on an event log (engagement-weighted), with a value model
/// fitted on the same impressions. An error when no impression is a positive.
pub fn train_on_events(events: &Events, params: &TrainParams, source: &str) -> Result<Model> {
    let data = TrainingData::from_impressions(&impressions(events), &EngagementWeights::default())?;
    let checked = params.clone().check()?;
    let factors = reelkit_ranker::train(&data.matrix, &checked, &mut TrainControl::default())?;
    Ok(build_model(
        &data,
        factors,
        params.clone(),
        Some(events),
        source.to_string(),
    ))
}

/// Offline evaluation on a time split: NDCG@k, recall@k… of a ranker trained
/// on the events before `cutoff_ms`, against popularity, on the positives
/// after it (full catalogue, training items excluded).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Offline {
    /// The trained ranker's metrics.
    pub model: reelkit_ranker::evaluation::Metrics,
    /// Popularity's metrics on the same split (the baseline).
    pub popularity: reelkit_ranker::evaluation::Metrics,
}

/// Trains on the events before `cutoff_ms` and evaluates on those after it.
pub fn offline_eval(
    events: &Events,
    cutoff_ms: i64,
    params: &TrainParams,
    k: usize,
) -> Result<Offline> {
    let w = EngagementWeights::default();
    let weights = event_weights(events, &w);
    let split = reelkit_ranker::evaluation::split_by_time(
        &events.user_id,
        &events.video_id,
        &weights,
        &events.ts_ms,
        cutoff_ms,
        w.min_positive,
    )?;
    let f = reelkit_ranker::train(
        &split.train.matrix,
        &params.clone().check()?,
        &mut TrainControl::default(),
    )?;
    let counts = reelkit_ranker::evaluation::item_counts(&split.train.matrix);
    let table = reelkit_ranker::retrieval::ItemTable::new(f.dim, &f.items, Some(&f.item_bias));
    let (train, test) = (&split.train.matrix, &split.test);
    Ok(Offline {
        model: reelkit_ranker::evaluation::evaluate_embeddings(
            &table, &f.users, train, test, k, &counts,
        ),
        popularity: reelkit_ranker::evaluation::evaluate_popularity(train, test, k, &counts),
    })
}

/// The engagement-weighted impressions of `days`, keyed by (user, surface):
/// what a per-surface model trains on.
pub(crate) fn surface_data(days: &[&Events]) -> Result<SurfaceData> {
    let w = EngagementWeights::default();
    let n: usize = days.iter().map(|e| e.len()).sum();
    let (mut users, mut surfaces, mut videos, mut weights) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ev in days {
        let imp = impressions(ev);
        for i in 0..ev.len() {
            users.push(ev.user_id[i]);
            surfaces.push(ev.surface[i].index() as u8);
            videos.push(ev.video_id[i]);
            weights.push(w.weight(&imp, i));
        }
    }
    Ok(SurfaceData::from_triplets(
        &users,
        &surfaces,
        &videos,
        Some(&weights),
        Surface::ALL.len(),
        w.min_positive,
    )?)
}

/// The impressions of `events` a per-surface model trained on `data` can
/// judge (known user and video), with their engagement weights as gains:
/// `(user row, surface, item row, gain)` columns.
///
/// A gain is the impression's weight less the mean weight of the video's
/// impressions on that surface that day (when it has more than one): what
/// this user liked more or less than the others shown it. The shares are
/// judged on the order of what the log's policy showed — popular videos,
/// for a control on `popular` — and there the raw weights rank by the
/// video's general appeal, which a taste pooled over every surface predicts
/// best whatever the divergence: the raw gains chose φ = 0.1 on every surface
/// of a world with independent tastes. Centred (small scale, divergence
/// 0.5 / 1, unified vs siloed true watch time): reels −1.2% → +2.7% /
/// +0.0% → +1.9%, watch +3.7% → +5.9% / −5.3% → −2.8%; divergence 0
/// unchanged (+29%).
pub(crate) fn held_out(
    data: &SurfaceData,
    events: &Events,
    keep_item: impl Fn(u32) -> bool,
) -> (Vec<u32>, Vec<u8>, Vec<u32>, Vec<f32>) {
    let w = EngagementWeights::default();
    let imp = impressions(events);
    let (mut user, mut surface, mut item, mut gain) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..events.len() {
        let (Some(u), Some(v)) = (
            data.users.get(events.user_id[i]),
            data.items.get(events.video_id[i]),
        ) else {
            continue;
        };
        if !keep_item(v) {
            continue;
        }
        user.push(u);
        surface.push(events.surface[i].index() as u8);
        item.push(v);
        gain.push(w.weight(&imp, i));
    }
    let mut mean: std::collections::HashMap<(u32, u8), (f64, u32)> = Default::default();
    for ((&v, &s), &g) in item.iter().zip(&surface).zip(&gain) {
        let e = mean.entry((v, s)).or_default();
        e.0 += g as f64;
        e.1 += 1;
    }
    for ((&v, &s), g) in item.iter().zip(&surface).zip(gain.iter_mut()) {
        let (sum, n) = mean[&(v, s)];
        if n > 1 {
            *g -= (sum / n as f64) as f32;
        }
    }
    (user, surface, item, gain)
}

/// A per-surface model trained on an event log, and how its shares were
/// chosen.
#[derive(Debug)]
pub struct SurfaceFit {
    /// The model (user vectors per surface; `reels, feed, watch`).
    pub model: Model,
    /// With the users' shares `Specific::Auto`: the held-out scores of every
    /// share tried.
    pub choice: Option<SpecificChoice>,
    /// With the videos' shares `Specific::Auto`: the same for them.
    pub item_choice: Option<SpecificChoice>,
}

/// Trains a per-surface model on an event log
/// ([`reelkit_ranker::per_surface::train_surface_ials`]): each surface's
/// specific share for users (`specific`, `φ`) and for videos
/// (`item_specific`, `ψ`; 0 everywhere is one vector per video).
///
/// With either share `Specific::Auto` the last UTC day of the log is held
/// out: the model is fitted on the days before it with the users' shares at
/// their initial value and one vector per video, the shares left to `auto`
/// are chosen on the held-out day's impressions
/// ([`reelkit_ranker::per_surface::choose_specific`], and
/// [`choose_item_specific`], which keeps a surface's videos on the shared
/// vectors unless a share of their own is better by more than one standard
/// error; the log's own policy chose the impressions, not this model), then
/// the model is fitted on every day, warm from the first fit, with the
/// chosen shares. A value model is fitted on the impressions, scored with
/// each impression's surface vectors.
pub fn train_surface_on_events(
    events: &Events,
    params: &TrainParams,
    specific: &Specific,
    item_specific: &Specific,
    source: &str,
) -> Result<SurfaceFit> {
    let checked = params.clone().check()?;
    let ns = Surface::ALL.len();
    let fixed = |s: &Specific| match s {
        Specific::Fixed(v) => Some(v.clone()),
        Specific::Auto { .. } => None,
    };
    let (mut phi, mut psi) = (fixed(specific), fixed(item_specific));
    let (mut choice, mut item_choice, mut start) = (None, None, None);
    if phi.is_none() || psi.is_none() {
        let day = |ts: i64| ts.div_euclid(86_400_000);
        let last = events.ts_ms.iter().map(|&t| day(t)).max();
        let first = events.ts_ms.iter().map(|&t| day(t)).min();
        let (Some(last), Some(first)) = (last, first) else {
            return Err(Error::Ranker(reelkit_ranker::Error::Empty));
        };
        if first == last {
            return Err(Error::Input(
                "choosing the specific shares holds out the log's last day, and this log \
                 has one day: give the shares (--specific and --item-specific)"
                    .into(),
            ));
        }
        let before = subset(events, |i| day(events.ts_ms[i]) < last);
        let held = subset(events, |i| day(events.ts_ms[i]) == last);
        let data = surface_data(&[&before])?;
        let sp = SurfaceParams {
            specific: phi.clone().unwrap_or_else(|| specific.initial()),
            item_specific: vec![0.0; ns],
        }
        .check(ns)?;
        let fac = train_surface_ials(&data, &checked, &sp, &mut TrainControl::default())?;
        let counts = reelkit_ranker::evaluation::item_counts(&data.matrix);
        let (u, s, i, g) = held_out(&data, &held, |v| counts[v as usize] > 0);
        let h = HeldOut {
            user: &u,
            surface: &s,
            item: &i,
            gain: &g,
        };
        let per_surface = surface_vectors(&fac.items, &fac.surface_items, fac.dim, ns);
        let items: &[f32] = &per_surface;
        if let Specific::Auto { grid } = specific {
            let c = choose_specific(
                &data,
                items,
                &checked,
                grid,
                &h,
                Some((&fac.shared, &fac.surface)),
                checked.cg_steps + 2,
            )?;
            phi = Some(c.specific.clone());
            choice = Some(c);
        }
        if let Specific::Auto { grid } = item_specific {
            let c = choose_item_specific(
                &data,
                &fac.surface,
                &fac.items,
                items,
                &checked,
                grid,
                &h,
                checked.cg_steps,
            )?;
            psi = Some(c.specific.clone());
            item_choice = Some(c);
        }
        start = Some((data, fac));
    }
    let data = surface_data(&[events])?;
    let sp = SurfaceParams {
        specific: phi.unwrap_or_else(|| specific.initial()),
        item_specific: psi.unwrap_or_else(|| vec![0.0; ns]),
    }
    .check(ns)?;
    let fac = match start {
        None => train_surface_ials(&data, &checked, &sp, &mut TrainControl::default())?,
        Some((old, prev)) => {
            let init = warm_surface_start(&data, &old, prev, &checked);
            train_surface_ials_from(&data, &checked, &sp, init, &mut TrainControl::default())?
        }
    };
    let names: Vec<&str> = Surface::ALL.iter().map(|s| s.as_str()).collect();
    let mut model = Model::from_surfaces(&data, fac, &names, params.clone())?;
    model.meta.value_model = Some(fit_surface_value_model(events, &model));
    model.meta.source = source.to_string();
    Ok(SurfaceFit {
        model,
        choice,
        item_choice,
    })
}

/// The impressions `keep` says, in order.
fn subset(events: &Events, keep: impl Fn(usize) -> bool) -> Events {
    let mut out = Events::default();
    for i in (0..events.len()).filter(|&i| keep(i)) {
        out.push(&events.get(i));
    }
    out
}

/// A warm start for `data` from a fit on `old`: the same users' and items'
/// vectors, zeros for new ones (training moves them from there).
fn warm_surface_start(
    data: &SurfaceData,
    old: &SurfaceData,
    prev: reelkit_ranker::per_surface::SurfaceFactors,
    p: &reelkit_ranker::ValidTrainParams,
) -> reelkit_ranker::per_surface::SurfaceFactors {
    let f = p.factors;
    let ns = data.n_surfaces;
    let mut shared = vec![0f32; data.users.len() * f];
    let mut surface = vec![0f32; data.users.len() * ns * f];
    for (u, &id) in data.users.ids().iter().enumerate() {
        if let Some(o) = old.users.get(id) {
            let o = o as usize;
            shared[u * f..(u + 1) * f].copy_from_slice(prev.shared_user(o));
            for s in 0..ns {
                let at = (u * ns + s) * f;
                surface[at..at + f].copy_from_slice(prev.surface_user(o, s));
            }
        }
    }
    let mut items = vec![0f32; data.items.len() * f];
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ p.seed;
    for (i, &id) in data.items.ids().iter().enumerate() {
        let row = &mut items[i * f..(i + 1) * f];
        match old.items.get(id) {
            Some(o) => row.copy_from_slice(prev.item(o as usize)),
            // A new item starts small and seeded, as a fresh fit's would.
            None => row.iter_mut().for_each(|x| {
                rng = reelkit_sim::random::splitmix64(rng);
                *x = ((rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * p.init_scale;
            }),
        }
    }
    reelkit_ranker::per_surface::SurfaceFactors {
        dim: f,
        n_surfaces: ns,
        specific: prev.specific.clone(),
        item_specific: Vec::new(),
        shared,
        surface,
        items,
        surface_items: Vec::new(),
        item_bias: vec![0.0; data.items.len()],
    }
}

/// The value model of a per-surface model: each impression scored with the
/// user's vector on its surface.
fn fit_surface_value_model(ev: &Events, model: &Model) -> ValueModel {
    let mut s = ValueSamples::default();
    let (Some(sv), d) = (&model.surfaces, model.factors.dim) else {
        return ValueModel::fit(&s, ValueWeights::default());
    };
    let ns = sv.names.len();
    for i in 0..ev.len() {
        let (Some(u), Some(v)) = (
            model.users.get(ev.user_id[i]),
            model.items.get(ev.video_id[i]),
        ) else {
            continue;
        };
        let (u, v) = (u as usize, v as usize);
        let at = (u * ns + ev.surface[i].index()) * d;
        s.dot.push(reelkit_ranker::retrieval::dot(
            &sv.vectors[at..at + d],
            model.factors.item(v),
        ));
        s.count.push(model.item_counts[v]);
        s.bias.push(model.factors.item_bias[v]);
        s.watch_fraction
            .push(ev.watch_ms[i] as f32 / ev.duration_ms[i].max(1) as f32);
        s.liked.push(ev.liked[i]);
        s.shared.push(ev.shared[i]);
    }
    ValueModel::fit(&s, ValueWeights::default())
}
