//! Online experiments in the simulator: users hashed into arms, and the ground
//! truth of every built-in metric from each user's potential outcomes.

use reelkit_logs::schema::{is_completed, is_skipped};
use reelkit_logs::{Assignments, Events};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::splitmix64;
use crate::simulate::Arms;
use crate::world::World;

const DAY_MS: i64 = 86_400_000;

/// FNV-1a of a salt string.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The position in `[0, 1)` of `user_id` for an experiment salted `salt`:
/// the 53 high bits of `splitmix64(fnv1a(salt) ^ splitmix64(user_id))`. The
/// same user lands in the same bucket every time; another salt reshuffles.
pub fn bucket(salt: &str, user_id: u64) -> f64 {
    let h = splitmix64(fnv1a(salt) ^ splitmix64(user_id));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Arms {
    /// Every user of `world` hashed into `names` by [`bucket`], arm `a` taking
    /// the share `weights[a] / Σ weights` of the unit interval.
    pub fn hashed(world: &World, names: &[String], weights: &[f64], salt: &str) -> Result<Arms> {
        if names.is_empty() || names.len() > u8::MAX as usize {
            return Err(Error::Config(format!(
                "an experiment needs 1 to 255 arms, got {}",
                names.len()
            )));
        }
        if weights.len() != names.len() {
            return Err(Error::Config(format!(
                "{} arms but {} weights",
                names.len(),
                weights.len()
            )));
        }
        if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
            return Err(Error::Config(format!(
                "arm weights must be positive numbers, got {w}"
            )));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(Error::Config(format!("arm `{dup}` named twice")));
        }
        let total: f64 = weights.iter().sum();
        let mut edges: Vec<f64> = weights
            .iter()
            .scan(0.0, |acc, w| {
                *acc += w / total;
                Some(*acc)
            })
            .collect();
        *edges.last_mut().expect("at least one arm") = 1.0;
        let of_user = world
            .users
            .id
            .iter()
            .map(|&id| {
                let b = bucket(salt, id);
                edges.iter().position(|&e| b < e).unwrap_or(names.len() - 1) as u8
            })
            .collect();
        Ok(Arms {
            names: names.to_vec(),
            of_user,
        })
    }
}

/// One user's outcomes over a period: enough for every built-in metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserTotals {
    pub watch_ms: u64,
    pub impressions: u64,
    pub sessions: u64,
    /// Distinct UTC days with an impression.
    pub active_days: u64,
    pub likes: u64,
    pub shares: u64,
    pub completions: u64,
    pub skips: u64,
    #[serde(skip)]
    last_session: Option<u64>,
    #[serde(skip)]
    last_day: Option<i64>,
}

impl UserTotals {
    /// Adds one user's events, in time order (as the simulator produces them).
    pub fn record(&mut self, events: &[reelkit_logs::Event]) {
        for e in events {
            self.impressions += 1;
            self.watch_ms += e.watch_ms as u64;
            self.likes += e.liked as u64;
            self.shares += e.shared as u64;
            self.completions += is_completed(e.watch_ms, e.duration_ms) as u64;
            self.skips += is_skipped(e.watch_ms, e.duration_ms) as u64;
            if self.last_session != Some(e.session_id) {
                self.sessions += 1;
                self.last_session = Some(e.session_id);
            }
            let day = e.ts_ms.div_euclid(DAY_MS);
            if self.last_day != Some(day) {
                self.active_days += 1;
                self.last_day = Some(day);
            }
        }
    }
}

/// The kind of a built-in metric, as in reelkit-abtest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TruthKind {
    Mean,
    Ratio,
    Proportion,
}

/// Per-user numerator and denominator of each built-in metric, by name: the
/// definitions of reelkit-abtest's built-in Reels metrics.
pub const BUILTIN_METRICS: [(&str, TruthKind); 10] = [
    ("watch_time_per_user", TruthKind::Mean),
    ("impressions_per_user", TruthKind::Mean),
    ("sessions_per_user", TruthKind::Mean),
    ("active_days_per_user", TruthKind::Mean),
    ("like_rate", TruthKind::Ratio),
    ("share_rate", TruthKind::Ratio),
    ("completion_rate", TruthKind::Ratio),
    ("skip_rate", TruthKind::Ratio),
    ("watch_time_per_session", TruthKind::Ratio),
    ("liker_share", TruthKind::Proportion),
];

fn metric_parts(name: &str, t: &UserTotals) -> (f64, f64) {
    let n = t.impressions as f64;
    match name {
        "watch_time_per_user" => (t.watch_ms as f64 / 1000.0, 1.0),
        "impressions_per_user" => (n, 1.0),
        "sessions_per_user" => (t.sessions as f64, 1.0),
        "active_days_per_user" => (t.active_days as f64, 1.0),
        "like_rate" => (t.likes as f64, n),
        "share_rate" => (t.shares as f64, n),
        "completion_rate" => (t.completions as f64, n),
        "skip_rate" => (t.skips as f64, n),
        "watch_time_per_session" => (t.watch_ms as f64 / 1000.0, t.sessions as f64),
        "liker_share" => ((t.likes > 0) as u8 as f64, 1.0),
        other => unreachable!("not a built-in metric: {other}"),
    }
}

