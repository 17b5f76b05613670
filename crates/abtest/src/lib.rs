//! reelkit-abtest: from Reels session logs to per-user metrics (one polars lazy
//! query) to a decision (statistics matching GrowthBook's gbstats).

mod analysis;
mod error;
mod metrics;
mod pipeline;
mod power;
mod report;
mod stats;

pub use analysis::{analyze, analyze_sums, AnalysisConfig, MetricRow, Report, Srm, SRM_THRESHOLD};
pub use error::{Error, Result};
pub use metrics::{builtin_metrics, check_metrics, parse_metrics, Aggregation, Metric};
pub use pipeline::{arm_sums, scan, user_values, ArmSums, UserValues};
pub use power::{power, PowerRow};
pub use report::{
    forest_svg, forest_svg_with_truth, html, html_with_truth, markdown, write_report,
    write_report_with_truth, TrueLift,
};
pub use stats::{
    bayesian, Bayesian, Prior, adjust, adjusted, cuped_theta, effect_variance, moments, srm, two_sided, two_sided_sequential,
    welch_df, ArmEstimate, Correction, MetricKind, Moments, Sums, TestResult,
};
