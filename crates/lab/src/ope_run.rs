//! `reelkit ope` as a library: a candidate replayed on an exploring
//! policy's event log and every estimate of what it would earn there.

use std::collections::HashSet;

use reelkit_logs::polars::prelude::{Column, DataFrame};
use reelkit_logs::Events;
use reelkit_ope::{
    cross_fit_rewards, estimate, replay, session_weights, Estimator, FittedRewardModel,
    Impressions, Log, MetricEstimates, OpeReport, Options,
};

use crate::error::{Error, Result};
use crate::served::ServedCandidate;

/// The metrics an event log sums over impressions.
pub const METRICS: [&str; 5] = ["watch_ms", "liked", "shared", "commented", "followed"];

/// What to estimate and how.
#[derive(Debug, Clone)]
pub struct OpeSettings {
    /// Metrics of [`METRICS`], each a column summed over a user's impressions.
    pub metrics: Vec<String>,
    /// The estimators, in report order.
    pub estimators: Vec<Estimator>,
    /// Impressions per request (the log's positions `0..page_size` are a
    /// session's first page).
    pub page_size: usize,
    /// Bootstrap, interval level, seed (of the bootstrap and of the reward
    /// model's folds), weight clipping.
    pub options: Options,
}

impl Default for OpeSettings {
    fn default() -> Self {
        OpeSettings {
            metrics: vec!["watch_ms".into(), "liked".into()],
            estimators: Estimator::ALL.to_vec(),
            page_size: 8,
            options: Options::default(),
        }
    }
}

/// A metric's reward per impression.
fn rewards(ev: &Events, metric: &str) -> Result<Vec<f64>> {
    let flag = |v: &[bool]| v.iter().map(|&b| b as u8 as f64).collect();
    Ok(match metric {
        "watch_ms" => ev.watch_ms.iter().map(|&w| w as f64).collect(),
        "liked" => flag(&ev.liked),
        "shared" => flag(&ev.shared),
        "commented" => flag(&ev.commented),
        "followed" => flag(&ev.followed),
        other => {
            return Err(Error::Input(format!(
                "metric {other:?} is not a column summed over impressions: expected one of {}",
                METRICS.join(", ")
            )))
        }
    })
}

/// Each impression's surface as reelkit-ope's small index.
pub(crate) fn surface_indices(events: &Events) -> Vec<u8> {
    events.surface.iter().map(|s| s.index() as u8).collect()
}

/// The columns of `events` that rebuild its requests (`surface` from
/// [`surface_indices`]).
pub(crate) fn impressions<'a>(events: &'a Events, surface: &'a [u8]) -> Impressions<'a> {
    Impressions {
        user: &events.user_id,
        session: &events.session_id,
        ts_ms: &events.ts_ms,
        position: &events.position,
        surface,
        video: &events.video_id,
    }
}

/// The log's propensities, every impression's present.
fn propensities(ev: &Events, log: &str) -> Result<Vec<f64>> {
    let p = ev.propensity.as_ref().ok_or_else(|| {
        Error::Input(format!(
            "{log}: no `propensity` column: off-policy evaluation needs the logging policy's \
             probability of every impression (log with `reelkit simulate --explore`, an arm's \
             `explore_uniform` or `reelkit serve --explore`)"
        ))
    })?;
    if let Some(row) = p.iter().position(|x| x.is_nan()) {
        let missing = p.iter().filter(|x| x.is_nan()).count();
        return Err(Error::Input(format!(
            "{log}: `propensity` is null at {missing} of {} impressions (first at row {row}): \
             every impression needs its logging probability",
            p.len()
        )));
    }
    Ok(p.clone())
}

/// What the reader must know about how well the candidate knows the log;
/// a candidate that knows none of its videos is refused.
fn coverage_notes(ev: &Events, cand: &ServedCandidate, name: &str) -> Result<Vec<String>> {
    let ranker = cand.ranker();
    let videos: HashSet<u64> = ev.video_id.iter().copied().collect();
    let known = videos
        .iter()
        .filter(|&&v| ranker.model().items.get(v).is_some())
        .count();
    if known == 0 {
        return Err(Error::Input(format!(
            "the candidate {name} knows none of the log's {} videos: it was trained on \
             another catalogue",
            videos.len()
        )));
    }
    let mut notes = Vec::new();
    if known < videos.len() {
        notes.push(format!(
            "the candidate knows {known} of the log's {} videos ({:.1}%): it never shows the \
             others, so impressions of them weigh 0",
            videos.len(),
            100.0 * known as f64 / videos.len() as f64
        ));
    }
    let users: HashSet<u64> = ev.user_id.iter().copied().collect();
    let unknown = users
        .iter()
        .filter(|&&u| ranker.user_embedding(u).is_none())
        .count();
    if unknown > 0 {
        notes.push(format!(
            "{unknown} of the log's {} users are not in the candidate: it answers them with \
             its most popular videos, as `reelkit serve` would",
            users.len()
        ));
    }
    if !cand.has_catalogue() {
        notes.push(
            "no catalogue: the candidate may choose videos not eligible on a surface or not \
             yet uploaded, which the log can never show (they weigh 0)"
                .into(),
        );
    }
    Ok(notes)
}

