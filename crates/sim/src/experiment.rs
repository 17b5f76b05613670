//! Online experiments in the simulator: every user played under every arm
//! with common random numbers, so each user's potential outcomes are known.

use reelkit_logs::{Assignments, Events};

use crate::arms::Arms;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::simulate::{Simulator, UserState};
use crate::world::World;

/// What an online experiment produced.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// First simulated day of the experiment.
    pub first_day: u32,
    /// Experiment days simulated.
    pub days: u32,
    /// The arms and how users were split between them.
    pub arms: Arms,
    /// The observed events (with `variant` when there are several arms).
    pub events: Events,
    /// `potential[a]`: every user's events had they been in arm `a`, with
    /// common random numbers (the same session, watch and engagement draws),
    /// against the catalogue statistics of the real experiment. A user's own
    /// arm's are the observed ones. No `variant` column.
    pub potential: Vec<Events>,
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
}

/// An online experiment played one day at a time, so that the policies can
/// change between days (a ranker retrained on the events so far).
#[derive(Debug)]
pub struct ExperimentRun<'s, 'w> {
    sim: &'s mut Simulator<'w>,
    arms: Arms,
    /// `cf[u][a]`: user `u`'s state under arm `a` (`None` for the own arm).
    cf: Vec<Vec<Option<UserState>>>,
    first_day: u32,
    /// Observed events, one entry per day played.
    observed: Vec<Events>,
    /// `potential[a][d]`: every user's events under arm `a` on day `d` played.
    potential: Vec<Vec<Events>>,
}

impl<'w> ExperimentRun<'_, 'w> {
    /// Plays the next day, each user served by their arm's policy and, from
    /// their own state under every other arm, by that arm's policy too.
    pub fn step(&mut self, policies: &mut [&mut dyn Policy]) -> Result<&Events> {
        self.arms.check(self.sim.world, policies.len())?;
        let mut today = vec![Events::default(); self.arms.names.len()];
        let day = self
            .sim
            .run_day(policies, &self.arms, &mut self.cf, &mut today)?;
        for (p, t) in self.potential.iter_mut().zip(today) {
            p.push(t);
        }
        self.observed.push(day);
        Ok(&self.observed[self.observed.len() - 1])
    }

    /// The simulated day the next [`ExperimentRun::step`] plays.
    pub fn day(&self) -> u32 {
        self.sim.day()
    }

    /// The observed events so far, one entry per day played.
    pub fn observed(&self) -> &[Events] {
        &self.observed
    }

    /// Every user's events under arm `arm` so far (its own users' observed
    /// ones and everyone else's counterfactual play), one entry per day: what
    /// the arm's policy would have logged had it served everyone.
    pub fn potential(&self, arm: usize) -> &[Events] {
        &self.potential[arm]
    }

    /// The split.
    pub fn arms(&self) -> &Arms {
        &self.arms
    }

    /// Ends the experiment. The simulator continues from the observed states.
    pub fn finish(self) -> Experiment {
        let mut events = Events::default();
        if self.arms.names.len() > 1 {
            events.variant = Some(Vec::new());
        }
        let days = self.observed.len() as u32;
        for mut day in self.observed {
            events.append(&mut day);
        }
        let potential = self
            .potential
            .into_iter()
            .map(|days| {
                let mut all = Events::default();
                for mut d in days {
                    all.append(&mut d);
                }
                all
            })
            .collect();
        Experiment {
            first_day: self.first_day,
            days,
            arms: self.arms,
            events,
            potential,
        }
    }
}

impl<'w> Simulator<'w> {
    /// Starts an online experiment from the current state: each user is
    /// served by their arm's policy (the observed events) and is also played,
    /// from their own state now, under every other arm (the counterfactuals).
    pub fn start_experiment(&mut self, arms: &Arms) -> Result<ExperimentRun<'_, 'w>> {
        arms.check(self.world, arms.names.len())?;
        let n_arms = arms.names.len();
        let cf = self
            .users
            .iter()
            .zip(&arms.of_user)
            .map(|(s, &own)| {
                (0..n_arms)
                    .map(|a| (a != own as usize).then(|| s.clone()))
                    .collect()
            })
            .collect();
        Ok(ExperimentRun {
            first_day: self.day(),
            sim: self,
            arms: arms.clone(),
            cf,
            observed: Vec::new(),
            potential: vec![Vec::new(); n_arms],
        })
    }

