//! A logging policy that explores, with the exact probability of every
//! impression: what off-policy evaluation needs from a log.
//!
//! [`Explore`] wraps any policy. For each page the wrapped policy fills its
//! list `L₁…L_K`; then every slot `j`, independently with probability `ε`,
//! gives its place to a video drawn uniformly from the pool `P` (the
//! surface's eligible videos the user has not seen and that are not in `L`),
//! the exploring slots drawing distinct videos. By exchangeability each
//! exploring slot's video is uniform over `P`, so the probability that the
//! logging policy shows video `v` at slot `j` of this request is exactly
//!
//! ```text
//! π₀(v, j) = (1 − ε)·[v = L_j] + ε·[v ∈ P] / |P|
//! ```
//!
//! and that is the propensity the simulator writes beside the impression.
//! A page whose pool is smaller than the page explores nothing (propensity 1
//! for every slot): the rule depends on the request only, so every
//! propensity stays exact. Every video outside the user's seen set has a
//! positive probability somewhere on the page, which is what lets an
//! estimator weigh any candidate's choice.
//!
//! [`Explore::within_top`] draws from a narrower pool: the `m` videos the
//! wrapped policy lists after its page (it is asked for `K + m`), so the log
//! supports a candidate wherever it ranks what the logging policy nearly
//! showed, at weights of about `m / ε` instead of `|P| / ε`, and no other
//! choice of it. The same formula holds with that pool.

use crate::error::{Error, Result};
use crate::policy::{DayContext, FeedRequest, Policy, Scratch};
use crate::rng::Rng;

/// A policy shown with `ε`-exploration (see the module's text). The
/// wrapped policy may draw at random itself (fresh-upload slots): the
/// propensities are then conditional on its draw, which keeps them valid
/// importance weights since every unseen video keeps a positive probability
/// whatever it drew.
pub struct Explore<P = Box<dyn Policy>> {
    /// The policy whose list is explored.
    pub inner: P,
    epsilon: f64,
    /// Draw from the inner policy's next `m` videos instead of every
    /// eligible unseen one.
    top: Option<usize>,
}

impl<P: Policy> std::fmt::Debug for Explore<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Explore")
            .field("inner", &self.inner.name())
            .field("epsilon", &self.epsilon)
            .field("top", &self.top)
            .finish()
    }
}

impl<P: Policy> Explore<P> {
    /// `inner` with each slot explored with probability `epsilon`, which
    /// must lie in (0, 1): 0 logs nothing an estimator can use beyond the
    /// inner policy's own choices, 1 is the random policy.
    pub fn new(inner: P, epsilon: f64) -> Result<Explore<P>> {
        if !(epsilon > 0.0 && epsilon < 1.0) {
            return Err(Error::InvalidParam {
                field: "explore",
                allowed: "(0, 1) (the share of slots explored)".into(),
                got: epsilon.to_string(),
            });
        }
        Ok(Explore {
            inner,
            epsilon,
            top: None,
        })
    }

    /// `inner` with each slot explored with probability `epsilon` among the
    /// `m` videos `inner` lists after the page (asked for the page and `m`
    /// more); `m` below the page size explores nothing (a pool smaller than
    /// the page). A policy that walks one list per user-day passes over the
    /// `m` as it would over a page shown.
    pub fn within_top(inner: P, epsilon: f64, m: usize) -> Result<Explore<P>> {
        if m == 0 {
            return Err(Error::InvalidParam {
                field: "explore_top",
                allowed: "[1, ∞) (the videos after the page that exploration draws from)".into(),
                got: m.to_string(),
            });
        }
        let mut e = Explore::new(inner, epsilon)?;
        e.top = Some(m);
        Ok(e)
    }

    /// [`Policy::fill`] exploring among the inner policy's next `m` videos.
    fn fill_within_top(
        &self,
        req: &FeedRequest<'_>,
        m: usize,
        state: &mut Scratch,
        rng: &mut Rng,
        out: &mut Vec<u32>,
        start: usize,
    ) {
        let longer = FeedRequest {
            n: req.n + m,
            ..*req
        };
        self.inner.fill(&longer, state, rng, out);
        let page = (out.len() - start).min(req.n);
        // The pool: what the inner policy listed after the page, once each,
        // unseen and eligible (a policy's list should be, but the
        // propensities must not depend on it).
        let mut pool: Vec<u32> = Vec::with_capacity(m);
        for i in start + page..out.len() {
            let v = out[i];
            if req.eligible.binary_search(&v).is_ok()
                && !req.seen.contains(&v)
                && !out[start..start + page].contains(&v)
                && !pool.contains(&v)
            {
                pool.push(v);
            }
        }
        out.truncate(start + page);
        state.propensity.clear();
        if page == 0 {
            return;
        }
        if pool.len() < page {
            state.propensity.resize(page, 1.0);
            return;
        }
        let explored: Vec<usize> = (0..page).filter(|_| rng.bernoulli(self.epsilon)).collect();
        let explore_p = self.epsilon / pool.len() as f64;
        state.propensity.resize(page, 1.0 - self.epsilon);
        for &slot in &explored {
            let at = rng.below(pool.len() as u64) as usize;
            out[start + slot] = pool.swap_remove(at);
            state.propensity[slot] = explore_p;
        }
    }
}

