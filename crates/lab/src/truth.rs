//! The ground truth of an experiment: for every reported comparison, the
//! metric with everyone in the variant against everyone in the baseline,
//! computed from the simulator's potential outcomes with reelkit-abtest's
//! own metric definitions (so truth and estimate measure the same thing).

use reelkit_abtest::{
    per_user::{quantile, user_values},
    Inputs, Metric, MetricKind, Source,
};
use reelkit_logs::{Assignments, Surface};
use reelkit_sim::{Experiment, World};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// The segment of the whole population and every impression.
pub const ALL: &str = "all";

/// The true effect of one comparison on one metric within one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrueEffect {
    /// The variant arm.
    pub variant: String,
    /// The arm it is compared with.
    pub baseline: String,
    /// The metric's name.
    pub metric: String,
    /// `all`, or `surface=reels` / `surface=feed` / `surface=watch` (every
    /// user, that surface's impressions only, as the report's segments).
    pub segment: String,
    /// How the metric aggregates (mean per user, ratio, …).
    pub kind: MetricKind,
    /// The metric over the population with everyone in the baseline.
    pub baseline_value: f64,
    /// The metric over the population with everyone in the variant.
    pub variant_value: f64,
    /// `variant_value − baseline_value`.
    pub abs_effect: f64,
    /// `abs_effect / baseline_value` (0 when the baseline value is 0).
    pub rel_effect: f64,
}

/// `ground_truth.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Users in the experiment (signed up by its last day).
    pub users: usize,
    /// The first experiment day.
    pub first_day: u32,
    /// Experiment days.
    pub days: u32,
    /// How the truth was computed, in words.
    pub definition: String,
    /// Every comparison × metric × segment.
    pub effects: Vec<TrueEffect>,
}

impl GroundTruth {
    /// The effect of `variant` against `baseline` on `metric` in `segment`.
    pub fn get(
        &self,
        variant: &str,
        baseline: &str,
        metric: &str,
        segment: &str,
    ) -> Option<&TrueEffect> {
        self.effects.iter().find(|e| {
            e.variant == variant
                && e.baseline == baseline
                && e.metric == metric
                && e.segment == segment
        })
    }
}

/// The metrics of every segment with truth: all impressions, then each
/// surface's (a metric already tied to another surface is left out there).
pub(crate) fn segmented(metrics: &[Metric]) -> Vec<(String, Metric)> {
    let mut out: Vec<(String, Metric)> = metrics
        .iter()
        .map(|m| (ALL.to_string(), m.clone()))
        .collect();
    for s in Surface::ALL {
        let name = s.as_str();
        out.extend(
            metrics
                .iter()
                .filter_map(|m| m.on_surface(name))
                .map(|m| (format!("surface={name}"), m)),
        );
    }
    out
}

/// The population value of a metric from per-user values.
fn value(kind: MetricKind, q: Option<f64>, x: &[f64], y: &[f64]) -> f64 {
    match kind {
        MetricKind::Mean | MetricKind::Proportion => {
            if x.is_empty() {
                0.0
            } else {
                x.iter().sum::<f64>() / x.len() as f64
            }
        }
        MetricKind::Ratio => {
            let den: f64 = y.iter().sum();
            if den == 0.0 {
                0.0
            } else {
                x.iter().sum::<f64>() / den
            }
        }
        MetricKind::Quantile => quantile(x, q.unwrap_or(0.5)),
    }
}

/// The truth of every `(variant, baseline)` comparison (arm indices) on every
/// metric, overall and per surface.
pub(crate) fn ground_truth(
    world: &World,
    exp: &Experiment,
    metrics: &[Metric],
    comparisons: &[(usize, usize)],
) -> Result<GroundTruth> {
    let pop = exp.population(world);
    let ids: Vec<u64> = pop.iter().map(|&u| world.users.id[u]).collect();
    let segs = segmented(metrics);
    let ms: Vec<Metric> = segs.iter().map(|s| s.1.clone()).collect();
    let names = &exp.arms.names;
    let mut values: Vec<Option<Vec<f64>>> = vec![None; names.len()];
    for &(v, b) in comparisons {
        for a in [v, b] {
            if values[a].is_some() {
                continue;
            }
            let everyone = Assignments {
                user_id: ids.clone(),
                variant: vec![names[a].clone(); ids.len()],
            };
            let src = Source::events(
                &format!("potential outcomes of arm `{}`", names[a]),
                &exp.potential[a],
            )?;
            let mut uv = user_values(&Inputs::new(src, &everyone, &ms), None)?;
            uv.sort_by_user();
            values[a] = Some(
                ms.iter()
                    .enumerate()
                    .map(|(j, m)| value(m.kind, m.quantile, &uv.x[j], &uv.y[j]))
                    .collect(),
            );
        }
    }
    let mut effects = Vec::new();
    for &(v, b) in comparisons {
        let (Some(vv), Some(bv)) = (&values[v], &values[b]) else {
            continue;
        };
        for (j, (segment, m)) in segs.iter().enumerate() {
            let abs = vv[j] - bv[j];
            effects.push(TrueEffect {
                variant: names[v].clone(),
                baseline: names[b].clone(),
                metric: m.name.clone(),
                segment: segment.clone(),
                kind: m.kind,
                baseline_value: bv[j],
                variant_value: vv[j],
                abs_effect: abs,
                rel_effect: if bv[j] == 0.0 { 0.0 } else { abs / bv[j] },
            });
        }
    }
    Ok(GroundTruth {
        users: pop.len(),
        first_day: exp.first_day,
        days: exp.days,
        definition: "every experiment user (signed up by its last day) played under every arm \
                     with common random numbers, against the catalogue statistics and the \
                     models of the real experiment; a metric's value is its population value \
                     under reelkit-abtest's definition (mean of per-user values, or Σ \
                     numerator / Σ denominator for ratios; capping is not applied)"
            .to_string(),
        effects,
    })
}
