//! Bayesian personalised ranking (Rendle et al. 2009) trained by stratified
//! parallel SGD (DSGD, Gemulla et al. 2011).
//!
//! Users and items are split into `S` strata by index. An epoch is `S`
//! sub-epochs; in sub-epoch `s`, the `S` blocks `(b, (b + s) mod S)` run in
//! parallel. Blocks of one sub-epoch touch disjoint user rows and disjoint item
//! rows, so the parallel updates need no lock and race on nothing; each block is
//! a serial SGD seeded by `(seed, epoch, block)`, so the result is identical for
//! any thread count. Negatives are drawn from the block's item stratum,
//! rejecting the user's positives.

use std::time::Instant;

use rayon::prelude::*;

use crate::als::{init_factors, EpochReport, TrainControl};
use crate::csr::Csr;
use crate::error::{Error, Result};
use crate::factors::Factors;
use crate::linalg::dot;
use crate::params::ValidTrainParams;
use crate::rng::SplitMix;

/// Number of strata on each side (fixed, so results do not depend on threads).
const STRATA: usize = 8;

/// A raw pointer shared by the blocks of one sub-epoch.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: blocks that run concurrently write disjoint rows (see the module
// docs); the pointer is only dereferenced through `row_mut` on those rows.
unsafe impl Send for Shared {}
// SAFETY: as for `Send`: concurrent blocks touch disjoint rows only.
unsafe impl Sync for Shared {}

impl Shared {
    /// # Safety
    /// `r` must be in bounds and no other live reference may alias row `r`.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    unsafe fn row_mut(&self, r: usize, f: usize) -> &mut [f32] {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(r * f), f) }
    }
}

