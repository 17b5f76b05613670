//! Implicit ALS (Hu, Koren & Volinsky 2008) with a warm-started
//! conjugate-gradient solver (Takács, Pilászy & Tikk 2011), as in `implicit`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::csr::Csr;
use crate::error::{Error, Result};
use crate::factors::Factors;
use crate::linalg::{cg_dispatch, cg_dispatch_block, dot, gram, RowProblem, CG_BLOCK};
use crate::params::{TrainParams, ValidTrainParams};
use crate::rng::SplitMix;
use crate::simd::Isa;

/// Rows per parallel task: small, so a few heavy users never serialise a thread.
const ROWS_PER_TASK: usize = 16;

/// From this dimension on, rows are solved in blocks sharing each read of the
/// Gram matrix (`f² · 4` bytes: 64 KiB at 128, twice a 32 KiB L1 cache). Below
/// it the matrix stays in L1 and blocking gained nothing (BENCHMARKS.md,
/// "Constants and choices measured").
const BLOCK_MIN_DIM: usize = 128;

/// What the trainer reports after each epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// iALS: the weighted squared loss over all user × item pairs plus the
    /// regulariser, divided by the number of observed pairs. BPR: the mean
    /// −ln σ(x_uij) over the epoch's samples.
    pub loss: f64,
    /// Wall time of the epoch.
    pub seconds: f64,
}

/// Progress reporting and cancellation for training.
#[derive(Default)]
pub struct TrainControl<'a> {
    /// Checked between epochs (and between halves of an iALS sweep): when set,
    /// training returns [`Error::Stopped`].
    pub stop: Option<&'a AtomicBool>,
    /// Called after each epoch with the report and the current factors (for a
    /// validation metric); returning `false` ends training early (not an error).
    #[allow(clippy::type_complexity)]
    pub on_epoch: Option<&'a mut dyn FnMut(&EpochReport, &Factors) -> bool>,
}

impl std::fmt::Debug for TrainControl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainControl")
            .field("stop", &self.stop)
            .field("on_epoch", &self.on_epoch.is_some())
            .finish()
    }
}

impl TrainControl<'_> {
    pub(crate) fn stopped(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// Random initial factors, one stream per row (independent of thread count).
pub(crate) fn init_factors(rows: usize, f: usize, scale: f32, seed: u64, side: u64) -> Vec<f32> {
    let mut out = vec![0f32; rows * f];
    out.par_chunks_mut(f.max(1))
        .enumerate()
        .for_each(|(r, row)| {
            let mut rng = SplitMix::new(seed, side, r as u64);
            row.iter_mut()
                .for_each(|x| *x = rng.centred() * 2.0 * scale);
        });
    out
}

/// Regularisation of a row with `n` entries.
#[inline]
pub(crate) fn row_reg(reg: f32, exponent: f32, n: usize) -> f32 {
    if exponent == 0.0 {
        reg
    } else {
        reg * (1.0 + n as f32).powf(exponent)
    }
}

/// The Gram term of each row of a half-sweep.
pub(crate) enum Grams<'a> {
    /// One matrix for every row (plain iALS: every other-side row is a zero).
    One(&'a [f32]),
    /// Row `r` takes `grams[index[r]]` (per-surface models: a row's zeros
    /// are the other side's rows of the surfaces it was shown on).
    PerRow {
        grams: &'a [Vec<f32>],
        index: &'a [u8],
    },
}

impl Grams<'_> {
    fn of(&self, r: usize) -> &[f32] {
        match self {
            Grams::One(g) => g,
            Grams::PerRow { grams, index } => &grams[index[r] as usize],
        }
    }
}

/// One half-sweep: re-solve every row of `x` given the other side `y`.
fn solve_side(isa: Isa, x: &mut [f32], y: &[f32], conf: &Csr, f: usize, p: &ValidTrainParams) {
    let g = gram(y, f);
    solve_side_grams(isa, x, y, conf, f, p, &Grams::One(&g));
}