/// The population value of a built-in metric: Σ numerator / Σ denominator
/// over the users (a mean when the denominator is 1 per user).
pub fn metric_value(name: &str, totals: impl IntoIterator<Item = UserTotals>) -> f64 {
    let (mut x, mut y) = (0.0, 0.0);
    for t in totals {
        let (a, b) = metric_parts(name, &t);
        x += a;
        y += b;
    }
    if y == 0.0 {
        0.0
    } else {
        x / y
    }
}

/// What an online experiment produced.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// First simulated day of the experiment.
    pub first_day: u32,
    pub days: u32,
    pub arms: Arms,
    /// The observed events (with `variant` when there are several arms).
    pub events: Events,
    /// `potential[user][arm]`: the user's outcomes had they been in that arm,
    /// with common random numbers (the own arm's are the observed ones).
    pub potential: Vec<Vec<UserTotals>>,
}

/// The true effect of one arm against the control on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrueEffect {
    pub metric: String,
    pub kind: TruthKind,
    pub variant: String,
    /// The metric over the whole population, everyone in control.
    pub control_value: f64,
    /// The metric over the whole population, everyone in the variant.
    pub variant_value: f64,
    pub abs_effect: f64,
    /// `abs_effect / control_value` (0 when the control value is 0).
    pub rel_effect: f64,
}

/// `ground_truth.json`: the true average effects over the experiment's users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub control: String,
    /// Users in the experiment (signed up by its last day).
    pub users: usize,
    pub first_day: u32,
    pub days: u32,
    pub definition: String,
    pub effects: Vec<TrueEffect>,
}

impl Experiment {
    /// Users in the experiment: those signed up by its last day.
    pub fn population(&self, world: &World) -> Vec<usize> {
        let last = (self.first_day + self.days.max(1) - 1) as i32;
        (0..world.n_users())
            .filter(|&u| world.users.signup_day[u] <= last)
            .collect()
    }

    /// `user_id, variant` of every user in the experiment.
    pub fn assignments(&self, world: &World) -> Assignments {
        let pop = self.population(world);
        Assignments {
            user_id: pop.iter().map(|&u| world.users.id[u]).collect(),
            variant: pop
                .iter()
                .map(|&u| self.arms.names[self.arms.of_user[u] as usize].clone())
                .collect(),
        }
    }

