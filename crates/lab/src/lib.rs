//! reelkit-lab: the experiment loop as a library. A spec names a world, a
//! pre-period, and arms that are ranker recipes (`random`, `popular`,
//! `oracle`, or trained: `siloed` — one model per surface — and `unified` —
//! one model over every surface with a surface-aware ranking stage). The loop
//! plays every user under every arm with common random numbers, so each
//! comparison's true effect is known, analyses the observed events with
//! reelkit-abtest in memory, and sets each estimate beside its truth.
//!
//! ```
//! use reelkit_lab::{run, ExperimentSpec};
//!
//! let spec = ExperimentSpec::from_toml(
//!     r#"
//!     name = "tiny"
//!     seed = 7
//!     [world]
//!     users = 150
//!     videos = 600
//!     creators = 60
//!     new_videos_per_day = 10
//!     [pre_period]
//!     days = 3
//!     [experiment]
//!     days = 2
//!     [[arms]]
//!     name = "popular"
//!     recipe = "popular"
//!     [[arms]]
//!     name = "unified"
//!     recipe = "unified"
//!     factors = 8
//!     epochs = 4
//!     [analysis]
//!     daily = false
//!     segments = false
//!     "#,
//!     std::path::Path::new("."),
//! )?
//! .check()?;
//! let outcome = run(&spec, &|_progress| {})?;
//! let watch = outcome
//!     .summary
//!     .estimates
//!     .iter()
//!     .find(|e| e.metric == "watch_time_per_user" && e.segment == "all")
//!     .expect("watch time is a built-in metric");
//! println!(
//!     "unified vs popular: estimated {:+.1}%, true {:+.1}%",
//!     100.0 * watch.estimate_rel,
//!     100.0 * watch.true_rel
//! );
//! assert_eq!(watch.variant, "unified");
//! # Ok::<(), reelkit_lab::Error>(())
//! ```

mod calibrate;
mod error;
mod interactions;
mod interleave;
pub mod limits;
mod ope_run;
mod ope_study;
mod output;
mod ranker_policy;
mod recipe;
mod run;
mod served;
mod spec;
mod sweep;
mod train;
mod trained;
mod truth;

// What running experiments needs, at the root: specs, the loop, sweeps and
// calibrations with their outputs, recipes, errors.
pub use calibrate::{
    calibrate, calibration_markdown, write_calibration, Calibration, CalibrationDesign,
};
pub use error::{Error, Result};
pub use output::summary_markdown;
pub use recipe::Recipe;
pub use run::{run, Outcome};
pub use spec::{ExperimentSpec, ValidSpec, DEMO_SPEC};
pub use sweep::{sweep, sweep_markdown, write_sweep, Sweep};

/// Interleaving set against the A/B truth, run after run.
pub mod interleaving {
    pub use crate::interleave::{
        calibrate_interleaving, interleaving_markdown, write_interleaving, InterleaveCalibration,
        InterleaveTrial,
    };
}

/// What a run, a sweep or a calibration reports: summaries, estimates,
/// truths, fits and their times.
pub mod outcomes {
    pub use crate::calibrate::{Rates, Trial};
    pub use crate::run::{ArmSummary, Estimate, RefreshTime, Summary, Timings};
    pub use crate::sweep::{sweep_specs, SweepRow};
    pub use crate::trained::{FitTime, Refresh};
    pub use crate::truth::{GroundTruth, TrueEffect};
}

/// A model file replayed as an off-policy candidate on a log's requests,
/// as `reelkit serve` would answer them (`reelkit ope`).
pub mod offpolicy {
    pub use crate::ope_run::{
        evaluate, evaluate_with_weights, ImpressionWeights, OpeSettings, METRICS,
    };
    pub use crate::ope_study::{
        ope_study, ope_study_markdown, write_ope_study, LoggingUnit, OpeDesign, OpeOrdering,
        OpeRates, OpeStudy, OpeTrial, Replaying,
    };
    pub use crate::served::{PageLists, ServedCandidate, VideoCatalogue, Videos};
}

/// The parts of a spec: arms, recipes and their settings, and a served
/// model as a simulator policy.
pub mod specs {
    pub use crate::ranker_policy::RankerPolicy;
    pub use crate::recipe::{ItemVectors, Judge, Ranking, Retrain, Specific, Trained, UserVectors};
    pub use crate::spec::{parse_value, Arm};
}

/// Training from files and frames as the CLI and the Python package do:
/// interactions or event logs to a model, tuning, imported factors, offline
/// evaluation.
pub mod training {
    pub use crate::interactions::{
        import_factors, model_item, model_user, train_triplets, tune_budget, tune_triplets,
        Triplets, TuneSetup, Tuned,
    };
    pub use crate::train::{
        build_model, event_weights, offline_eval, train_on_events, train_surface_on_events,
        Offline, SurfaceFit,
    };
}