/// [`solve_side`] with the Gram term of each row given.
pub(crate) fn solve_side_grams(
    isa: Isa,
    x: &mut [f32],
    y: &[f32],
    conf: &Csr,
    f: usize,
    p: &ValidTrainParams,
    grams: &Grams<'_>,
) {
    x.par_chunks_mut(f * ROWS_PER_TASK)
        .enumerate()
        .for_each_init(
            || vec![0f32; 3 * f],
            |scratch, (chunk, rows)| {
                let mut pending = Vec::with_capacity(ROWS_PER_TASK);
                for (k, xr) in rows.chunks_exact_mut(f).enumerate() {
                    let r = chunk * ROWS_PER_TASK + k;
                    let (items, c) = conf.row(r);
                    if items.is_empty() {
                        // No signal: the least-squares solution is 0.
                        xr.iter_mut().for_each(|v| *v = 0.0);
                        continue;
                    }
                    let prob = RowProblem {
                        gram: grams.of(r),
                        y,
                        items,
                        conf: c,
                        reg: row_reg(p.reg, p.reg_exponent, items.len()),
                    };
                    pending.push((prob, xr));
                }
                // Rows in blocks share each read of the Gram matrix; every
                // row's result is the one it would get alone.
                for group in pending.chunks_mut(CG_BLOCK) {
                    if let ([a, b, c, d], true) = (&mut *group, f >= BLOCK_MIN_DIM) {
                        let same = [&b.0, &c.0, &d.0]
                            .iter()
                            .all(|q| std::ptr::eq(q.gram.as_ptr(), a.0.gram.as_ptr()));
                        if same {
                            let probs = [&a.0, &b.0, &c.0, &d.0];
                            let mut xs = [&mut *a.1, &mut *b.1, &mut *c.1, &mut *d.1];
                            if cg_dispatch_block(isa, &probs, &mut xs, p.cg_steps) {
                                continue;
                            }
                        }
                    }
                    for (prob, xr) in group.iter_mut() {
                        cg_dispatch(isa, prob, xr, p.cg_steps, scratch);
                    }
                }
            },
        );
}

/// The iALS objective divided by the number of observed pairs (see [`EpochReport`]).
/// What the loss of one side needs besides that side's rows.
struct LossInputs<'a> {
    /// Gram matrix of `y`.
    g: &'a [f32],
    y: &'a [f32],
    conf: &'a Csr,
    f: usize,
    p: &'a ValidTrainParams,
}

/// The loss terms of the rows `rows` (users `first..`). Plain arithmetic, so
/// the portable and the AVX2 copy give the same sum.
#[inline(always)]
fn loss_rows(l: &LossInputs<'_>, first: usize, rows: &[f32]) -> f64 {
    let (f, y) = (l.f, l.y);
    let mut total = 0f64;
    let mut gx = vec![0f32; f];
    for (k, xu) in rows.chunks_exact(f).enumerate() {
        let (items, c) = l.conf.row(first + k);
        // Σ_all ŷ² = xᵀ G x; observed pairs replace ŷ² by c (1 − ŷ)².
        crate::linalg::symv(l.g, xu, &mut gx);
        total += dot(xu, &gx) as f64;
        for (&i, &ci) in items.iter().zip(c) {
            let yhat = dot(xu, &y[i as usize * f..(i as usize + 1) * f]) as f64;
            total += ci as f64 * (1.0 - yhat) * (1.0 - yhat) - yhat * yhat;
        }
        let reg = row_reg(l.p.reg, l.p.reg_exponent, items.len()) as f64;
        total += reg * dot(xu, xu) as f64;
    }
    total
}

