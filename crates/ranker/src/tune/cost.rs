//! The search's clock: modeled seconds of work.
//!
//! Which settings fit in the budget used to be decided by the wall clock,
//! so the same command chose differently on a loaded machine, with another
//! thread count, or from one run to the next (Last.fm: plain iALS at NDCG
//! 0.1825 one day, a blend at 0.1890 another). Every operation of the
//! search now charges a [`Meter`] what it is modeled to cost from its sizes
//! alone (interactions, rows, items, dimension), in seconds of a reference
//! machine (2 cores, measured as BENCHMARKS.md says), so the trials run are
//! a function of the data, the options and the seed. The wall clock still
//! guards the budget: past [`WALL_GUARD`] times it and 30 s no setting
//! starts, with a warning that the choice may then differ from run to run.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::csr::Csr;

/// Reference seconds per unit of each operation: 2 cores, AVX-512, the
/// `tune cost` and `tune run` lines of `RUST_LOG=reelkit_ranker=debug reelkit
/// tune` on Last.fm and bx100k (wall ÷ units of each operation, idle machine,
/// 2026-12-07; iALS's three terms solved on Last.fm at 64 and 128 factors and
/// bx100k at 64; BENCHMARKS.md, issue 31).
mod rate {
    /// Ranking every item for a judged user: per user × item × (dimension +
    /// 36), a table wider than 256 dimensions slowed by `(d / 256)^⅓` (out
    /// of cache: Last.fm's EASE at 1,877 dimensions ran at half the rate of
    /// its 64-dimension iALS).
    pub const JUDGE_DENSE: f64 = 1.02e-11;
    /// Ranking for a judged user: per user (its exclusions, list and sort).
    pub const JUDGE_USER: f64 = 1.93e-5;
    /// Scoring named items (a blend's unions): per user × item × (dimensions + 72).
    pub const SCORE_NAMED: f64 = 3.0e-10;
    /// Ranking a short list (a blend's union): per user × item.
    pub const JUDGE_LIST: f64 = 1.3e-8;
    /// Sparse scoring: per visited neighbour, and per user × item (the
    /// accumulator and the selection).
    pub const JUDGE_SPARSE: f64 = 3.5e-9;
    /// One iALS epoch: per `2 · nnz · f · (cg_steps + 1)` (the products by
    /// the rows' interactions).
    pub const IALS_NNZ: f64 = 1.86e-10;
    /// One iALS epoch: per `rows · f² · (cg_steps + 1)` (the Gram products).
    pub const IALS_GRAM: f64 = 2.44e-11;
    /// One iALS epoch: per row of either side (each row's solve set-up).
    pub const IALS_ROW: f64 = 3.57e-7;
    /// One BPR epoch: per interaction × dimension.
    pub const BPR: f64 = 2.2e-9;
    /// RP3beta's weights: per co-occurring pair visited.
    pub const RP3: f64 = 1.0e-8;
    /// EASE's embedding for one λ: per (rows + items) × dimension.
    pub const EASE_LAMBDA: f64 = 4.1e-9;
    /// EASE's basis: per unit of its QR passes (items × d², see
    /// `EaseBasis::expected_units`).
    pub const EASE_QR: f64 = 1.8e-10;
    /// EASE's basis: per n³ of its symmetric eigenproblem.
    pub const EASE_EIGEN: f64 = 2.2e-9;
}

/// The wall clock stops new settings at this many times the budget, plus
/// [`WALL_SLACK`] (a machine far slower than the reference, or one shared
/// with other work).
pub(super) const WALL_GUARD: f64 = 2.0;

/// Seconds the wall clock's guard adds to twice the budget (small budgets
/// are not cut by a busy machine's noise).
const WALL_SLACK: f64 = 30.0;

/// Modeled seconds spent, and the wall clock that guards them.
pub(super) struct Meter {
    spent: f64,
    started: Instant,
    guard: Duration,
    warned: Cell<bool>,
}

impl Meter {
    pub(super) fn new(budget: Duration) -> Meter {
        Meter {
            spent: 0.0,
            started: Instant::now(),
            // Saturating: a budget near `Duration::MAX` guards nothing.
            guard: Duration::try_from_secs_f64(budget.as_secs_f64() * WALL_GUARD + WALL_SLACK)
                .unwrap_or(Duration::MAX),
            warned: Cell::new(false),
        }
    }

