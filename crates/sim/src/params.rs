//! Simulation parameters: a TOML file whose every field is documented in
//! [`DEFAULT_CONFIG`], which is also the source of the defaults' documentation.
//!
//! Unchecked [`SimParams`] become [`ValidSimParams`] through [`SimParams::check`];
//! the simulator only accepts the checked type.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The default configuration with every field documented. `reelkit simulate
/// --print-config` prints it; a test checks it parses to `SimParams::default()`.
pub const DEFAULT_CONFIG: &str = include_str!("default_world.toml");

/// Top-level parameters of the synthetic world and the simulation.
///
/// The fields mirror the TOML file one to one (the sections are
/// [`UserParams`], [`VideoParams`], [`BehaviourParams`] and [`SurfaceMix`]);
/// their meaning and defaults are documented once, in that file
/// ([`DEFAULT_CONFIG`], printed by `reelkit simulate --print-config`, a test
/// checks that every field has a comment there):
///
/// ```toml
#[doc = include_str!("default_world.toml")]
/// ```
// Field docs live in default_world.toml (above), not in a second copy here.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimParams {
    pub seed: u64,
    pub users: usize,
    pub videos: usize,
    pub new_videos_per_day: usize,
    pub creators: usize,
    pub topics: usize,
    pub dim: usize,
    pub days: u32,
    pub start_ts_ms: i64,
    pub new_user_share: f64,
    pub surface_taste_divergence: f64,
    pub user: UserParams,
    pub video: VideoParams,
    pub behaviour: BehaviourParams,
    pub surfaces: SurfaceMix,
}

/// How users are drawn: fields documented in [`SimParams`]'s TOML.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserParams {
    pub activity_median: f64,
    pub activity_sigma: f64,
    pub max_sessions_per_day: u32,
    pub max_topics: usize,
    pub taste_noise: f64,
}

/// How creators and videos are drawn: fields documented in [`SimParams`]'s TOML.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VideoParams {
    pub long_share: f64,
    pub short_median_s: f64,
    pub short_sigma: f64,
    pub long_median_s: f64,
    pub long_sigma: f64,
    pub quality_sd: f64,
    pub creator_quality_sd: f64,
    pub creator_zipf: f64,
    pub creator_topic_focus: f64,
    pub latent_noise: f64,
    pub history_days: u32,
    pub prior_views_scale: f64,
}

/// How users respond to what they are shown: fields documented in [`SimParams`]'s TOML.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BehaviourParams {
    pub affinity_weight: f64,
    pub affinity_offset: f64,
    pub quality_weight: f64,
    pub watch_noise: f64,
    pub loop_gain: f64,
    pub long_watch_factor: f64,
    pub like_intercept: f64,
    pub share_intercept: f64,
    pub comment_intercept: f64,
    pub follow_intercept: f64,
    pub engagement_slope: f64,
    pub continue_intercept: f64,
    pub continue_slope: f64,
    pub mood_memory: f64,
    pub max_session_len: u32,
    pub page_size: usize,
    pub retention_sensitivity: f64,
    pub satisfaction_memory: f64,
    pub neutral_satisfaction: f64,
    pub gap_ms: u32,
}

/// Expected share of sessions on each surface (normalised; each user's own mix
/// is drawn around it); fields documented in [`SimParams`]'s TOML.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SurfaceMix {
    pub reels: f64,
    pub feed: f64,
    pub watch: f64,
    pub concentration: f64,
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            seed: 42,
            users: 2_000,
            videos: 10_000,
            new_videos_per_day: 150,
            creators: 1_000,
            topics: 24,
            dim: 16,
            days: 14,
            // 2026-01-05T00:00:00Z, a Monday.
            start_ts_ms: 1_767_571_200_000,
            new_user_share: 0.15,
            surface_taste_divergence: 0.3,
            user: UserParams::default(),
            video: VideoParams::default(),
            behaviour: BehaviourParams::default(),
            surfaces: SurfaceMix::default(),
        }
    }
}

impl Default for UserParams {
    fn default() -> Self {
        UserParams {
            activity_median: 1.2,
            activity_sigma: 0.8,
            max_sessions_per_day: 24,
            max_topics: 3,
            taste_noise: 0.35,
        }
    }
}