crate::simd::multiversion! {
    /// [`loss_rows`] compiled for `isa` (wider registers, same arithmetic).
    fn loss_rows_on(l: &LossInputs<'_>, first: usize, rows: &[f32]) -> f64;
    portable: loss_rows,
    vector: loss_rows,
    features: "avx2", "avx512f",
}

fn loss(x: &[f32], y: &[f32], conf: &Csr, f: usize, p: &ValidTrainParams) -> f64 {
    let g = gram(y, f);
    let l = LossInputs {
        g: &g,
        y,
        conf,
        f,
        p,
    };
    let isa = Isa::detect();
    let per_user: f64 = x
        .par_chunks(f * 256)
        .enumerate()
        .map(|(chunk, rows)| loss_rows_on(isa, &l, chunk * 256, rows))
        .collect::<Vec<f64>>()
        .into_iter()
        .sum();
    let nnz = conf.nnz().max(1) as f64;
    per_user / nnz
}

/// `(what, expected, got)` lengths: the first that differ is an error.
pub(crate) fn check_lengths(lengths: &[(&'static str, usize, usize)]) -> Result<()> {
    match lengths.iter().find(|(_, e, g)| e != g) {
        Some(&(what, expected, got)) => Err(Error::LengthMismatch {
            what,
            expected,
            got,
        }),
        None => Ok(()),
    }
}

/// Trains iALS on `weights` (users × items, raw engagement weights `w`; the
/// confidence is `1 + alpha · w`).
pub fn train_ials(
    weights: &Csr,
    p: &ValidTrainParams,
    ctl: &mut TrainControl<'_>,
) -> Result<Factors> {
    let f = p.factors;
    let start = Factors {
        dim: f,
        users: init_factors(weights.n_rows(), f, p.init_scale, p.seed, 0),
        items: init_factors(weights.n_cols(), f, p.init_scale, p.seed, 1),
        item_bias: vec![0.0; weights.n_cols()],
    };
    train_ials_from(weights, p, start, ctl)
}

/// Continues iALS from `start` (a warm start: yesterday's factors with rows
/// for new users and items added) for `p.epochs` sweeps. `start` must have
/// `p.factors` dimensions, one user row per row of `weights` and one item row
/// per column.
pub fn train_ials_from(
    weights: &Csr,
    p: &ValidTrainParams,
    start: Factors,
    ctl: &mut TrainControl<'_>,
) -> Result<Factors> {
    if weights.nnz() == 0 {
        return Err(Error::Empty);
    }
    let f = p.factors;
    let (n_users, n_items) = (weights.n_rows(), weights.n_cols());
    if start.dim != f {
        return Err(Error::DimensionMismatch {
            expected: f,
            got: start.dim,
        });
    }
    check_lengths(&[
        ("starting user factors", n_users * f, start.users.len()),
        ("starting item factors", n_items * f, start.items.len()),
        ("starting item biases", n_items, start.item_bias.len()),
    ])?;
    let mut conf = weights.clone();
    let alpha = p.alpha;
    conf.map_values(|w| 1.0 + alpha * w);
    let conf_t = conf.transpose();
    let isa = Isa::detect();
    tracing::info!(
        n_users,
        n_items,
        nnz = conf.nnz(),
        factors = f,
        ?isa,
        "training iALS"
    );

    let mut fac = start;
    for epoch in 1..=p.epochs {
        let _span = tracing::info_span!("ials_epoch", epoch).entered();
        let t = Instant::now();
        if ctl.stopped() {
            return Err(Error::Stopped);
        }
        solve_side(isa, &mut fac.users, &fac.items, &conf, f, p);
        if ctl.stopped() {
            return Err(Error::Stopped);
        }
        solve_side(isa, &mut fac.items, &fac.users, &conf_t, f, p);
        let seconds = t.elapsed().as_secs_f64();
        if let Some(cb) = ctl.on_epoch.as_deref_mut() {
            let mut item_reg = 0f64;
            for i in 0..n_items {
                let yi = fac.item(i);
                item_reg +=
                    row_reg(p.reg, p.reg_exponent, conf_t.row_len(i)) as f64 * dot(yi, yi) as f64;
            }
            let report = EpochReport {
                epoch,
                loss: loss(&fac.users, &fac.items, &conf, f, p) + item_reg / conf.nnz() as f64,
                seconds,
            };
            tracing::info!(epoch, loss = report.loss, seconds, "epoch done");
            if !cb(&report, &fac) {
                break;
            }
        }
    }
    Ok(fac)
}

/// The iALS row vectors of every row of `weights` (raw engagement weights;
/// confidence `1 + alpha · w`) with the item factors `items` fixed: one
/// half-sweep of `steps` conjugate-gradient steps per row from `start`
/// (rows × dim; a warm start, e.g. yesterday's vectors, or zeros), with the
/// training kernels, in parallel and bit-identical for any thread count. It
/// folds in many users at once, at a fraction of the exact solves of `Ranker::fold_in`;
/// rows without entries get zeros.
pub fn solve_rows(
    weights: &Csr,
    items: &[f32],
    p: &ValidTrainParams,
    start: Vec<f32>,
    steps: usize,
) -> Result<Vec<f32>> {
    let f = p.factors;
    check_lengths(&[
        ("item factors", weights.n_cols() * f, items.len()),
        ("starting row vectors", weights.n_rows() * f, start.len()),
    ])?;
    let mut conf = weights.clone();
    let alpha = p.alpha;
    conf.map_values(|w| 1.0 + alpha * w);
    let params = crate::params::TrainParams {
        cg_steps: steps.max(1),
        ..p.get().clone()
    }
    .check()?;
    let mut x = start;
    solve_side(Isa::detect(), &mut x, items, &conf, f, &params);
    Ok(x)
}

/// The exact iALS embedding of a user from their items and weights, given the
/// item factors and their Gram matrix (fold-in of a new user, or of fresh
/// history), with the model's `alpha`, `reg` and `reg_exponent`. Returns
/// zeros for an empty history.
pub(crate) fn fold_in(
    item_factors: &[f32],
    item_gram: &[f32],
    f: usize,
    items: &[u32],
    weights: &[f32],
    params: &TrainParams,
) -> Vec<f32> {
    let (alpha, reg, reg_exponent) = (params.alpha, params.reg, params.reg_exponent);
    if items.is_empty() {
        return vec![0.0; f];
    }
    // Merge duplicates so the problem matches the training matrix.
    let mut pairs: Vec<(u32, f32)> = items.iter().copied().zip(weights.iter().copied()).collect();
    pairs.sort_unstable_by_key(|p| p.0);
    let mut idx: Vec<u32> = Vec::with_capacity(pairs.len());
    let mut conf: Vec<f32> = Vec::with_capacity(pairs.len());
    for (i, w) in pairs {
        if idx.last() == Some(&i) {
            if let Some(c) = conf.last_mut() {
                *c += alpha * w;
            }
        } else {
            idx.push(i);
            conf.push(1.0 + alpha * w);
        }
    }
    let prob = RowProblem {
        gram: item_gram,
        y: item_factors,
        items: &idx,
        conf: &conf,
        reg: row_reg(reg, reg_exponent, idx.len()),
    };
    prob.solve_exact(f).unwrap_or_else(|| vec![0.0; f])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::TrainParams;
    use crate::test_util::{on_threads, with_losses};

    fn toy() -> Csr {
        crate::csr::two_taste_groups(40, 20, 6)
    }

    fn params(epochs: usize) -> ValidTrainParams {
        TrainParams {
            factors: 8,
            epochs,
            reg: 0.1,
            alpha: 10.0,
            cg_steps: 4,
            ..TrainParams::default()
        }
        .check()
        .expect("valid")
    }

    #[test]
    fn loss_decreases_and_blocks_are_learned() -> Result<()> {
        let m = toy();
        let (fac, losses) = with_losses(|c| train_ials(&m, &params(10), c))?;
        assert_eq!(losses.len(), 10);
        assert!(losses[9] < losses[0] * 0.9, "{losses:?}");
        assert!(
            losses.windows(2).all(|w| w[1] <= w[0] * 1.001),
            "{losses:?}"
        );
        // A user of block A scores block A's unseen items above block B's.
        let u = 3;
        let score = |i: usize| dot(fac.user(u), fac.item(i));
        let a: f32 = (0..10)
            .filter(|&i| !m.contains(u, i as u32))
            .map(score)
            .sum::<f32>()
            / 4.0;
        let b: f32 = (10..20).map(score).sum::<f32>() / 10.0;
        assert!(a > b + 0.1, "{a} {b}");
        Ok(())
    }

    #[test]
    fn same_result_for_any_thread_count() -> Result<()> {
        let m = toy();
        let run = |t| {
            on_threads(t, || {
                train_ials(&m, &params(3), &mut TrainControl::default())
            })
        };
        assert_eq!(run(1)?, run(2)?);
        Ok(())
    }

    #[test]
    fn fold_in_reproduces_the_trained_embedding() -> Result<()> {
        let m = toy();
        let p = TrainParams {
            cg_steps: 64,
            ..params(6).get().clone()
        }
        .check()?;
        let fac = train_ials(&m, &p, &mut TrainControl::default())?;
        // After the item half-sweep the users are one step stale: re-solve exactly.
        let g = gram(&fac.items, fac.dim);
        let u = 25;
        let (items, w) = m.row(u);
        let folded = fold_in(&fac.items, &g, fac.dim, items, w, p.get());
        // Fold-in equals the exact row solution, which CG approaches.
        let mut cg_x = vec![0f32; fac.dim];
        let conf: Vec<f32> = w.iter().map(|w| 1.0 + p.alpha * w).collect();
        let prob = RowProblem {
            gram: &g,
            y: &fac.items,
            items,
            conf: &conf,
            reg: p.reg,
        };
        let mut scratch = vec![0f32; 3 * fac.dim];
        prob.cg(&mut cg_x, 64, &mut scratch);
        for (a, b) in folded.iter().zip(&cg_x) {
            assert!((a - b).abs() < 1e-3, "{a} {b}");
        }
        // And ranks like the trained embedding.
        let top = |v: &[f32]| {
            let mut s: Vec<(f32, usize)> = (0..20).map(|i| (dot(v, fac.item(i)), i)).collect();
            s.sort_by(|a, b| b.0.total_cmp(&a.0));
            s.iter().take(5).map(|x| x.1).collect::<Vec<_>>()
        };
        assert_eq!(top(&folded), top(fac.user(u)));
        Ok(())
    }

    #[test]
    fn warm_start_continues_training() -> Result<()> {
        let m = toy();
        let p = params(6);
        let whole = train_ials(&m, &p, &mut TrainControl::default())?;
        // Six epochs from scratch equal three, then three more from there.
        let first = train_ials(&m, &params(3), &mut TrainControl::default())?;
        let then = train_ials_from(&m, &params(3), first.clone(), &mut TrainControl::default())?;
        assert_eq!(then, whole);
        assert_ne!(then, first);
        let mut short = first;
        short.users.pop();
        assert!(matches!(
            train_ials_from(&m, &p, short, &mut TrainControl::default()),
            Err(Error::LengthMismatch { .. })
        ));
        Ok(())
    }

    #[test]
    fn solve_rows_approaches_the_exact_fold_in() -> Result<()> {
        let m = toy();
        let p = params(6);
        let fac = train_ials(&m, &p, &mut TrainControl::default())?;
        let g = gram(&fac.items, fac.dim);
        let f = fac.dim;
        let exact: Vec<f32> = (0..m.n_rows())
            .flat_map(|u| {
                let (items, w) = m.row(u);
                fold_in(&fac.items, &g, f, items, w, p.get())
            })
            .collect();
        let err = |x: &[f32]| {
            x.iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max)
        };
        let zeros = vec![0f32; m.n_rows() * f];
        let rough = solve_rows(&m, &fac.items, &p, zeros.clone(), 1)?;
        let close = solve_rows(&m, &fac.items, &p, zeros.clone(), f)?;
        assert!(err(&close) < 1e-3, "{}", err(&close));
        assert!(
            err(&rough) > 10.0 * err(&close),
            "{} {}",
            err(&rough),
            err(&close)
        );
        // Warm-started from the exact answer it stays there.
        let again = solve_rows(&m, &fac.items, &p, exact.clone(), 3)?;
        assert!(err(&again) < 1e-4);
        assert!(matches!(
            solve_rows(&m, &fac.items, &p, vec![0.0; 3], 3),
            Err(Error::LengthMismatch { .. })
        ));
        Ok(())
    }

    #[test]
    fn stop_flag_is_respected() {
        let stop = AtomicBool::new(true);
        let r = train_ials(
            &toy(),
            &params(5),
            &mut TrainControl {
                stop: Some(&stop),
                on_epoch: None,
            },
        );
        assert!(matches!(r, Err(Error::Stopped)));
    }
}
