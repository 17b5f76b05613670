//! Training data of the ranker commands and of the Python package: an event
//! log (engagement-weighted) or generic interactions, as weighted triplets
//! with their string-id dictionaries; training and tuning on them into a
//! model file's [`Model`]. One copy, so `reelkit train`/`tune` and
//! `reelkit.train`/`tune` give the same model on the same input.

use std::path::Path;
use std::time::Duration;

use reelkit_logs::{read_interactions, Events, InteractionColumns};
use reelkit_ranker::{
    algorithms::EngagementWeights,
    evaluation::{split_by_time, split_random, Split},
    tuning::{choose, fit_trial, Trial, TuneOptions, Weighting},
    Algo, EpochReport, Factors, IdMap, Model, TrainControl, TrainParams, TrainingData,
};

use crate::error::{Error, Result};
use crate::train::{build_model, event_weights};

/// Weighted user–item triplets with optional timestamps.
#[derive(Debug, Clone, Default)]
pub struct Triplets {
    /// Users, one per row (dense internal ids when `user_keys` is set).
    pub user_id: Vec<u64>,
    /// Items, one per row (dense internal ids when `item_keys` is set).
    pub item_id: Vec<u64>,
    /// Raw weights (1 when the source had none).
    pub weight: Vec<f32>,
    /// Timestamps (ms), when the source had them.
    pub ts: Option<Vec<i64>>,
    /// A pair is a positive when its summed weight is above this.
    pub min_weight: f32,
    /// Whether a weight column was read (else every weight is 1).
    pub weighted: bool,
    /// String user ids: `user_keys[k]` is the id of internal user `k`.
    pub user_keys: Option<Vec<String>>,
    /// String item ids.
    pub item_keys: Option<Vec<String>>,
}

/// An id as written, in a model's id space: a model trained on string ids
/// looks the text up, one trained on numbers parses it.
pub fn model_user(r: &reelkit_ranker::Ranker, text: &str) -> Option<u64> {
    if r.keyed().0 {
        r.user_of_key(text)
    } else {
        text.trim().parse().ok()
    }
}

/// [`model_user`] for items.
pub fn model_item(r: &reelkit_ranker::Ranker, text: &str) -> Option<u64> {
    if r.keyed().1 {
        r.item_of_key(text)
    } else {
        text.trim().parse().ok()
    }
}

impl Triplets {
    /// An event log's impressions weighted by engagement (the default
    /// [`EngagementWeights`]).
    pub fn from_events(ev: &Events) -> Triplets {
        let w = EngagementWeights::default();
        Triplets {
            weight: event_weights(ev, &w),
            min_weight: w.min_positive,
            user_id: ev.user_id.clone(),
            item_id: ev.video_id.clone(),
            ts: Some(ev.ts_ms.clone()),
            weighted: true,
            user_keys: None,
            item_keys: None,
        }
    }

    /// Generic interactions read from `path` (Parquet, Arrow or delimited
    /// text; see [`reelkit_logs::read_interactions`]).
    pub fn read(path: &Path, cols: &InteractionColumns) -> Result<Triplets> {
        let it = read_interactions(path, cols)?;
        let n = it.len();
        Ok(Triplets {
            user_id: it.user_id,
            item_id: it.item_id,
            weighted: it.weight.is_some(),
            weight: it.weight.unwrap_or_else(|| vec![1.0; n]),
            ts: it.ts,
            min_weight: 0.0,
            user_keys: it.user_keys,
            item_keys: it.item_keys,
        })
    }

    /// Each row's user and item in the model's id space (`None`: an id the
    /// model cannot know).
    pub fn model_ids(&self, r: &reelkit_ranker::Ranker) -> (Vec<Option<u64>>, Vec<Option<u64>>) {
        let map = |ids: &[u64],
                   keys: &Option<Vec<String>>,
                   keyed: bool,
                   of_key: &dyn Fn(&str) -> Option<u64>|
         -> Vec<Option<u64>> {
            match (keys, keyed) {
                (None, false) => ids.iter().map(|&i| Some(i)).collect(),
                (Some(k), _) => ids.iter().map(|&i| of_key(&k[i as usize])).collect(),
                (None, true) => ids.iter().map(|&i| of_key(&i.to_string())).collect(),
            }
        };
        let (ku, ki) = r.keyed();
        (
            map(&self.user_id, &self.user_keys, ku, &|t| model_user(r, t)),
            map(&self.item_id, &self.item_keys, ki, &|t| model_item(r, t)),
        )
    }