impl Default for VideoParams {
    fn default() -> Self {
        VideoParams {
            long_share: 0.12,
            short_median_s: 22.0,
            short_sigma: 0.55,
            long_median_s: 300.0,
            long_sigma: 0.6,
            quality_sd: 0.8,
            creator_quality_sd: 0.5,
            creator_zipf: 1.05,
            creator_topic_focus: 0.8,
            latent_noise: 0.45,
            history_days: 60,
            prior_views_scale: 40.0,
        }
    }
}

impl Default for BehaviourParams {
    fn default() -> Self {
        BehaviourParams {
            affinity_weight: 5.0,
            affinity_offset: 0.35,
            quality_weight: 0.6,
            watch_noise: 0.9,
            loop_gain: 1.35,
            long_watch_factor: 0.85,
            like_intercept: -4.0,
            share_intercept: -6.0,
            comment_intercept: -6.3,
            follow_intercept: -6.5,
            engagement_slope: 1.2,
            continue_intercept: 1.9,
            continue_slope: 4.0,
            mood_memory: 0.6,
            max_session_len: 120,
            page_size: 8,
            retention_sensitivity: 4.0,
            satisfaction_memory: 0.85,
            neutral_satisfaction: 0.45,
            gap_ms: 400,
        }
    }
}

impl Default for SurfaceMix {
    fn default() -> Self {
        SurfaceMix {
            reels: 0.6,
            feed: 0.3,
            watch: 0.1,
            concentration: 10.0,
        }
    }
}

/// Parameters that passed [`SimParams::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSimParams(SimParams);

impl std::ops::Deref for ValidSimParams {
    type Target = SimParams;
    fn deref(&self) -> &SimParams {
        &self.0
    }
}

impl ValidSimParams {
    /// The checked parameters.
    pub fn get(&self) -> &SimParams {
        &self.0
    }
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &'static str,
    value: T,
    lo: T,
    hi: T,
) -> Result<()> {
    if value >= lo && value <= hi {
        Ok(())
    } else {
        Err(Error::InvalidParam {
            field,
            allowed: format!("{lo} ..= {hi}"),
            got: value.to_string(),
        })
    }
}

