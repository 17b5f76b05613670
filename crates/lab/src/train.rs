//! Training a ranker on an event log: the engagement weighting, the value
//! model and the model file's contents (shared by `reelkit train`, `tune` and
//! the experiment loop).

use reelkit_logs::Events;
use reelkit_ranker::{
    EngagementWeights, Factors, Impressions, Model, TrainControl, TrainParams, TrainingData,
    ValueModel, ValueSamples, ValueWeights,
};

use crate::error::Result;

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
        s.dot.push(reelkit_ranker::dot(f.user(u), f.item(v)));
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
    pub model: reelkit_ranker::Metrics,
    /// Popularity's metrics on the same split (the baseline).
    pub popularity: reelkit_ranker::Metrics,
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
    let split = reelkit_ranker::split_by_time(
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
    let counts = reelkit_ranker::item_counts(&split.train.matrix);
    let table = reelkit_ranker::ItemTable::new(f.dim, &f.items, Some(&f.item_bias));
    let (train, test) = (&split.train.matrix, &split.test);
    Ok(Offline {
        model: reelkit_ranker::evaluate_embeddings(&table, &f.users, train, test, k, &counts),
        popularity: reelkit_ranker::evaluate_popularity(train, test, k, &counts),
    })
}
