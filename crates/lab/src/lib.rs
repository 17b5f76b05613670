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
mod output;
mod ranker_policy;
mod recipe;
mod run;
mod spec;
mod sweep;
mod train;
mod trained;
mod truth;

pub use calibrate::{
    calibrate, calibration_markdown, write_calibration, Calibration, CalibrationDesign, Rates,
    Trial,
};
pub use error::{Error, Result};
pub use interactions::{
    import_factors, model_item, model_user, train_triplets, tune_triplets, Triplets, TuneSetup,
    Tuned,
};
pub use interleave::{
    calibrate_interleaving, interleaving_markdown, write_interleaving, InterleaveCalibration,
    InterleaveTrial,
};
pub use output::summary_markdown;
pub use ranker_policy::RankerPolicy;
pub use recipe::{Ranking, Recipe, Retrain, Specific, Trained, UserVectors};
pub use run::{run, ArmSummary, Estimate, Outcome, RefreshTime, Summary, Timings};
pub use spec::{parse_value, Arm, ExperimentSpec, ValidSpec};
pub use sweep::{sweep, sweep_markdown, sweep_specs, write_sweep, Sweep, SweepRow};
pub use train::{
    build_model, event_weights, offline_eval, train_on_events, train_surface_on_events, Offline,
    SurfaceFit,
};
pub use trained::{FitTime, Refresh};
pub use truth::{GroundTruth, TrueEffect};