impl<P: Policy> Policy for Explore<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn begin_day(&mut self, ctx: &DayContext<'_>) -> Result<()> {
        self.inner.begin_day(ctx)
    }

    fn fill(&self, req: &FeedRequest<'_>, state: &mut Scratch, rng: &mut Rng, out: &mut Vec<u32>) {
        let start = out.len();
        if let Some(m) = self.top {
            return self.fill_within_top(req, m, state, rng, out, start);
        }
        self.inner.fill(req, state, rng, out);
        let page = out.len() - start;
        state.propensity.clear();
        if page == 0 {
            return;
        }
        let eligible = req.eligible;
        let list = &out[start..];
        let unseen_eligible = |v: &u32| eligible.binary_search(v).is_ok() && !req.seen.contains(v);
        let seen_eligible = req
            .seen
            .iter()
            .filter(|v| eligible.binary_search(v).is_ok())
            .count();
        let listed = list
            .iter()
            .enumerate()
            .filter(|&(i, v)| unseen_eligible(v) && !list[..i].contains(v))
            .count();
        let pool = eligible.len() - seen_eligible - listed;
        if pool < page {
            state.propensity.resize(page, 1.0);
            return;
        }
        let explored: Vec<usize> = (0..page).filter(|_| rng.bernoulli(self.epsilon)).collect();
        let mut drawn: Vec<u32> = Vec::with_capacity(explored.len());
        let fresh = |v: u32, drawn: &[u32]| {
            !req.seen.contains(&v) && !list.contains(&v) && !drawn.contains(&v)
        };
        let mut tries = 0;
        while drawn.len() < explored.len() && tries < 64 * page {
            tries += 1;
            let v = eligible[rng.below(eligible.len() as u64) as usize];
            if fresh(v, &drawn) {
                drawn.push(v);
            }
        }
        if drawn.len() < explored.len() {
            // A pool that is a small part of the eligible videos: draw the
            // rest from the pool listed (still uniform, still distinct).
            let mut rest: Vec<u32> = eligible
                .iter()
                .copied()
                .filter(|&v| fresh(v, &drawn))
                .collect();
            while drawn.len() < explored.len() {
                let at = rng.below(rest.len() as u64) as usize;
                drawn.push(rest.swap_remove(at));
            }
        }
        let explore_p = self.epsilon / pool as f64;
        state.propensity.resize(page, 1.0 - self.epsilon);
        for (&slot, &v) in explored.iter().zip(&drawn) {
            out[start + slot] = v;
            state.propensity[slot] = explore_p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PopularPolicy, SeenSet};
    use crate::SimParams;
    use crate::World;
    use reelkit_logs::Surface;

    /// A fixed list of ten (the inner policy) over 40 eligible videos.
    #[derive(Debug)]
    struct Fixed;

    impl Policy for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn fill(&self, req: &FeedRequest<'_>, _: &mut Scratch, _: &mut Rng, out: &mut Vec<u32>) {
            out.extend(
                (0..req.n as u32)
                    .filter(|v| !req.seen.contains(v))
                    .take(req.n),
            );
        }
    }

    fn world() -> World {
        let p = SimParams {
            users: 5,
            videos: 60,
            creators: 10,
            days: 1,
            ..SimParams::default()
        };
        World::generate(&p.check().expect("valid"))
    }

    /// A request for a page of ten of `eligible` on reels.
    fn page_of_ten<'a>(w: &'a World, seen: &'a SeenSet, eligible: &'a [u32]) -> FeedRequest<'a> {
        FeedRequest {
            world: w,
            day: 0,
            user: 0,
            surface: Surface::Reels,
            session_id: 0,
            session_position: 0,
            seen,
            eligible,
            n: 10,
            ts_ms: 0,
            request_id: 0,
        }
    }

    #[test]
    fn propensities_are_the_exact_frequencies_of_each_video_at_each_slot() {
        // Pool: 40 eligible − 2 seen − 10 listed = 28.
        let policy = Explore::new(Fixed, 0.3).expect("valid");
        frequencies_are(&policy, |j, v| {
            if v as usize == j {
                0.7
            } else if (10..40).contains(&v) && v != 35 && v != 36 {
                0.3 / 28.0
            } else {
                0.0
            }
        });
    }

    #[test]
    fn exploring_within_the_policys_next_videos_draws_only_from_them() {
        // The inner policy lists 22: the page 0..10, the pool 10..22.
        let policy = Explore::within_top(Fixed, 0.3, 12).expect("valid");
        frequencies_are(&policy, |j, v| {
            if v as usize == j {
                0.7
            } else if (10..22).contains(&v) {
                0.3 / 12.0
            } else {
                0.0
            }
        });
        assert!(Explore::within_top(Fixed, 0.3, 0).is_err());
    }

    /// Over 200,000 pages of ten from 40 eligible videos (35 and 36 seen),
    /// each video's frequency at each slot is `want(slot, video)` and the
    /// propensity logged with it is exactly that.
    fn frequencies_are(policy: &impl Policy, want: impl Fn(usize, u32) -> f64) {
        let w = world();
        let eligible: Vec<u32> = (0..40).collect();
        let mut seen = SeenSet::default();
        seen.insert(35);
        seen.insert(36);
        let req = page_of_ten(&w, &seen, &eligible);
        let runs = 200_000;
        let mut counts = vec![[0u32; 40]; 10];
        let mut props = vec![[0f64; 40]; 10];
        let mut scratch = Scratch::default();
        for r in 0..runs {
            let mut rng = Rng::stream(7, &[r]);
            let mut out = Vec::new();
            policy.fill(&req, &mut scratch, &mut rng, &mut out);
            assert_eq!(out.len(), 10);
            assert_eq!(scratch.propensity.len(), 10);
            let mut sorted = out.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 10, "a video twice on one page: {out:?}");
            for (j, &v) in out.iter().enumerate() {
                assert!(!seen.contains(&v), "a seen video shown");
                counts[j][v as usize] += 1;
                props[j][v as usize] = scratch.propensity[j];
            }
        }
        for j in 0..10 {
            for v in 0..40u32 {
                let want = want(j, v);
                let freq = counts[j][v as usize] as f64 / runs as f64;
                let se = (want * (1.0 - want) / runs as f64).sqrt();
                assert!(
                    (freq - want).abs() <= 5.0 * se + 1e-12,
                    "slot {j} video {v}: {freq} vs {want}"
                );
                if counts[j][v as usize] > 0 {
                    assert!(
                        (props[j][v as usize] - want).abs() < 1e-12,
                        "slot {j} video {v}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_pool_smaller_than_the_page_explores_nothing_and_says_so() {
        let w = world();
        let eligible: Vec<u32> = (0..14).collect();
        let seen = SeenSet::default();
        let policy = Explore::new(Fixed, 0.5).expect("valid");
        let req = page_of_ten(&w, &seen, &eligible);
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        policy.fill(&req, &mut scratch, &mut Rng::stream(1, &[]), &mut out);
        assert_eq!(out, (0..10).collect::<Vec<u32>>());
        assert_eq!(scratch.propensity, vec![1.0; 10]);
    }

    #[test]
    fn the_rate_must_lie_strictly_between_zero_and_one() {
        for bad in [0.0, 1.0, -0.1, f64::NAN, 2.0] {
            let e = Explore::new(PopularPolicy::default(), bad).expect_err("refused");
            assert!(e.to_string().contains("explore"), "{e}");
        }
    }

    #[test]
    fn a_simulated_log_carries_every_impressions_propensity() -> Result<()> {
        let p = SimParams {
            users: 200,
            videos: 400,
            creators: 50,
            days: 2,
            ..SimParams::default()
        }
        .check()?;
        let w = World::generate(&p);
        let plain = crate::Simulator::new(&w).run(
            2,
            crate::builtin_policy("popular")?.as_mut(),
            &|_| {},
        )?;
        assert!(
            plain.propensity.is_none(),
            "an unexplored log has no propensity column"
        );
        let mut explore: Explore = Explore::new(crate::builtin_policy("popular")?, 0.2)?;
        let ev = crate::Simulator::new(&w).run(2, &mut explore, &|_| {})?;
        let props = ev.propensity.as_ref().expect("a propensity column");
        assert_eq!(props.len(), ev.len());
        let kept = props.iter().filter(|&&x| x == 0.8).count() as f64 / props.len() as f64;
        let explored = props.iter().filter(|&&x| x > 0.0 && x < 0.2 / 10.0).count();
        assert_eq!(
            props.iter().filter(|&&x| x == 0.8 || x == 1.0).count() + explored,
            props.len(),
            "every propensity is 1 − ε, 1 or ε/|pool| (pools above the page size)"
        );
        assert!((kept - 0.8).abs() < 0.03, "share of kept slots {kept}");
        Ok(())
    }
}