    /// The weights as `w` turns them into training weights; a weight the
    /// weighting counts as no interaction (0 under `linear`) is dropped, with
    /// a warning saying how many.
    pub fn weighted_by(&self, w: Weighting) -> Vec<f32> {
        let out: Vec<f32> = self
            .weight
            .iter()
            .map(|&x| match w {
                Weighting::Binary => 1.0,
                Weighting::Log => 1.0 + x.max(0.0).ln_1p(),
                Weighting::Linear => x,
            })
            .collect();
        let zeros = out.iter().filter(|&&x| x <= 0.0).count();
        if zeros > 0 && self.weighted {
            tracing::warn!(
                "{zeros} of {} rows weigh 0 and are no interaction under linear weights \
                 (log or binary weights count every row as an interaction)",
                out.len()
            );
        }
        out
    }

    /// The interaction matrix with the raw weights (training refuses an
    /// empty one).
    pub fn training_data(&self) -> Result<TrainingData> {
        Ok(TrainingData::from_triplets(
            &self.user_id,
            &self.item_id,
            Some(&self.weight),
            self.min_weight,
        )?)
    }

    /// The interaction matrix with the weights as `w` makes them.
    pub fn weighted_data(&self, w: Weighting) -> Result<TrainingData> {
        Ok(TrainingData::from_triplets(
            &self.user_id,
            &self.item_id,
            Some(&self.weighted_by(w)),
            self.min_weight,
        )?)
    }

    /// A model of `data` and `factors` with the value model fitted on
    /// `events` when given, and these triplets' string ids by row.
    pub fn model(
        &self,
        data: &TrainingData,
        factors: Factors,
        params: TrainParams,
        events: Option<&Events>,
        source: String,
    ) -> Model {
        let mut model = build_model(data, factors, params, events, source);
        model.user_keys = keys_by_row(&data.users, &self.user_keys);
        model.item_keys = keys_by_row(&data.items, &self.item_keys);
        model
    }
}

/// A model's string ids by row, from the triplets' dictionaries.
fn keys_by_row(ids: &IdMap, keys: &Option<Vec<String>>) -> Option<Vec<String>> {
    let keys = keys.as_ref()?;
    Some(
        ids.ids()
            .iter()
            .map(|&k| keys.get(k as usize).cloned().unwrap_or_default())
            .collect(),
    )
}

/// Trains `params` on `trip` weighted by `weighting` and returns the model
/// (value model fitted on `events` when given) and each epoch's report.
/// `control` can stop training early and sees every epoch.
pub fn train_triplets(
    trip: &Triplets,
    params: TrainParams,
    weighting: Weighting,
    events: Option<&Events>,
    control: &mut TrainControl<'_>,
    source: String,
) -> Result<(Model, Vec<EpochReport>)> {
    let data = trip.weighted_data(weighting)?;
    let valid = params.clone().check()?;
    let mut reports = Vec::new();
    let mut outer = control.on_epoch.take();
    let mut cb = |r: &EpochReport, f: &Factors| {
        reports.push(*r);
        outer.as_mut().is_none_or(|cb| cb(r, f))
    };
    let factors = reelkit_ranker::train(
        &data.matrix,
        &valid,
        &mut TrainControl {
            stop: control.stop,
            on_epoch: Some(&mut cb),
        },
    )?;
    Ok((trip.model(&data, factors, params, events, source), reports))
}

/// How [`tune_triplets`] searches.
#[derive(Debug, Clone)]
pub struct TuneSetup {
    /// Model families searched (`[Ease, Ials]` by default).
    pub algos: Vec<Algo>,
    /// Weightings searched; `None`: log and binary when the data has
    /// weights, binary otherwise.
    pub weightings: Option<Vec<Weighting>>,
    /// NDCG cut-off.
    pub k: usize,
    /// Budget of the search, in modeled seconds of work (see `reelkit tune --budget`).
    pub budget: Duration,
    /// Share of each user's interactions held out (event logs: the same
    /// quantile of time).
    pub validation: f64,
    /// Seed of the split and of training.
    pub seed: u64,
}

/// The largest tuning budget: a year of seconds (a larger one overflowed
/// the clock's arithmetic and panicked).
const MAX_BUDGET_S: f64 = 31_536_000.0;

