//! reelkit-abtest: from Reels session logs to per-user metrics (polars) to a
//! decision (statistics matching GrowthBook's gbstats).

mod stats;

pub use stats::{
    adjust, adjusted, cuped_theta, effect_variance, moments, srm, two_sided, welch_df, ArmEstimate,
    Correction, MetricKind, Moments, Sums, TestResult,
};