impl SimParams {
    /// Parses a TOML configuration; fields left out keep their defaults, unknown
    /// fields are errors.
    pub fn from_toml(text: &str) -> Result<SimParams> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string()))
    }

    /// The same world with a catalogue of `videos`, the creators capped at
    /// it (a creator needs a video).
    pub fn with_videos(self, videos: usize) -> SimParams {
        SimParams {
            videos,
            creators: self.creators.min(videos),
            ..self
        }
    }

    /// Checks every field against its allowed range.
    pub fn check(self) -> Result<ValidSimParams> {
        let p = &self;
        range("users", p.users, 1, 50_000_000)?;
        range("videos", p.videos, 1, 100_000_000)?;
        range("new_videos_per_day", p.new_videos_per_day, 0, 10_000_000)?;
        range("creators", p.creators, 1, p.videos.max(1))?;
        range("topics", p.topics, 1, 10_000)?;
        range("dim", p.dim, 2, 1024)?;
        range("days", p.days, 1, 3650)?;
        range("new_user_share", p.new_user_share, 0.0, 1.0)?;
        range(
            "surface_taste_divergence",
            p.surface_taste_divergence,
            0.0,
            1.0,
        )?;
        let u = &p.user;
        range("user.activity_median", u.activity_median, 0.0, 1000.0)?;
        range("user.activity_sigma", u.activity_sigma, 0.0, 5.0)?;
        range("user.max_sessions_per_day", u.max_sessions_per_day, 1, 255)?;
        range("user.max_topics", u.max_topics, 1, p.topics)?;
        range("user.taste_noise", u.taste_noise, 0.0, 10.0)?;
        let v = &p.video;
        range("video.long_share", v.long_share, 0.0, 1.0)?;
        range("video.short_median_s", v.short_median_s, 1.0, 3600.0)?;
        range("video.short_sigma", v.short_sigma, 0.0, 5.0)?;
        range("video.long_median_s", v.long_median_s, 1.0, 36_000.0)?;
        range("video.long_sigma", v.long_sigma, 0.0, 5.0)?;
        range("video.quality_sd", v.quality_sd, 0.0, 10.0)?;
        range("video.creator_quality_sd", v.creator_quality_sd, 0.0, 10.0)?;
        range("video.creator_zipf", v.creator_zipf, 0.0, 5.0)?;
        range("video.creator_topic_focus", v.creator_topic_focus, 0.0, 1.0)?;
        range("video.latent_noise", v.latent_noise, 0.0, 10.0)?;
        range("video.history_days", v.history_days, 1, 3650)?;
        range("video.prior_views_scale", v.prior_views_scale, 0.0, 1e9)?;
        let b = &p.behaviour;
        for (field, value) in [
            ("behaviour.affinity_weight", b.affinity_weight),
            ("behaviour.affinity_offset", b.affinity_offset),
            ("behaviour.quality_weight", b.quality_weight),
            ("behaviour.like_intercept", b.like_intercept),
            ("behaviour.share_intercept", b.share_intercept),
            ("behaviour.comment_intercept", b.comment_intercept),
            ("behaviour.follow_intercept", b.follow_intercept),
            ("behaviour.engagement_slope", b.engagement_slope),
            ("behaviour.continue_intercept", b.continue_intercept),
            ("behaviour.continue_slope", b.continue_slope),
            ("behaviour.retention_sensitivity", b.retention_sensitivity),
        ] {
            range(field, value, -100.0, 100.0)?;
        }
        range("behaviour.watch_noise", b.watch_noise, 0.0, 10.0)?;
        range("behaviour.loop_gain", b.loop_gain, 0.1, 5.0)?;
        range(
            "behaviour.long_watch_factor",
            b.long_watch_factor,
            0.01,
            1.0,
        )?;
        range("behaviour.mood_memory", b.mood_memory, 0.0, 0.999)?;
        range("behaviour.max_session_len", b.max_session_len, 1, 10_000)?;
        range("behaviour.page_size", b.page_size, 1, 1_000)?;
        range(
            "behaviour.satisfaction_memory",
            b.satisfaction_memory,
            0.0,
            0.999,
        )?;
        range(
            "behaviour.neutral_satisfaction",
            b.neutral_satisfaction,
            0.0,
            3.0,
        )?;
        range("behaviour.gap_ms", b.gap_ms, 0, 600_000)?;
        let s = &p.surfaces;
        for (field, value) in [
            ("surfaces.reels", s.reels),
            ("surfaces.feed", s.feed),
            ("surfaces.watch", s.watch),
        ] {
            range(field, value, 0.0, 1e6)?;
        }
        if s.reels + s.feed + s.watch <= 0.0 {
            return Err(Error::InvalidParam {
                field: "surfaces",
                allowed: "a positive total of reels + feed + watch".into(),
                got: "0".into(),
            });
        }
        range("surfaces.concentration", s.concentration, 0.01, 1e6)?;
        Ok(ValidSimParams(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_config_is_the_default() -> Result<()> {
        assert_eq!(SimParams::from_toml(DEFAULT_CONFIG)?, SimParams::default());
        SimParams::default().check()?;
        Ok(())
    }

    #[test]
    fn every_field_is_documented() {
        // Each key of the serialised defaults appears in the documented file
        // preceded by a comment line.
        let text = toml::to_string(&SimParams::default()).unwrap_or_default();
        let lines: Vec<&str> = DEFAULT_CONFIG.lines().collect();
        for key in text
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim()))
        {
            let at = lines
                .iter()
                .position(|l| l.starts_with(&format!("{key} =")))
                .unwrap_or_else(|| panic!("{key} missing from default_world.toml"));
            assert!(
                at > 0 && lines[at - 1].starts_with('#'),
                "{key} has no comment"
            );
        }
    }

    #[test]
    fn bad_configs_are_named() {
        let msg = SimParams::from_toml("userz = 3").unwrap_err().to_string();
        assert!(msg.contains("userz"), "{msg}");
        let msg = SimParams::from_toml("users = \"many\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("users"), "{msg}");
        let p = SimParams {
            days: 0,
            ..SimParams::default()
        };
        let msg = p.check().unwrap_err().to_string();
        assert!(
            msg.contains("days") && msg.contains("1 ..= 3650") && msg.contains('0'),
            "{msg}"
        );
        let mut p = SimParams::default();
        p.behaviour.mood_memory = f64::NAN;
        assert!(p.check().is_err());
    }
}
