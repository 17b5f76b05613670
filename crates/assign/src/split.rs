//! Users hashed into arms.

use crate::{fnv1a, splitmix64};

/// Why a split could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The arm list or one of its weights is unusable; the message names it.
    #[error("bad arms: {0}")]
    Arms(String),
}

/// The position in `[0, 1)` of `user_id` for an experiment salted `salt`:
/// the 53 high bits of `splitmix64(fnv1a(salt) ^ splitmix64(user_id))`. The
/// same user lands in the same place every time; another salt reshuffles.
pub fn bucket(salt: &str, user_id: u64) -> f64 {
    let h = splitmix64(fnv1a(salt) ^ splitmix64(user_id));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Named arms, arm `a` taking the share `weights[a]` of the unit interval in
/// the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    names: Vec<String>,
    weights: Vec<f64>,
    /// Upper edge of each arm's interval; the last is exactly 1.
    edges: Vec<f64>,
}

impl Allocation {
    /// Arms with these weights, which must be positive and sum to 1 (within
    /// 1e-6); names must be distinct, non-empty and at most 255 of them.
    pub fn new(names: &[String], weights: &[f64]) -> Result<Allocation, Error> {
        if names.is_empty() || names.len() > u8::MAX as usize {
            return Err(Error::Arms(format!(
                "an experiment needs 1 to 255 arms, got {}",
                names.len()
            )));
        }
        if weights.len() != names.len() {
            return Err(Error::Arms(format!(
                "{} arms but {} weights",
                names.len(),
                weights.len()
            )));
        }
        for (n, w) in names.iter().zip(weights) {
            if n.is_empty() {
                return Err(Error::Arms("an arm has an empty name".into()));
            }
            if !(w.is_finite() && *w > 0.0) {
                return Err(Error::Arms(format!(
                    "arm `{n}` has weight {w}; weights must be positive numbers"
                )));
            }
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(Error::Arms(format!("arm `{dup}` is named twice")));
        }
        let total: f64 = weights.iter().sum();
        if (total - 1.0).abs() > 1e-6 {
            return Err(Error::Arms(format!(
                "weights sum to {total}, not 1 ({})",
                names
                    .iter()
                    .zip(weights)
                    .map(|(n, w)| format!("{n}={w}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
        let mut acc = 0.0;
        let mut edges: Vec<f64> = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        if let Some(last) = edges.last_mut() {
            *last = 1.0;
        }
        Ok(Allocation {
            names: names.to_vec(),
            weights: weights.to_vec(),
            edges,
        })
    }

    /// Parses `name=weight,name=weight,...`, e.g. `control=0.5,treatment=0.5`.
    pub fn parse(s: &str) -> Result<Allocation, Error> {
        let mut names = Vec::new();
        let mut weights = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (name, w) = part.split_once('=').ok_or_else(|| {
                Error::Arms(format!(
                    "`{part}` is not name=weight (expected e.g. control=0.5,treatment=0.5)"
                ))
            })?;
            let w: f64 = w.trim().parse().map_err(|_| {
                Error::Arms(format!(
                    "the weight of arm `{}` is not a number: `{w}`",
                    name.trim()
                ))
            })?;
            names.push(name.trim().to_string());
            weights.push(w);
        }
        Allocation::new(&names, &weights)
    }

    /// The arm of `user_id` under `salt`: an index into [`Allocation::names`].
    pub fn arm(&self, salt: &str, user_id: u64) -> usize {
        let b = bucket(salt, user_id);
        self.edges
            .iter()
            .position(|&e| b < e)
            .unwrap_or(self.names.len() - 1)
    }

    /// The arms' names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The arms' weights, in order.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_the_weights_within_four_standard_errors() -> Result<(), Error> {
        let split = Allocation::parse("control=0.7, treatment=0.2,holdout=0.1")?;
        let n = 100_000;
        let mut counts = [0usize; 3];
        for u in 0..n {
            counts[split.arm("exp-1", u)] += 1;
        }
        for (c, p) in counts.iter().zip([0.7, 0.2, 0.1]) {
            let share = *c as f64 / n as f64;
            let se = (p * (1.0 - p) / n as f64).sqrt();
            assert!((share - p).abs() < 4.0 * se, "share {share} for weight {p}");
        }
        // Another salt reshuffles: P(same arm) = 0.7² + 0.2² + 0.1² = 0.54.
        let same = (0..n)
            .filter(|&u| split.arm("exp-1", u) == split.arm("exp-2", u))
            .count() as f64
            / n as f64;
        assert!((same - 0.54).abs() < 0.01, "{same}");
        Ok(())
    }

    #[test]
    fn bad_splits_name_what_is_wrong() {
        let err = |s: &str| Allocation::parse(s).unwrap_err().to_string();
        assert!(
            err("a=0.5,b=0.4").contains("sum to 0.9"),
            "{}",
            err("a=0.5,b=0.4")
        );
        assert!(err("a=0.5,a=0.5").contains("`a` is named twice"));
        assert!(err("a=0.5,b").contains("`b` is not name=weight"));
        assert!(err("a=x,b=1").contains("arm `a` is not a number"));
        assert!(err("a=1.5,b=-0.5").contains("arm `b` has weight -0.5"));
        assert!(err("a=NaN,b=1").contains("arm `a` has weight NaN"));
        assert!(err("=1").contains("empty name"));
        assert!(Allocation::parse("all=1").is_ok());
    }

    #[test]
    fn the_bucket_is_the_simulators() {
        // Pinned values: the simulator's committed experiments depend on them.
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        let b = bucket("demo", 7);
        assert!((0.0..1.0).contains(&b));
        assert_eq!(b, bucket("demo", 7));
        assert_ne!(b, bucket("demo2", 7));
    }
}
