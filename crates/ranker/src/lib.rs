//! reelkit-ranker: learns user and video embeddings from implicit engagement
//! (iALS with a conjugate-gradient solver, or BPR), evaluates them honestly over
//! the full catalogue, ranks by dot product, and stores models as Arrow IPC
//! files that any Arrow implementation can read.
//!
//! Light enough to embed in another service: arrow (IPC only) and rayon; no
//! dataframe library, no async runtime.
//!
//! Train on interactions, save, load, recommend with exclusions, and fold in
//! a user the model has never seen:
//!
//! ```
//! use reelkit_ranker::{train, Model, Ranker, Request, TrainControl, TrainParams, TrainingData};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Two tastes: users 1–3 watch videos 10–12, users 4–6 watch 20–22.
//! let (mut users, mut videos) = (Vec::new(), Vec::new());
//! for (group, first_video) in [(1u64, 10u64), (4, 20)] {
//!     for u in group..group + 3 {
//!         for v in first_video..first_video + 3 {
//!             if (u + v) % 3 != 0 {
//!                 users.push(u);
//!                 videos.push(v);
//!             }
//!         }
//!     }
//! }
//! let data = TrainingData::from_triplets(&users, &videos, None, 0.0)?;
//! let params = TrainParams { factors: 4, epochs: 10, seed: 7, ..TrainParams::default() }.check()?;
//! let factors = train(&data.matrix, &params, &mut TrainControl::default())?;
//!
//! let dir = std::env::temp_dir().join(format!("reelkit-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("model.arrow");
//! Model::new(&data, factors, params.get().clone()).save(&path)?;
//!
//! // `Ranker` is Send + Sync: share one behind an Arc across a service's threads.
//! let ranker = Ranker::open(&path)?;
//! let seen = Request { exclude: vec![10], ..Request::default() };
//! let recs = ranker.recommend(1, 2, &seen);
//! assert!(!recs.fallback && recs.items.iter().all(|r| r.item_id != 10));
//! assert!(recs.items.iter().all(|r| (10..13).contains(&r.item_id)), "{recs:?}");
//!
//! // A new user who watched 20 and 21: folded in from that history.
//! let fresh = Request { history: vec![20, 21], ..Request::default() };
//! let recs = ranker.recommend(999, 1, &fresh);
//! assert_eq!(recs.items[0].item_id, 22);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

mod als;
mod bpr;
mod confidence;
mod csr;
mod ease;
mod error;
mod eval;
mod factors;
mod half;
mod ids;
mod int8;
mod ivf;
mod linalg;
mod model;
mod pages;
mod params;
mod ranker;
mod rng;
mod rp3;
mod simd;
mod split;
mod surfaces;
#[cfg(test)]
mod test_util;
mod top;
mod topk;
mod tune;
mod value;

// What an embedder needs, at the root: training, parameters, data, the
// model and its file, the ranker and its requests, retrieval, errors.
pub use als::{EpochReport, TrainControl};
pub use confidence::TrainingData;
pub use csr::Csr;
pub use error::{Error, Result};
pub use factors::Factors;
pub use ids::IdMap;
pub use model::{MappedModel, Model, ModelMeta};
pub use params::{Algo, TrainParams, ValidTrainParams};
pub use ranker::{
    BatchRequest, Ranker, Recommendation, Recommendations, Request, Retrieval, Surface,
    UnknownSurface,
};

/// The training algorithms one by one (`train` picks one from
/// [`TrainParams::algo`]), and the engagement weights of event logs.
pub mod algorithms {
    pub use crate::als::{solve_rows, train_ials, train_ials_from};
    pub use crate::bpr::train_bpr;
    pub use crate::confidence::{keep_above, EngagementWeights, Impressions};
    pub use crate::ease::{train_ease, EaseBasis, EASE_DIM, EASE_MAX_ITEMS};
    pub use crate::rp3::{rp3beta_factors, Rp3Params};
}

/// Offline evaluation over the full catalogue, and the splits it runs on.
pub mod evaluation {
    pub use crate::eval::{
        evaluate, evaluate_embeddings, evaluate_popularity, item_counts, popularity_order,
        recommend_popular, user_metrics, Metrics,
    };
    pub use crate::split::{split_by_time, split_random, Split};
}

/// The model file's parts beyond [`Model`]: string-id
/// dictionaries, per-surface vectors, format versions.
pub mod model_file {
    pub use crate::model::{
        ExternalIds, Keys, MappedSurfaces, SurfaceVectors, FORMAT_VERSION, SUPPORTED_VERSIONS,
    };
}

/// The hierarchical per-surface model: a shared taste and each surface's
/// own, with the specific share chosen on held-out impressions.
pub mod per_surface {
    pub use crate::surfaces::{
        choose_item_specific, choose_specific, heldout_concordance, pick_specific,
        solve_surface_users, surface_vectors, train_surface_ials, train_surface_ials_from, HeldOut,
        HeldOutScore, SpecificChoice, SurfaceData, SurfaceFactors, SurfaceParams,
        ValidSurfaceParams, MAX_SURFACES,
    };
}

/// Candidate retrieval below [`Ranker`]: exact, reduced
/// precision and IVF top-K over an item table, and the CPU features the
/// kernels are chosen by.
pub mod retrieval {
    pub use crate::half::HalfTable;
    pub use crate::int8::Int8Table;
    pub use crate::ivf::{recall, IvfFilter, IvfIndex, IvfParams, IvfQuery};
    pub use crate::linalg::dot;
    pub use crate::pages::in_huge_pages;
    pub use crate::ranker::{UnknownRetrieval, USERS_PER_BATCH};
    pub use crate::simd::Isa;
    pub use crate::top::Scored;
    pub use crate::topk::ItemTable;
}

/// Model selection on a validation split (`reelkit tune`).
pub mod tuning {
    pub use crate::tune::{choose, fit_trial, tune, Candidate, Trial, TuneOptions, Weighting};
}

/// The value model: calibrated heads re-ranking retrieved candidates.
pub mod value_model {
    pub use crate::value::{Calibration, Head, ValueModel, ValueSamples, ValueWeights};
}

/// Trains with the algorithm the parameters name (then adds the popularity
/// compensation [`TrainParams::pop_bias`] to the item biases).
pub fn train(
    weights: &Csr,
    params: &ValidTrainParams,
    ctl: &mut TrainControl<'_>,
) -> Result<Factors> {
    let mut f = match params.algo {
        Algo::Ials => als::train_ials(weights, params, ctl),
        Algo::Bpr => bpr::train_bpr(weights, params, ctl),
        Algo::Ease => {
            let t = std::time::Instant::now();
            let f = ease::train_ease(weights, params.reg as f64, params.factors, params.seed)?;
            if let Some(cb) = ctl.on_epoch.as_mut() {
                let report = EpochReport {
                    epoch: 1,
                    loss: f64::NAN,
                    seconds: t.elapsed().as_secs_f64(),
                };
                cb(&report, &f);
            }
            Ok(f)
        }
    }?;
    if params.pop_bias != 0.0 {
        f.add_popularity_bias(weights, params.pop_bias);
    }
    Ok(f)
}
