//! Hashing users into the arms of an experiment.

use crate::error::{Error, Result};
use crate::world::World;

/// How users are split into arms. With one arm, no `variant` column is written.
#[derive(Debug, Clone)]
pub struct Arms {
    /// Arm names, written as `variant`.
    pub names: Vec<String>,
    /// Arm index of each user (row in `world.users`).
    pub of_user: Vec<u8>,
}

/// Where a user falls in `[0, 1)` for a salt: `reelkit_assign::bucket`, the
/// hash the server and `reelkit ab assign` use too.
pub use reelkit_assign::bucket;

impl Arms {
    /// Every user of `world` hashed into `names` by [`bucket`], arm `a` taking
    /// the share `weights[a] / Σ weights` of the unit interval.
    pub fn hashed(world: &World, names: &[String], weights: &[f64], salt: &str) -> Result<Arms> {
        if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
            return Err(Error::Config(format!(
                "arm weights must be positive numbers, got {w}"
            )));
        }
        let total: f64 = weights.iter().sum();
        let shares: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let split = reelkit_assign::Allocation::new(names, &shares)
            .map_err(|e| Error::Config(e.to_string()))?;
        let of_user = world
            .users
            .id
            .iter()
            .map(|&id| split.arm(salt, id) as u8)
            .collect();
        Ok(Arms {
            names: names.to_vec(),
            of_user,
        })
    }

    /// Checks that the split covers `world`'s users and names `policies` arms.
    pub(crate) fn check(&self, world: &World, policies: usize) -> Result<()> {
        if self.of_user.len() != world.n_users() {
            return Err(Error::Config(format!(
                "the split assigns {} users but the world has {}",
                self.of_user.len(),
                world.n_users()
            )));
        }
        if self.names.len() != policies {
            return Err(Error::Config(format!(
                "{} arms but {} policies",
                self.names.len(),
                policies
            )));
        }
        if let Some(&a) = self
            .of_user
            .iter()
            .find(|&&a| a as usize >= self.names.len())
        {
            return Err(Error::Config(format!(
                "a user is in arm {a} but there are {} arms",
                self.names.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimParams;

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
}
