//! reelkit-ope: what a candidate ranker would earn, estimated from a log
//! of another policy's impressions before any A/B test runs.
//!
//! A logging policy that explores records, per impression, the probability
//! it had of showing that video at that slot (its propensity). A candidate's
//! probability of the same choice over the propensity is the impression's
//! importance weight; [`estimate`] turns the weighted rewards into the
//! candidate's reward per user and its lift over the logging policy with
//! each [`Estimator`] (IPS, self-normalised IPS, doubly robust, the direct
//! method), bootstrap intervals over users, and [`Diagnostics`] that say
//! how far the log supports the candidate (effective sample size, the mean
//! weight, which is 1 only with full support, and warnings). A deterministic
//! ranker's probabilities come from [`replay`]ing it on the log's requests,
//! and a reward model for the doubly robust estimator from
//! [`cross_fit_rewards`].
//!
//! ```
//! use reelkit_ope::{estimate, Estimator, Log, Options};
//!
//! // Two users; the logging policy showed each video with probability ½,
//! // the candidate would show the first user's first video and the second
//! // user's second.
//! let log = Log {
//!     user: &[1, 1, 2, 2],
//!     reward: &[10.0, 0.0, 0.0, 30.0],
//!     propensity: &[0.5; 4],
//!     target: &[1.0, 0.0, 0.0, 1.0],
//!     reward_model: None,
//!     session_weight: None,
//! };
//! let report = estimate(&log, &[Estimator::Ips], &Options::default())?;
//! let ips = &report.estimates[0];
//! // Per user: (2·10 + 2·30) / 2 = 40, against the log's (10 + 30) / 2 = 20.
//! assert_eq!(ips.value, 40.0);
//! assert_eq!(ips.lift, 20.0);
//! assert_eq!(report.diagnostics.mean_weight, 1.0);
//! # Ok::<(), reelkit_ope::Error>(())
//! ```

mod error;
mod estimate;
mod replay;
mod report;
#[cfg(test)]
mod tests;

pub use error::{Error, Result};
pub use estimate::{estimate, Diagnostics, Estimate, Estimator, Log, Options, Report, RewardModel};
pub use replay::{
    cross_fit_rewards, replay, session_weights, Candidate, FittedRewardModel, Impressions,
    PageRequest, Replay,
};
pub use report::{html, markdown, MetricEstimates, OpeReport};