/// A tuning budget of `seconds` as a [`TuneSetup::budget`], or an error
/// naming the allowed range (checked before any data is read).
pub fn tune_budget(seconds: f64) -> Result<Duration> {
    if !(seconds.is_finite() && (0.0..=MAX_BUDGET_S).contains(&seconds)) {
        return Err(Error::Input(format!(
            "budget must be a number of seconds from 0 to {MAX_BUDGET_S} (a year), got {seconds}"
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl Default for TuneSetup {
    fn default() -> Self {
        TuneSetup {
            algos: vec![Algo::Ease, Algo::Ials],
            weightings: None,
            k: 10,
            budget: Duration::from_secs(80),
            validation: 0.2,
            seed: 42,
        }
    }
}

/// The outcome of a search: every trial, the one chosen and its model
/// trained on all the data.
#[derive(Debug)]
pub struct Tuned {
    /// Every setting tried, in order.
    pub trials: Vec<Trial>,
    /// The chosen trial ([`reelkit_ranker::tuning::choose`]).
    pub best: Trial,
    /// The chosen setting trained on all of `trip`.
    pub model: Model,
}

/// Searches settings on a validation split of `trip` (by time for an event
/// log, `events` given; per user at random otherwise), chooses one and
/// trains it on everything.
pub fn tune_triplets(
    mut trip: Triplets,
    events: Option<&Events>,
    setup: &TuneSetup,
    source: String,
) -> Result<Tuned> {
    if !(setup.validation > 0.0 && setup.validation < 1.0) {
        return Err(Error::Input(format!(
            "validation must be in (0, 1), got {}",
            setup.validation
        )));
    }
    let weightings = match (&setup.weightings, trip.weighted) {
        (_, false) => vec![Weighting::Binary],
        (None, true) => vec![Weighting::Log, Weighting::Binary],
        (Some(w), true) => w.clone(),
    };
    // The tuner turns raw weights into training weights itself, so a weight
    // of 0 (a rating-less interaction) must stay an entry: stored as the
    // smallest positive weight, which `linear` still reads as nearly none.
    const ZERO: f32 = 1e-6;
    trip.weight.iter_mut().for_each(|w| *w = w.max(ZERO));
    let data = trip.training_data()?;
    let split = carve(&trip, &data, setup.validation, setup.seed, events.is_some())?;
    let opts = TuneOptions {
        algos: setup.algos.clone(),
        weightings,
        k: setup.k,
        budget: setup.budget,
        seed: setup.seed,
        ..TuneOptions::default()
    };
    let trials = reelkit_ranker::tuning::tune(&split, &opts)?;
    let best = choose(&trials)
        .cloned()
        .ok_or_else(|| Error::Input("no setting was evaluated".into()))?;
    let factors = fit_trial(&best, &data.matrix, &opts)?;
    let mut params = best.candidate.params(setup.seed);
    params.pop_bias = best.pop_bias;
    // The file's parameters are what fold-in reads (a popularity model's are
    // a one-dimension iALS's); its provenance names what was chosen.
    let source = format!("{source}: {}", best.describe());
    let model = trip.model(&data, factors, params, events, source);
    Ok(Tuned {
        trials,
        best,
        model,
    })
}

/// The validation split: by time at the `validation` quantile for logs with
/// timestamps, per user at random otherwise.
fn carve(
    t: &Triplets,
    data: &TrainingData,
    validation: f64,
    seed: u64,
    by_time: bool,
) -> Result<Split> {
    match (&t.ts, by_time) {
        (Some(ts), true) if !ts.is_empty() => {
            let mut sorted = ts.clone();
            sorted.sort_unstable();
            let at = ((sorted.len() as f64) * (1.0 - validation)) as usize;
            let cut = sorted[at.min(sorted.len() - 1)].max(sorted[0] + 1);
            Ok(split_by_time(
                &t.user_id,
                &t.item_id,
                &t.weight,
                ts,
                cut,
                t.min_weight,
            )?)
        }
        _ => Ok(split_random(data, validation, seed)),
    }
}

/// A model of factor tables trained elsewhere (Spark MLlib ALS's saved
/// `userFactors`/`itemFactors`, or id + one column per dimension; see
/// [`reelkit_logs::read_factor_table`]): scores are the trainer's dot
/// products.
pub fn import_factors(users: &Path, items: &Path) -> Result<Model> {
    let u = reelkit_logs::read_factor_table(users)?;
    let v = reelkit_logs::read_factor_table(items)?;
    if u.dim != v.dim {
        return Err(Error::Input(format!(
            "{} holds vectors of {} values, {} of {}: the two sides of one model have one dimension",
            users.display(),
            u.dim,
            items.display(),
            v.dim
        )));
    }
    let ids = |t: reelkit_logs::Ids| match t {
        reelkit_logs::Ids::Numbers(n) => reelkit_ranker::model_file::ExternalIds::Numbers(n),
        reelkit_logs::Ids::Strings(s) => reelkit_ranker::model_file::ExternalIds::Strings(s),
    };
    Ok(Model::from_factors(
        ids(u.ids),
        u.values,
        ids(v.ids),
        v.values,
        u.dim,
    )?)
}