    /// Modeled seconds so far.
    pub(super) fn spent(&self) -> f64 {
        self.spent
    }

    /// Adds an operation's modeled seconds; `what` and the wall time it
    /// took (from `since`) go to the debug log, the calibration's record.
    pub(super) fn charge(&mut self, what: &str, seconds: f64, since: Instant) {
        self.spent += seconds;
        tracing::debug!(
            op = what,
            modeled = seconds,
            wall = since.elapsed().as_secs_f64(),
            "tune cost"
        );
    }

    /// Whether the wall clock is past its guard (warns once).
    pub(super) fn past_guard(&self) -> bool {
        let past = self.started.elapsed() > self.guard;
        if past && !self.warned.replace(true) {
            tracing::warn!(
                "the search has run {:.0} s of wall time, {WALL_GUARD}× its budget and \
                 {WALL_SLACK} s: no further \
                 setting starts, and the choice may differ from run to run (this machine is \
                 slower than the reference, or busy)",
                self.started.elapsed().as_secs_f64()
            );
        }
        past
    }
}

/// Judging a dense scorer: every judged user ranks the catalogue.
pub(super) fn judge_dense(users: usize, items: usize, dim: usize) -> f64 {
    let cache = (dim as f64 / 256.0).max(1.0).cbrt();
    users as f64 * (rate::JUDGE_USER + rate::JUDGE_DENSE * cache * items as f64 * (dim + 36) as f64)
}

/// A blend's unions of `items` per user scored by two models of
/// dimensions `dims`, and each of its weights' judging.
pub(super) fn blend(users: usize, items: usize, dims: usize) -> (f64, f64) {
    let (u, i) = (users as f64, items as f64);
    (
        rate::SCORE_NAMED * u * i * (dims + 72) as f64,
        rate::JUDGE_LIST * u * i,
    )
}

/// Judging a sparse scorer: each judged user's training items' neighbour
/// rows summed into an accumulator over the catalogue.
pub(super) fn judge_sparse(
    train: &Csr,
    judged: impl Iterator<Item = usize>,
    row_len: impl Fn(u32) -> usize,
) -> f64 {
    let items = train.n_cols() as f64;
    let mut units = 0.0;
    for u in judged {
        units += items + train.row(u).0.iter().map(|&i| row_len(i)).sum::<usize>() as f64;
    }
    rate::JUDGE_SPARSE * units
}

/// One epoch of iALS or BPR on `m` at dimension `f`: for iALS both
/// half-sweeps' right-hand sides and CG products by the rows' interactions
/// (`nnz · f` each per step), their Gram products (`f²` per row per step)
/// and each row's set-up.
pub(super) fn epoch(m: &Csr, algo: crate::params::Algo, f: usize, cg_steps: usize) -> f64 {
    let (nnz, rows) = (m.nnz() as f64, (m.n_rows() + m.n_cols()) as f64);
    let (f, steps) = (f as f64, (cg_steps + 1) as f64);
    match algo {
        crate::params::Algo::Bpr => rate::BPR * nnz * f,
        _ => {
            rate::IALS_NNZ * 2.0 * nnz * f * steps
                + rate::IALS_GRAM * rows * f * f * steps
                + rate::IALS_ROW * rows
        }
    }
}

/// RP3beta's weights on the binary matrix `x`: every item's co-occurring
/// pairs, `Σ_u deg(u)²`.
pub(super) fn rp3(x: &Csr) -> f64 {
    let pairs: f64 = (0..x.n_rows()).map(|u| (x.row_len(u) as f64).powi(2)).sum();
    rate::RP3 * pairs
}

/// EASE's embedding for one λ from its basis.
pub(super) fn ease_lambda(m: &Csr, dim: usize) -> f64 {
    rate::EASE_LAMBDA * (m.n_rows() + m.n_cols()) as f64 * dim as f64
}

/// EASE's basis at dimension `max_dim` (the same model of its kernels as
/// `EaseBasis::expected_seconds`, at the reference rates).
pub(super) fn ease_basis(n_users: usize, n_items: usize, max_dim: usize) -> f64 {
    let (eigen_units, qr_units) = crate::ease::EaseBasis::expected_units(n_users, n_items, max_dim);
    rate::EASE_EIGEN * eigen_units + rate::EASE_QR * qr_units
}
