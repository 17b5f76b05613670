//! reelkit-abtest: from Reels session logs to per-user metrics (one polars lazy
//! query) to a decision (statistics matching GrowthBook's gbstats).
//!
//! An experiment analysed from memory (no file written): the treatment's
//! users watch each video 20% longer.
//!
//! ```
//! use reelkit_abtest::{analyze, builtin_metrics, AnalysisConfig, Inputs, Source, Verdict};
//! use reelkit_logs::{Assignments, Event, Events, Surface};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut events, mut assignments) = (Events::default(), Assignments::default());
//! for user in 0..400u64 {
//!     let treated = user % 2 == 1;
//!     assignments.user_id.push(user);
//!     assignments.variant.push(if treated { "treatment" } else { "control" }.to_string());
//!     for k in 0..(5 + user % 7) {
//!         let base = 4_000 + (user * 7_919 + k * 104_729) % 20_000;
//!         let watch = if treated { base * 6 / 5 } else { base };
//!         events.push(&Event {
//!             user_id: user,
//!             session_id: user * 10 + k / 3,
//!             ts_ms: 1_767_571_200_000 + (k as i64) * 60_000,
//!             video_id: k,
//!             creator_id: 1,
//!             surface: Surface::Reels,
//!             position: k as u32,
//!             duration_ms: 30_000,
//!             watch_ms: watch as u32,
//!             liked: false,
//!             shared: false,
//!             commented: false,
//!             followed: false,
//!         });
//!     }
//! }
//! // The goal metric alone (the built-in guardrails have nothing to say here:
//! // every user is active on one day).
//! let metrics: Vec<_> = builtin_metrics()
//!     .into_iter()
//!     .filter(|m| m.name == "watch_time_per_user")
//!     .collect();
//! let inputs = Inputs::new(Source::events("memory", &events)?, &assignments, &metrics);
//! let report = analyze(&inputs, &AnalysisConfig::default())?;
//! let watch = report.metrics.iter().find(|m| m.metric == "watch_time_per_user").unwrap();
//! assert!(watch.improved());
//! assert!((watch.test.rel_effect - 0.2).abs() < 0.05, "{}", watch.test.rel_effect);
//! assert_eq!(report.decisions[0].verdict, Verdict::Ship);
//! print!("{}", reelkit_abtest::markdown(&report));
//! # Ok(())
//! # }
//! ```

mod analysis;
mod error;
mod exposures;
mod interleave;
mod metrics;
mod pipeline;
mod power;
mod report;
mod source;
mod sql;
mod stats;
mod stream;
mod text;

pub use analysis::{
    analyze, analyze_report, analyze_sums, cumulative_lift, segments, AnalysisConfig, DailyLift,
    Decision, Extras, Guardrail, MetricRow, Report, Segment, Srm, Verdict, PLANNING_POWER,
    SRM_THRESHOLD,
};
pub use error::{Error, Result};
pub use exposures::{
    analyze_by_exposure, exposure_dilution, read_exposures, triggered_events, Dilution, Exposed,
    Exposures,
};
pub use interleave::{
    credits, interleave, interleave_html, interleave_markdown, preference, sign_test,
    write_interleave_report, Credits, InterleaveConfig, InterleaveReport, Preference,
};
pub use metrics::{builtin_metrics, check_metrics, parse_metrics, Aggregation, Metric, Role};
pub use pipeline::{
    arm_sums, event_days, ordered_arm_sums, per_user_values, quantile, user_values, ArmSums,
    Inputs, UserValues,
};
pub use power::{power, pre_period_power, PowerPlan, PowerRow};
pub use report::{
    daily_svg, forest_svg, forest_svg_with_truth, html, html_with_truth, markdown, write_report,
    write_report_with_truth, TrueLift,
};
pub use source::{scan, Source};
pub use sql::{read_stats, warehouse_sql, Dialect, SqlTables, STATS_COLUMNS};
pub use stats::{
    adjust, adjusted, bayesian, cuped_theta, effect_variance, moments, srm, two_sided,
    two_sided_sequential, welch_df, ArmEstimate, Bayesian, Correction, MetricKind, Moments, Prior,
    QuantileSums, Sums, TestResult, QUANTILE_Z,
};
pub use text::utc_date;
