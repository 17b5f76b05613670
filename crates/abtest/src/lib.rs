//! reelkit-abtest: from Reels session logs to per-user metrics (one polars lazy
//! query) to a decision (statistics matching GrowthBook's gbstats).

mod analysis;
mod error;
mod exposures;
mod interleave;
mod metrics;
mod pipeline;
mod power;
mod report;
mod sql;
mod stats;
mod stream;

pub use analysis::{
    analyze, analyze_sums, cumulative_lift, segments, utc_date, AnalysisConfig, DailyLift,
    Decision, Guardrail, MetricRow, Report, Segment, Srm, Verdict, PLANNING_POWER, SRM_THRESHOLD,
};
pub use error::{Error, Result};
pub use exposures::{
    exposure_dilution, read_exposures, triggered_events, Dilution, Exposed, Exposures,
};
pub use interleave::{
    credits, interleave, interleave_html, interleave_markdown, preference, sign_test,
    write_interleave_report, Credits, InterleaveConfig, InterleaveReport, Preference,
};
pub use metrics::{builtin_metrics, check_metrics, parse_metrics, Aggregation, Metric, Role};
pub use pipeline::{
    arm_sums, event_days, ordered_arm_sums, per_user_values, quantile, scan, user_values, ArmSums,
    Inputs, Source, UserValues,
};
pub use power::{power, PowerRow};
pub use report::{
    daily_svg, forest_svg, forest_svg_with_truth, html, html_with_truth, markdown, write_report,
    write_report_with_truth, TrueLift,
};
pub use sql::{read_stats, warehouse_sql, Dialect, SqlTables, STATS_COLUMNS};
pub use stats::{
    adjust, adjusted, bayesian, cuped_theta, effect_variance, moments, srm, two_sided,
    two_sided_sequential, welch_df, ArmEstimate, Bayesian, Correction, MetricKind, Moments, Prior,
    QuantileSums, Sums, TestResult, QUANTILE_Z,
};