    /// The true effect of every arm but `control` on every built-in metric.
    pub fn ground_truth(&self, world: &World, control: &str) -> Result<GroundTruth> {
        let c = self
            .arms
            .names
            .iter()
            .position(|n| n == control)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown control arm `{control}` (arms: {})",
                    self.arms.names.join(", ")
                ))
            })?;
        let pop = self.population(world);
        let value = |metric: &str, arm: usize| {
            metric_value(metric, pop.iter().map(|&u| self.potential[u][arm]))
        };
        let mut effects = Vec::new();
        for (a, name) in self.arms.names.iter().enumerate() {
            if a == c {
                continue;
            }
            for (metric, kind) in BUILTIN_METRICS {
                let (cv, vv) = (value(metric, c), value(metric, a));
                let abs = vv - cv;
                effects.push(TrueEffect {
                    metric: metric.to_string(),
                    kind,
                    variant: name.clone(),
                    control_value: cv,
                    variant_value: vv,
                    abs_effect: abs,
                    rel_effect: if cv == 0.0 { 0.0 } else { abs / cv },
                });
            }
        }
        Ok(GroundTruth {
            control: control.to_string(),
            users: pop.len(),
            first_day: self.first_day,
            days: self.days,
            definition: "every experiment user played under every arm with common random \
                         numbers, against the catalogue statistics of the real experiment; \
                         a metric's value is its population mean (Σ numerator / Σ denominator \
                         for ratios)"
                .to_string(),
            effects,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::builtin_policy;
    use crate::{SimParams, Simulator};

    fn world() -> World {
        World::generate(
            &SimParams {
                users: 300,
                videos: 1_500,
                creators: 150,
                new_videos_per_day: 30,
                days: 6,
                seed: 5,
                ..SimParams::default()
            }
            .check()
            .expect("valid params"),
        )
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hashing_follows_the_split_and_the_salt() -> Result<()> {
        let w = World::generate(
            &SimParams {
                users: 20_000,
                videos: 500,
                creators: 50,
                ..SimParams::default()
            }
            .check()?,
        );
        let arms = Arms::hashed(&w, &names(&["control", "treatment"]), &[3.0, 1.0], "exp-1")?;
        let share = arms.of_user.iter().filter(|&&a| a == 1).count() as f64 / 20_000.0;
        // 20,000 draws of p = 0.25: sd 0.003.
        assert!((share - 0.25).abs() < 0.012, "treatment share {share}");
        let again = Arms::hashed(&w, &names(&["control", "treatment"]), &[3.0, 1.0], "exp-1")?;
        assert_eq!(arms.of_user, again.of_user);
        let other = Arms::hashed(&w, &names(&["control", "treatment"]), &[3.0, 1.0], "exp-2")?;
        let moved = arms
            .of_user
            .iter()
            .zip(&other.of_user)
            .filter(|(a, b)| a != b)
            .count() as f64
            / 20_000.0;
        // Independent salts: P(differ) = 2 · 0.25 · 0.75 = 0.375.
        assert!((moved - 0.375).abs() < 0.03, "{moved}");
        assert!(Arms::hashed(&w, &names(&["a", "b"]), &[1.0, 0.0], "s").is_err());
        assert!(Arms::hashed(&w, &names(&["a", "a"]), &[1.0, 1.0], "s").is_err());
        assert!(Arms::hashed(&w, &names(&["a", "b"]), &[1.0], "s").is_err());
        assert!(Arms::hashed(&w, &names(&["a", "b"]), &[1.0, f64::NAN], "s").is_err());
        Ok(())
    }

    fn totals_by_user(world: &World, ev: &Events) -> Vec<UserTotals> {
        let index: std::collections::HashMap<u64, usize> = world
            .users
            .id
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i))
            .collect();
        let mut per_user = vec![Vec::new(); world.n_users()];
        for i in 0..ev.len() {
            per_user[index[&ev.user_id[i]]].push(ev.get(i));
        }
        per_user
            .iter()
            .map(|events| {
                let mut t = UserTotals::default();
                t.record(events);
                t
            })
            .collect()
    }

    #[test]
    fn potential_outcomes_match_the_observed_arm_and_vanish_in_a_a() -> Result<()> {
        let w = world();
        let mut sim = Simulator::new(&w);
        let mut popular = builtin_policy("popular")?;
        sim.run(2, popular.as_mut(), &|_| {})?;
        let arms = Arms::hashed(&w, &names(&["control", "treatment"]), &[1.0, 1.0], "t")?;

        // A/A: both arms run the same policy; with common random numbers every
        // user's two potential outcomes are identical and the truth is zero.
        let mut aa = sim.clone();
        let (mut p0, mut p1) = (builtin_policy("popular")?, builtin_policy("popular")?);
        let exp = aa.run_experiment(3, &mut [p0.as_mut(), p1.as_mut()], &arms, &|_| {})?;
        assert!(exp.potential.iter().all(|p| p[0] == p[1]));
        let truth = exp.ground_truth(&w, "control")?;
        assert!(truth.effects.iter().all(|e| e.abs_effect == 0.0));

        // A/B: the observed events are each user's own potential outcome.
        let mut ab = sim.clone();
        let (mut c, mut t) = (builtin_policy("popular")?, builtin_policy("oracle")?);
        let exp = ab.run_experiment(3, &mut [c.as_mut(), t.as_mut()], &arms, &|_| {})?;
        let observed = totals_by_user(&w, &exp.events);
        for (u, obs) in observed.iter().enumerate() {
            let own = arms.of_user[u] as usize;
            assert_eq!(
                (obs.watch_ms, obs.sessions, obs.active_days, obs.likes),
                (
                    exp.potential[u][own].watch_ms,
                    exp.potential[u][own].sessions,
                    exp.potential[u][own].active_days,
                    exp.potential[u][own].likes
                ),
                "user {u}"
            );
        }
        // Users in treatment had their control outcome played too, and the
        // oracle's truth is large and positive.
        let truth = exp.ground_truth(&w, "control")?;
        let watch = truth
            .effects
            .iter()
            .find(|e| e.metric == "watch_time_per_user")
            .expect("watch time");
        assert!(watch.rel_effect > 0.5, "{watch:?}");
        assert!(exp.ground_truth(&w, "nope").is_err());

        // Playing the counterfactual arm does not disturb the real run: with
        // everyone in control, the events are those of a plain run.
        let mut plain = sim.clone();
        let mut p = builtin_policy("popular")?;
        let expected = plain.run(3, p.as_mut(), &|_| {})?;
        let ctl = Arms {
            names: names(&["control", "treatment"]),
            of_user: vec![0; w.n_users()],
        };
        let (mut c2, mut t2) = (builtin_policy("popular")?, builtin_policy("oracle")?);
        let mut all_control = sim.clone();
        let got = all_control.run_experiment(3, &mut [c2.as_mut(), t2.as_mut()], &ctl, &|_| {})?;
        assert_eq!(got.events.len(), expected.len());
        assert_eq!(got.events.watch_ms, expected.watch_ms);
        assert_eq!(got.events.video_id, expected.video_id);
        Ok(())
    }
}