/// Trains BPR on the positive pairs of `weights` (weights are ignored beyond
/// marking positives).
pub fn train_bpr(
    weights: &Csr,
    p: &ValidTrainParams,
    ctl: &mut TrainControl<'_>,
) -> Result<Factors> {
    if weights.nnz() == 0 {
        return Err(Error::Empty);
    }
    let f = p.factors;
    let (n_users, n_items) = (weights.n_rows(), weights.n_cols());
    let scale = p.init_scale.max(0.1 / (f as f32).sqrt());
    let mut fac = Factors {
        dim: f,
        users: init_factors(n_users, f, scale, p.seed, 2),
        items: init_factors(n_items, f, scale, p.seed, 3),
        item_bias: vec![0f32; n_items],
    };

    // Positive pairs per block (user stratum, item stratum), and items per stratum.
    let mut blocks: Vec<Vec<(u32, u32)>> = vec![Vec::new(); STRATA * STRATA];
    for u in 0..n_users {
        for &i in weights.row(u).0 {
            blocks[(u % STRATA) * STRATA + i as usize % STRATA].push((u as u32, i));
        }
    }
    let stratum_items: Vec<Vec<u32>> = (0..STRATA)
        .map(|s| {
            (0..n_items as u32)
                .filter(|i| *i as usize % STRATA == s)
                .collect()
        })
        .collect();
    tracing::info!(
        n_users,
        n_items,
        nnz = weights.nnz(),
        factors = f,
        "training BPR"
    );

    let lr = p.learning_rate;
    let reg = p.reg;
    for epoch in 1..=p.epochs {
        let _span = tracing::info_span!("bpr_epoch", epoch).entered();
        if ctl.stopped() {
            return Err(Error::Stopped);
        }
        let t = Instant::now();
        let mut epoch_loss = 0f64;
        let mut samples = 0usize;
        for s in 0..STRATA {
            let xs = Shared(fac.users.as_mut_ptr());
            let ys = Shared(fac.items.as_mut_ptr());
            let bs = Shared(fac.item_bias.as_mut_ptr());
            let results: Vec<(f64, usize)> = (0..STRATA)
                .into_par_iter()
                .map(|b| {
                    let is = (b + s) % STRATA;
                    let pairs = &blocks[b * STRATA + is];
                    let cand = &stratum_items[is];
                    let mut rng = SplitMix::new(p.seed, epoch as u64, (b * STRATA + is) as u64);
                    let mut loss = 0f64;
                    let mut n = 0usize;
                    let mut grad_u = vec![0f32; f];
                    for _ in 0..pairs.len() {
                        let (u, i) = pairs[rng.below(pairs.len() as u64) as usize];
                        let (u, i) = (u as usize, i as usize);
                        // A negative from this stratum that the user has not seen.
                        let mut j = None;
                        for _ in 0..16 {
                            let c = cand[rng.below(cand.len() as u64) as usize];
                            if !weights.contains(u, c) {
                                j = Some(c as usize);
                                break;
                            }
                        }
                        let Some(j) = j else { continue };
                        // SAFETY: user row `u` is in stratum `b` and item rows `i`, `j`
                        // in stratum `is`: no other block of this sub-epoch touches
                        // them, and `i != j` since `j` is not a positive of `u`.
                        let (xu, yi, yj, bi, bj) = unsafe {
                            (
                                xs.row_mut(u, f),
                                ys.row_mut(i, f),
                                ys.row_mut(j, f),
                                bs.row_mut(i, 1),
                                bs.row_mut(j, 1),
                            )
                        };
                        let diff = bi[0] - bj[0] + dot(xu, yi) - dot(xu, yj);
                        let sig = 1.0 / (1.0 + diff.exp()); // σ(−x_uij)
                        loss += -(1.0 / (1.0 + (-diff as f64).exp())).ln();
                        n += 1;
                        for k in 0..f {
                            grad_u[k] = sig * (yi[k] - yj[k]) - reg * xu[k];
                        }
                        for k in 0..f {
                            let xk = xu[k];
                            yi[k] += lr * (sig * xk - reg * yi[k]);
                            yj[k] += lr * (-sig * xk - reg * yj[k]);
                            xu[k] += lr * grad_u[k];
                        }
                        bi[0] += lr * (sig - reg * bi[0]);
                        bj[0] += lr * (-sig - reg * bj[0]);
                    }
                    (loss, n)
                })
                .collect();
            for (l, n) in results {
                epoch_loss += l;
                samples += n;
            }
        }
        let report = EpochReport {
            epoch,
            loss: epoch_loss / samples.max(1) as f64,
            seconds: t.elapsed().as_secs_f64(),
        };
        tracing::info!(epoch, loss = report.loss, "epoch done");
        if let Some(cb) = ctl.on_epoch.as_deref_mut() {
            if !cb(&report, &fac) {
                break;
            }
        }
    }
    Ok(fac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Algo, TrainParams};
    use crate::test_util::{on_threads, with_losses};

    fn toy() -> Csr {
        crate::csr::two_taste_groups(60, 40, 8)
    }

    fn params() -> ValidTrainParams {
        TrainParams {
            algo: Algo::Bpr,
            factors: 8,
            epochs: 30,
            learning_rate: 0.05,
            reg: 0.001,
            ..TrainParams::default()
        }
        .check()
        .expect("valid")
    }

    #[test]
    fn bpr_learns_and_is_deterministic_across_threads() -> Result<()> {
        let m = toy();
        let (fac, losses) = with_losses(|c| train_bpr(&m, &params(), c))?;
        assert!(losses[29] < losses[0] * 0.7, "{losses:?}");
        let u = 40;
        let score = |i: usize| dot(fac.user(u), fac.item(i)) + fac.item_bias[i];
        let own: f32 = (20..40).map(score).sum::<f32>() / 20.0;
        let other: f32 = (0..20).map(score).sum::<f32>() / 20.0;
        assert!(own > other, "{own} {other}");
        let run = |t| on_threads(t, || train_bpr(&m, &params(), &mut TrainControl::default()));
        assert_eq!(run(1)?, run(3)?);
        Ok(())
    }
}