/// What every estimate was computed from, one entry per impression of the
/// log (in its row order): the rows a reader checks an estimate with, or
/// hands to another implementation (`reelkit ope --impressions`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImpressionWeights {
    /// The video the candidate puts at the row's slot (`None`: nothing).
    pub candidate_video: Vec<Option<u64>>,
    /// The candidate's probability of the logged video at the row's slot.
    pub target: Vec<f64>,
    /// The logging policy's probability of the same (the log's `propensity`).
    pub propensity: Vec<f64>,
    /// Per-decision weights over the row's session, when PDIS was asked for.
    pub session_weight: Option<Vec<f64>>,
    /// Per metric (in the settings' order): its reward and the cross-fitted
    /// reward model's predictions.
    pub metrics: Vec<(String, Vec<f64>, FittedRewardModel)>,
}

/// Replays `candidate` on the requests of `events` (an exploring policy's
/// log; `log` and `name` name the log and the candidate in messages and in
/// the report) and estimates each metric's value per user and lift over
/// the logging policy with each estimator. Refused before any work: a log
/// without propensities or with a null one, an unknown metric, a page size
/// of 0, no estimator or metric, an interval level or clipping weight out of
/// range, a candidate that knows none of the log's videos.
pub fn evaluate(
    events: &Events,
    candidate: &ServedCandidate,
    log: &str,
    name: &str,
    settings: &OpeSettings,
) -> Result<OpeReport> {
    evaluate_with_weights(events, candidate, log, name, settings).map(|r| r.0)
}

/// [`evaluate`], and every impression's weights and predicted rewards.
pub fn evaluate_with_weights(
    events: &Events,
    candidate: &ServedCandidate,
    log: &str,
    name: &str,
    settings: &OpeSettings,
) -> Result<(OpeReport, ImpressionWeights)> {
    if settings.page_size == 0 {
        return Err(Error::Input("the page size must be at least 1".into()));
    }
    if settings.estimators.is_empty() || settings.metrics.is_empty() {
        return Err(Error::Input(
            "name at least one estimator and one metric".into(),
        ));
    }
    settings.options.check()?;
    let propensity = propensities(events, log)?;
    let metric_rewards = settings
        .metrics
        .iter()
        .map(|m| rewards(events, m))
        .collect::<Result<Vec<_>>>()?;
    let notes = coverage_notes(events, candidate, name)?;
    let surface = surface_indices(events);
    let imp = impressions(events, &surface);
    let replayed = replay(&imp, settings.page_size, candidate)?;
    let opts = &settings.options;
    let session_weight = settings
        .estimators
        .contains(&Estimator::Pdis)
        .then(|| session_weights(&imp, &propensity, &replayed.target))
        .transpose()?;
    let mut metrics = Vec::with_capacity(settings.metrics.len());
    let mut per_metric = Vec::with_capacity(settings.metrics.len());
    for (metric, reward) in settings.metrics.iter().zip(metric_rewards) {
        let model = cross_fit_rewards(&imp, &reward, &replayed, opts.seed)?;
        let log = Log {
            user: &events.user_id,
            reward: &reward,
            propensity: &propensity,
            target: &replayed.target,
            reward_model: Some(model.as_model()),
            session_weight: session_weight.as_deref(),
        };
        metrics.push(MetricEstimates {
            metric: metric.clone(),
            report: estimate(&log, &settings.estimators, opts)?,
        });
        per_metric.push((metric.clone(), reward, model));
    }
    let report = OpeReport {
        log: log.to_string(),
        candidate: name.to_string(),
        page_size: settings.page_size,
        pages: replayed.pages,
        agreement: replayed.agreement(),
        level: opts.level,
        bootstrap: opts.bootstrap,
        notes,
        metrics,
    };
    let weights = ImpressionWeights {
        candidate_video: replayed.choice,
        target: replayed.target,
        propensity,
        session_weight,
        metrics: per_metric,
    };
    Ok((report, weights))
}

impl ImpressionWeights {
    /// One row per impression of `events` (the log these weights came
    /// from): its keys (`user_id`, `session_id`, `position`, `surface`,
    /// `video_id`), `candidate_video_id` (null: the candidate shows
    /// nothing there), `propensity`, `target`, `weight` (their ratio),
    /// `session_weight` (with PDIS), and per metric `<metric>`,
    /// `<metric>_q_logged`, `<metric>_q_candidate`. Every estimate of the
    /// report is a sum over these rows.
    pub fn to_frame(&self, events: &Events) -> Result<DataFrame> {
        let f64s = |name: &str, v: &[f64]| Column::new(name.into(), v.to_vec());
        let weight: Vec<f64> = self
            .target
            .iter()
            .zip(&self.propensity)
            .map(|(t, p)| t / p)
            .collect();
        let mut cols = vec![
            Column::new("user_id".into(), events.user_id.clone()),
            Column::new("session_id".into(), events.session_id.clone()),
            Column::new("position".into(), events.position.clone()),
            Column::new(
                "surface".into(),
                events
                    .surface
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>(),
            ),
            Column::new("video_id".into(), events.video_id.clone()),
            Column::new("candidate_video_id".into(), self.candidate_video.clone()),
            f64s("propensity", &self.propensity),
            f64s("target", &self.target),
            f64s("weight", &weight),
        ];
        if let Some(s) = &self.session_weight {
            cols.push(f64s("session_weight", s));
        }
        for (metric, reward, model) in &self.metrics {
            cols.push(f64s(metric, reward));
            cols.push(f64s(&format!("{metric}_q_logged"), &model.logged));
            cols.push(f64s(&format!("{metric}_q_candidate"), &model.target));
        }
        DataFrame::new(events.len(), cols)
            .map_err(|e| Error::Input(format!("the impressions' rows: {e}")))
    }
}
