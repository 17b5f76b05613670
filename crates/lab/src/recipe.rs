//! Arms as ranker recipes: what serves an arm's users, and for trained
//! recipes how the model is fitted and refreshed.

use reelkit_ranker::TrainParams;
use serde::Serialize;

/// What serves an arm.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "recipe", rename_all = "lowercase")]
pub enum Recipe {
    /// Uniformly random unseen videos.
    Random,
    /// Trailing popularity with fresh-upload exploration (the usual baseline).
    Popular,
    /// The true response: the upper bound no ranker can beat on average.
    Oracle,
    /// One model per surface, each trained only on that surface's events and
    /// serving only that surface (users new to a surface get popularity there).
    Siloed(Trained),
    /// One model trained on every surface's events, with a surface-aware
    /// ranking stage: per surface, the user's taste folded in from their
    /// history on that surface and a value head fitted on that surface's
    /// impressions.
    Unified(Trained),
}

impl Recipe {
    /// The recipe's name in specs.
    pub fn name(&self) -> &'static str {
        match self {
            Recipe::Random => "random",
            Recipe::Popular => "popular",
            Recipe::Oracle => "oracle",
            Recipe::Siloed(_) => "siloed",
            Recipe::Unified(_) => "unified",
        }
    }

    /// The training settings of a trained recipe.
    pub fn trained(&self) -> Option<&Trained> {
        match self {
            Recipe::Siloed(t) | Recipe::Unified(t) => Some(t),
            _ => None,
        }
    }
}

/// When a trained recipe refits its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Retrain {
    /// Before every experiment day, on the trailing window, warm-started from
    /// yesterday's factors (new uploads join the catalogue, new users are
    /// added), as production rankers are refreshed.
    Daily,
    /// Once, before the experiment starts (a frozen model).
    Never,
}

/// How a trained recipe ranks the videos it retrieved. Heads are linear
/// fits, per surface, of an impression's engagement weight on features of
/// the (user, video) pair, on impressions the model had not trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ranking {
    /// By the embedding dot product `u·v` (plus the item bias): no surface
    /// awareness in a unified model.
    Dot,
    /// Unified: a head per surface on `[1, u·v, p_s·v]`, weighing the user's
    /// global taste `u` against their taste on the surface `p_s` (folded in
    /// from their history there). Siloed models are surface-specific
    /// already: the same as `dot`.
    Surface,
    /// `surface` plus the video's log training count and its bias as
    /// features (a popularity prior learned from the logs).
    Value,
}

impl Ranking {
    /// The names specs accept.
    pub const NAMES: &'static str = "dot, surface, value";
}

/// How a unified recipe represents a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UserVectors {
    /// One vector per user trained on every surface's events; the taste per
    /// surface is folded in from the user's history there.
    Shared,
    /// One vector per (user, surface) trained with the videos' vectors shared
    /// across surfaces; the user's overall taste is folded in from their
    /// whole history. (The world's structure: a video is the same video on
    /// every surface, the viewer's taste may differ.)
    PerSurface,
}

impl UserVectors {
    /// The names specs accept.
    pub const NAMES: &'static str = "shared, per_surface";
}

/// How a trained recipe is fitted and refreshed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trained {
    /// iALS parameters; `epochs` is the first fit's.
    pub train: TrainParams,
    /// Epochs of each daily refresh (warm-started).
    pub refresh_epochs: usize,
    /// Trailing days of events each fit trains on.
    pub window_days: u32,
    /// When the model is refit.
    pub retrain: Retrain,
    /// How candidates are ranked.
    pub ranking: Ranking,
    /// Unified recipes: how a user is represented (siloed models are per
    /// surface by construction).
    pub user_vectors: UserVectors,
    /// Share of feed slots given to random fresh uploads (the same as the
    /// `popular` baseline's, so that only the ranking differs).
    pub explore: f64,
}

impl Default for Trained {
    fn default() -> Self {
        Trained {
            train: TrainParams {
                factors: 32,
                epochs: 10,
                reg: 10.0,
                alpha: 1.0,
                ..TrainParams::default()
            },
            refresh_epochs: 3,
            window_days: 7,
            retrain: Retrain::Daily,
            ranking: Ranking::Surface,
            user_vectors: UserVectors::Shared,
            explore: reelkit_sim::DEFAULT_EXPLORE,
        }
    }
}