    /// Runs an online experiment of `days` days with fixed policies (see
    /// [`Simulator::start_experiment`]).
    pub fn run_experiment(
        &mut self,
        days: u32,
        policies: &mut [&mut dyn Policy],
        arms: &Arms,
        progress: &(dyn Fn(u32) + Sync),
    ) -> Result<Experiment> {
        if policies.len() != arms.names.len() {
            return Err(Error::Config(format!(
                "{} arms but {} policies",
                arms.names.len(),
                policies.len()
            )));
        }
        let mut run = self.start_experiment(arms)?;
        for _ in 0..days {
            run.step(policies)?;
            progress(run.day());
        }
        Ok(run.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::builtin_policy;
    use crate::SimParams;

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

    /// The rows of `ev` whose user is in `users`.
    fn rows_of(ev: &Events, users: &std::collections::HashSet<u64>) -> Vec<(u64, u64, u32)> {
        (0..ev.len())
            .filter(|&i| users.contains(&ev.user_id[i]))
            .map(|i| (ev.user_id[i], ev.video_id[i], ev.watch_ms[i]))
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
        // user's two potential outcomes are identical.
        let mut aa = sim.clone();
        let (mut p0, mut p1) = (builtin_policy("popular")?, builtin_policy("popular")?);
        let exp = aa.run_experiment(3, &mut [p0.as_mut(), p1.as_mut()], &arms, &|_| {})?;
        assert_eq!(exp.potential[0].video_id, exp.potential[1].video_id);
        assert_eq!(exp.potential[0].watch_ms, exp.potential[1].watch_ms);
        assert_eq!(exp.potential[0].len(), exp.events.len());

        // A/B: the observed events are each user's own potential outcome.
        let mut ab = sim.clone();
        let (mut c, mut t) = (builtin_policy("popular")?, builtin_policy("oracle")?);
        let exp = ab.run_experiment(3, &mut [c.as_mut(), t.as_mut()], &arms, &|_| {})?;
        for (a, name) in arms.names.iter().enumerate() {
            let users: std::collections::HashSet<u64> = (0..w.n_users())
                .filter(|&u| arms.of_user[u] as usize == a)
                .map(|u| w.users.id[u])
                .collect();
            assert_eq!(
                rows_of(&exp.events, &users),
                rows_of(&exp.potential[a], &users),
                "arm {name}"
            );
            assert!(exp
                .events
                .variant
                .as_ref()
                .is_some_and(|v| v.iter().any(|x| x == name)));
        }
        // The oracle's world is better: more watch time, everyone counted.
        let watch = |ev: &Events| ev.watch_ms.iter().map(|&x| x as f64).sum::<f64>();
        assert!(watch(&exp.potential[1]) > 1.3 * watch(&exp.potential[0]));

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
        assert_eq!(got.potential[0].video_id, expected.video_id);

        // A split that does not fit the world is an error, not a panic.
        let bad = Arms {
            names: names(&["a"]),
            of_user: vec![0; 3],
        };
        assert!(sim.clone().start_experiment(&bad).is_err());
        Ok(())
    }

    #[test]
    fn stepping_equals_running() -> Result<()> {
        let w = world();
        let arms = Arms::hashed(&w, &names(&["a", "b"]), &[1.0, 1.0], "s")?;
        let mut one = Simulator::new(&w);
        let (mut a, mut b) = (builtin_policy("popular")?, builtin_policy("random")?);
        let whole = one.run_experiment(3, &mut [a.as_mut(), b.as_mut()], &arms, &|_| {})?;
        let mut two = Simulator::new(&w);
        let mut run = two.start_experiment(&arms)?;
        for _ in 0..3 {
            let (mut a, mut b) = (builtin_policy("popular")?, builtin_policy("random")?);
            run.step(&mut [a.as_mut(), b.as_mut()])?;
        }
        assert_eq!(run.observed().len(), 3);
        let stepped = run.finish();
        assert_eq!(stepped.events.video_id, whole.events.video_id);
        assert_eq!(stepped.potential[1].watch_ms, whole.potential[1].watch_ms);
        Ok(())
    }
}
