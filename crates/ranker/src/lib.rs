//! reelkit-ranker: learns user and video embeddings from implicit engagement
//! (iALS with a conjugate-gradient solver, or BPR), evaluates them honestly over
//! the full catalogue, ranks by dot product, and stores models as Arrow IPC
//! files that any Arrow implementation can read.
//!
//! Light enough to embed in another service: arrow (IPC only), rayon and
//! memmap2; no dataframe library, no async runtime.

mod als;
mod bpr;
mod confidence;
mod csr;
mod error;
mod eval;
mod factors;
mod half;
mod ids;
mod int8;
mod linalg;
mod model;
mod params;
mod ranker;
mod rng;
mod scan;
mod split;
mod topk;
mod value;

pub use als::{fold_in, solve_rows, train_ials, train_ials_from, EpochReport, TrainControl};
pub use bpr::train_bpr;
pub use confidence::{keep_above, EngagementWeights, Impressions, TrainingData};
pub use csr::Csr;
pub use error::{Error, Result};
pub use eval::{evaluate, item_counts, popularity_order, recommend_popular, user_metrics, Metrics};
pub use factors::Factors;
pub use half::{f16_to_f32, f32_to_f16, HalfTable};
pub use ids::IdMap;
pub use int8::Int8Table;
pub use linalg::{cholesky_solve, dot, gram, Isa, RowProblem};
pub use model::{MappedModel, Model, ModelMeta, FORMAT_VERSION, SUPPORTED_VERSIONS};
pub use params::{Algo, TrainParams, ValidTrainParams};
pub use ranker::{Ranker, Recommendation, Recommendations, Request, Retrieval, Surface};
pub use split::{split_by_time, split_random, Split};
pub use topk::{ItemTable, Scored, TableBound, TopK};
pub use value::{Calibration, Head, ValueModel, ValueSamples, ValueWeights};

/// Trains with the algorithm the parameters name.
pub fn train(
    weights: &Csr,
    params: &ValidTrainParams,
    ctl: &mut TrainControl<'_>,
) -> Result<Factors> {
    match params.algo {
        Algo::Ials => train_ials(weights, params, ctl),
        Algo::Bpr => train_bpr(weights, params, ctl),
    }
}
