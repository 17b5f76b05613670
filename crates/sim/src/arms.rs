//! Hashing users into the arms of an experiment.

use crate::error::{Error, Result};
use crate::rng::splitmix64;
use crate::world::World;

/// How users are split into arms. With one arm, no `variant` column is written.
#[derive(Debug, Clone)]
pub struct Arms {
    /// Arm names, written as `variant`.
    pub names: Vec<String>,
    /// Arm index of each user (row in `world.users`).
    pub of_user: Vec<u8>,
}

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
        if let Some(last) = edges.last_mut() {
            *last = 1.0;
        }
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
