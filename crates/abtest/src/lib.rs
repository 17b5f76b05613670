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

// What an analysis needs, at the root: inputs, configuration, the report
// and its decisions, metric definitions, power, errors.
pub use analysis::{
    analyze, analyze_report, analyze_sums, AnalysisConfig, Decision, Extras, MetricRow, Report,
    Verdict,
};
pub use error::{Error, Result};
pub use metrics::{builtin_metrics, check_metrics, parse_metrics, Aggregation, Goal, Metric, Role};
pub use pipeline::Inputs;
pub use power::{power, PowerPlan, PowerRow};
pub use report::{html, markdown, write_report};
pub use source::Source;
pub use stats::{Correction, MetricKind};

/// Analyses whose assignment comes from a served exposure log.
pub mod exposure {
    pub use crate::exposures::{
        analyze_by_exposure, exposure_dilution, read_exposures, triggered_events, Dilution,
        Exposed, Exposures,
    };
}

/// Interleaved experiments: credits per team, preference and its test.
pub mod interleaving {
    pub use crate::interleave::{
        credits, interleave, interleave_html, interleave_markdown, preference, sign_test,
        write_interleave_report, Credits, InterleaveConfig, InterleaveReport, Preference,
    };
}

/// The per-user pass under the analysis: values, sums per arm, days,
/// quantiles, the cumulative lift and the segments.
pub mod per_user {
    pub use crate::analysis::{cumulative_lift, segments};
    pub use crate::pipeline::{
        arm_sums, event_days, ordered_arm_sums, per_user_values, quantile, user_values, ArmSums,
        UserValues,
    };
    pub use crate::source::scan;
    pub use crate::text::utc_date;
}

/// The report's parts and charts beyond [`html`] and
/// [`markdown`]: daily and forest charts, segments,
/// guardrails, reports set beside a simulation's truth.
pub mod reporting {
    pub use crate::analysis::{DailyLift, Guardrail, Segment};
    pub use crate::report::{
        daily_svg, forest_svg, forest_svg_with_truth, html_with_truth, write_report_with_truth,
        TrueLift,
    };
}

/// The statistics, one function per formula (checked against scipy,
/// statsmodels and gbstats).
pub mod statistics {
    pub use crate::analysis::{Srm, PLANNING_POWER, SRM_THRESHOLD};
    pub use crate::power::pre_period_power;
    pub use crate::stats::{
        adjust, adjusted, bayesian, cuped_theta, effect_variance, moments, srm, two_sided,
        two_sided_sequential, welch_df, ArmEstimate, Bayesian, Moments, Prior, QuantileSums, Sums,
        TestResult, QUANTILE_Z,
    };
}

/// The warehouse path: SQL for Spark/DuckDB/BigQuery and reading its sums.
pub mod warehouse {
    pub use crate::sql::{read_stats, warehouse_sql, Dialect, SqlTables, STATS_COLUMNS};
}
