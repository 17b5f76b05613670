//! ε-uniform exploration of a served list, with the exact probability of
//! every video shown: what off-policy evaluation needs from a service's
//! exposure log (`reelkit serve --explore`).
//!
//! The rule is the simulator's (`reelkit_sim::policies::Explore`): the
//! ranker's list `L₁…L_K` is computed as usual; then every slot `j`,
//! independently with probability `ε`, gives its place to a video drawn
//! uniformly from the pool `P` — the videos the request could have been
//! shown (its surface's, not excluded, not in its history) that are not in
//! `L` — the exploring slots drawing distinct videos. Each exploring slot's
//! video is then uniform over `P`, so the probability that `v` is shown at
//! slot `j` of this request is exactly
//!
//! ```text
//! π₀(v, j) = (1 − ε)·[v = L_j] + ε·[v ∈ P] / |P|
//! ```
//!
//! A request whose pool is smaller than its list explores nothing
//! (propensity 1 for every slot): the rule depends on the request alone, so
//! the propensities stay exact. Explored slots ignore the creator cap.

use super::{Ranker, Recommendations, Request};
use crate::rng::SplitMix;

impl Ranker {
    /// Explores `recs` (the answer to `req`) in place with probability
    /// `epsilon` per slot (in (0, 1)), drawing from `seed` (give each
    /// request its own: the same seed, the same draws); returns every
    /// slot's propensity (see the module's text). An explored video's score
    /// is NaN: the model did not rank it there.
    pub fn explore(
        &self,
        recs: &mut Recommendations,
        req: &Request,
        epsilon: f64,
        seed: u64,
    ) -> Vec<f64> {
        let n = recs.items.len();
        let exclude = self.exclusion(req);
        let filter = self.surface_filter(req);
        let listed: Vec<u32> = {
            let mut l: Vec<u32> = recs
                .items
                .iter()
                .filter_map(|r| self.model.items.get(r.item_id))
                .collect();
            l.sort_unstable();
            l
        };
        let in_pool = |i: u32| {
            exclude.binary_search(&i).is_err()
                && listed.binary_search(&i).is_err()
                && filter.is_none_or(|f| f.allows(i))
        };
        let n_items = self.model.items.len() as u32;
        let pool = (0..n_items).filter(|&i| in_pool(i)).count();
        if !(epsilon > 0.0 && epsilon < 1.0) || pool < n.max(1) {
            return vec![1.0; n];
        }
        let mut rng = SplitMix::new(seed, 0x6578_706c, 0);
        let mut unit = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let explored: Vec<bool> = (0..n).map(|_| unit() < epsilon).collect();
        let mut rng = SplitMix::new(seed, 0x6578_706c, 1);
        // A small pool among many items is listed once; a large one is drawn
        // from by rejection (about n_items / |P| tries per draw).
        let listed_pool: Option<Vec<u32>> =
            (pool * 16 < n_items as usize).then(|| (0..n_items).filter(|&i| in_pool(i)).collect());
        let mut drawn: Vec<u32> = Vec::new();
        let mut propensity = Vec::with_capacity(n);
        for (slot, &e) in explored.iter().enumerate() {
            if !e {
                propensity.push(1.0 - epsilon);
                continue;
            }
            let v = loop {
                let v = match &listed_pool {
                    Some(p) => p[rng.below(p.len() as u64) as usize],
                    None => {
                        let v = rng.below(n_items as u64) as u32;
                        if !in_pool(v) {
                            continue;
                        }
                        v
                    }
                };
                if !drawn.contains(&v) {
                    break v;
                }
            };
            drawn.push(v);
            recs.items[slot] = super::Recommendation {
                item_id: self.model.items.id(v),
                score: f32::NAN,
            };
            propensity.push(epsilon / pool as f64);
        }
        propensity
    }
}
