//! The `reelkit` crate's library part: glue that needs more than one reelkit
//! crate, shared by the binary and the end-to-end tests.

pub mod calibrate;
pub mod online;
mod ranker_policy;

pub use ranker_policy::RankerPolicy;

use reelkit_logs::Events;
use reelkit_ranker::{
    EngagementWeights, Factors, Impressions, Model, ModelMeta, TrainParams, TrainingData,
    ValueModel, ValueSamples, ValueWeights,
};

/// The ranker's view of an event log (columns borrowed, all of one length).
pub fn impressions(ev: &Events) -> Impressions<'_> {
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

/// Counts of interactions per dense index.
pub fn row_counts(data: &TrainingData) -> (Vec<u32>, Vec<u32>) {
    let m = &data.matrix;
    let users = (0..m.n_rows()).map(|u| m.row_len(u) as u32).collect();
    (users, reelkit_ranker::item_counts(m))
}

/// Fits the value model on impressions of users and videos the model knows.
pub fn fit_value_model(
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
/// model fitted on `events` when given.
pub fn build_model(
    data: &TrainingData,
    factors: Factors,
    params: TrainParams,
    events: Option<&Events>,
    source: String,
) -> Model {
    let (user_counts, item_counts) = row_counts(data);
    let value_model = events.map(|ev| fit_value_model(ev, data, &factors, &item_counts));
    Model {
        users: data.users.clone(),
        items: data.items.clone(),
        factors,
        user_counts,
        item_counts,
        meta: ModelMeta {
            params,
            fingerprint: data.fingerprint(),
            value_model,
            source,
        },
    }
}
