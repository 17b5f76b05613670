//! EASE (Steck 2019) served as embeddings.
//!
//! EASE's item-item weights are `B = I − P·diag(P)⁻¹` with
//! `P = (XᵀX + λI)⁻¹`, and user `u` scores item `j` by `(x_u B)_j`. On an
//! item the user has not seen, `x_u`'s identity part is zero, so
//! `score_uj = −(x_u P)_j / P_jj`. With `Q` an orthonormal basis (items × r)
//! of the range of `Xᵀ` (or of its leading subspace when `r` is smaller
//! than the rank), `Z = XQ`, `M = ZᵀZ` and `C = I/λ − (M + λI)⁻¹`:
//!
//! ```text
//! P       = I/λ − Q C Qᵀ          (exact when Q spans range(Xᵀ))
//! score   = (z_u C) · (q_j / P_jj)
//! ```
//!
//! so EASE is a factor model of dimension `r`: user embeddings `Z C`, item
//! embeddings `q_j / P_jj`, and every reader of a model file (recommend,
//! eval, serve, the simulator's ranker policy) serves it unchanged. When
//! `r = min(users, items)` (the default up to 1,024) the scores of unseen
//! items equal the closed form; above, `Q` is the leading subspace of
//! `XᵀX` found by seeded randomised subspace iteration (Halko, Martinsson &
//! Tropp 2011) and the model is its rank-`r` approximation. Only `r × r`
//! systems are solved, so `λ` can be changed without redoing the basis
//! ([`EaseBasis::factors`]). Seen items get `(x_u B)`'s off-diagonal part
//! too, but every reader excludes them.

use rayon::prelude::*;

use crate::csr::Csr;
use crate::error::{Error, Result};
use crate::factors::Factors;
use crate::rng::SplitMix;

/// The largest catalogue EASE trains on: its basis is `items × r` doubles
/// and its cost grows with `items · r²`.
pub const EASE_MAX_ITEMS: usize = 50_000;

/// EASE's default basis dimension (`train --algo ease`, `tune`): exact on
/// data with up to this many users or items.
pub const EASE_DIM: usize = 1024;

/// Rows per partial sum of a Gram product: a fixed split, so sums (and the
/// model) do not depend on the thread count.
const CHUNK: usize = 256;

/// What EASE needs from the data for any `λ`: the basis rotated onto the
/// eigenvectors of `M = ZᵀZ` (`M = V Σ Vᵀ`), so that for every λ
/// `C = V diag(σ / (λ(σ + λ))) Vᵀ` is diagonal in it and a model costs
/// `O((users + items) · r)`.
#[derive(Debug, Clone)]
pub struct EaseBasis {
    /// Basis dimension `r`.
    r: usize,
    /// `Q V`: `items × r`, row-major.
    q: Vec<f64>,
    /// `Z V = X Q V`: `users × r`.
    z: Vec<f64>,
    /// The eigenvalues σ of `M`.
    sigma: Vec<f64>,
}

impl EaseBasis {
    /// The basis of `weights` (users × items) with at most `max_dim`
    /// dimensions, seeded. Errors: no interaction; more items than
    /// [`EASE_MAX_ITEMS`].
    pub fn new(weights: &Csr, max_dim: usize, seed: u64) -> Result<EaseBasis> {
        if weights.nnz() == 0 {
            return Err(Error::Empty);
        }
        let (n_users, n_items) = (weights.n_rows(), weights.n_cols());
        if n_items > EASE_MAX_ITEMS {
            return Err(Error::TooManyItemsForEase {
                items: n_items,
                limit: EASE_MAX_ITEMS,
            });
        }
        let d = max_dim.min(n_users).min(n_items).max(1);
        if d == n_users && n_users <= n_items {
            return Ok(Self::from_user_gram(weights));
        }
        let xt = weights.transpose();
        // Y = Xᵀ Ω with a seeded random Ω (users × d).
        let omega: Vec<f64> = (0..n_users * d)
            .map(|i| {
                let mut g = SplitMix::new(seed, 0xEA5E, i as u64);
                g.centred() as f64
            })
            .collect();
        let mut y = spmm(&xt, &omega, d);
        // Power iterations sharpen a truncated basis; a full one is exact.
        if d < n_users.min(n_items) {
            for _ in 0..2 {
                let q = orthonormalise(&y, d);
                let r = q.len() / n_items;
                let z = spmm(weights, &q, r);
                y = spmm(&xt, &z, r);
            }
        }
        let r0 = y.len() / n_items;
        let t = std::time::Instant::now();
        let q = orthonormalise(&y, r0);
        let r = q.len() / n_items;
        let z = spmm(weights, &q, r);
        let t_q = t.elapsed();
        let (sigma, vt) = symmetric_eigen(gram(&z, r), r);
        let t_e = t.elapsed();
        let basis = EaseBasis {
            r,
            q: rotate(&q, &vt, r),
            z: rotate(&z, &vt, r),
            sigma,
        };
        tracing::debug!(
            "EASE basis r={r}: orthonormalise {:.2}s, eigen {:.2}s, rotate {:.2}s",
            t_q.as_secs_f64(),
            (t_e - t_q).as_secs_f64(),
            (t.elapsed() - t_e).as_secs_f64()
        );
        Ok(basis)
    }

    /// The work of [`EaseBasis::new`] on an `n_users × n_items` matrix at
    /// `max_dim`, as `(eigen, qr)` units: `n³` of its eigenproblem (of `d`, or
    /// of the users when they are the smaller side) and `rows · d²` of its
    /// Cholesky QR passes over `items × d`, a wider Gram's passes slowed by
    /// `√(d/256)` as it falls out of cache (the fit measured in
    /// BENCHMARKS.md, "Constants and choices measured"). The tuner prices
    /// them at its reference rates.
    pub(crate) fn expected_units(n_users: usize, n_items: usize, max_dim: usize) -> (f64, f64) {
        let d = max_dim.min(n_users).min(n_items).max(1);
        let cube = |n: usize| (n as f64).powi(3);
        if d == n_users && n_users <= n_items {
            return (cube(n_users), 0.0);
        }
        // Three orthonormalisations (two power iterations) when truncated,
        // one when the basis is whole; two QR passes each.
        let passes = if d < n_users.min(n_items) { 6.0 } else { 2.0 };
        let cache = (d as f64 / 256.0).max(1.0).sqrt();
        (cube(d), passes * cache * n_items as f64 * (d * d) as f64)
    }

    /// The exact basis when users are the smaller side: with `X Xᵀ = V Σ Vᵀ`,
    /// `Q = Xᵀ V Σ^(−1/2)` is an orthonormal basis of the rows of `X`, `Z = XQ
    /// = V Σ^(1/2)` and `M = ZᵀZ = Σ` is diagonal already: no orthonormalising
    /// of an items × users matrix (the costly step at a few thousand users),
    /// only the users × users eigenproblem. Directions of eigenvalue below
    /// `1e-10 · σ_max` (the null space) are left out.
    fn from_user_gram(x: &Csr) -> EaseBasis {
        let n = x.n_rows();
        // X Xᵀ from the sparse rows, summed per item column.
        let xt = x.transpose();
        let mut g = vec![0f64; n * n];
        for j in 0..xt.n_rows() {
            let (us, vs) = xt.row(j);
            for (a, (&u, &vu)) in us.iter().zip(vs).enumerate() {
                for (&w, &vw) in us[a..].iter().zip(&vs[a..]) {
                    let p = vu as f64 * vw as f64;
                    g[u as usize * n + w as usize] += p;
                    if u != w {
                        g[w as usize * n + u as usize] += p;
                    }
                }
            }
        }
        let (sigma, vt) = symmetric_eigen(g, n);
        let top = sigma.first().copied().unwrap_or(0.0).max(0.0);
        let keep: Vec<usize> = (0..n).filter(|&k| sigma[k] > 1e-10 * top).collect();
        let r = keep.len().max(1);
        // z = V Σ^(1/2) (users × r), and V Σ^(−1/2) to form q.
        let mut z = vec![0f64; n * r];
        let mut v_scaled = vec![0f64; n * r];
        for (c, &k) in keep.iter().enumerate() {
            let (s, vk) = (sigma[k], &vt[k * n..(k + 1) * n]);
            for u in 0..n {
                z[u * r + c] = vk[u] * s.sqrt();
                v_scaled[u * r + c] = vk[u] / s.sqrt();
            }
        }
        // q = Xᵀ V Σ^(−1/2) (items × r).
        let q = spmm(&xt, &v_scaled, r);
        EaseBasis {
            r,
            q,
            z,
            sigma: keep.iter().map(|&k| sigma[k]).collect(),
        }
    }

    /// The basis dimension (the model's embedding dimension).
    pub fn dim(&self) -> usize {
        self.r
    }

    /// The basis `QV` (items × r, row-major).
    pub(crate) fn q(&self) -> &[f64] {
        &self.q
    }

    /// The users' coordinates `XQV` (users × r, row-major).
    pub(crate) fn z(&self) -> &[f64] {
        &self.z
    }

    /// EASE with regularisation `lambda` (> 0) as factors.
    pub fn factors(&self, lambda: f64) -> Result<Factors> {
        if !(lambda > 0.0 && lambda.is_finite()) {
            return Err(Error::InvalidParam {
                field: "reg",
                allowed: "> 0 for EASE",
                got: lambda.to_string(),
            });
        }
        // C = I/λ − (M + λI)⁻¹, diagonal in the rotated basis.
        let c: Vec<f64> = self
            .sigma
            .iter()
            .map(|&s| {
                let s = s.max(0.0);
                s / (lambda * (s + lambda))
            })
            .collect();
        let users: Vec<f32> = self
            .z
            .par_chunks(self.r)
            .flat_map_iter(|zu| zu.iter().zip(&c).map(|(a, b)| (a * b) as f32))
            .collect();
        let items: Vec<f32> = self
            .q
            .par_chunks(self.r)
            .flat_map_iter(|qj| {
                // P_jj = 1/λ − Σ q_jk² c_k ≥ 1/(λ + σ_max) > 0.
                let quad: f64 = qj.iter().zip(&c).map(|(q, c)| q * q * c).sum();
                let pjj = (1.0 / lambda - quad).max(1.0 / (lambda + self.sigma[0].max(0.0)));
                qj.iter().map(move |&v| (v / pjj) as f32)
            })
            .collect();
        let n_items = items.len() / self.r;
        Ok(Factors {
            dim: self.r,
            users,
            items,
            item_bias: vec![0.0; n_items],
        })
    }
}

/// `A V` for row-major `A` (n × r) and `V` given as its transpose `vt`
/// (row `k` is eigenvector `k`).
fn rotate(a: &[f64], vt: &[f64], r: usize) -> Vec<f64> {
    let mut out = vec![0f64; a.len()];
    out.par_chunks_mut(r)
        .zip(a.par_chunks(r))
        .for_each(|(o, row)| {
            for (k, ok) in o.iter_mut().enumerate() {
                *ok = dot(row, &vt[k * r..(k + 1) * r]);
            }
        });
    out
}

/// A dot product in four lanes (vectorises; fixed order, so deterministic).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Eigenvalues (descending) and eigenvectors (rows of the returned
/// row-major matrix) of a symmetric `n × n` matrix: Householder reduction
/// to tridiagonal form, then the implicit QL algorithm (Wilkinson &
/// Reinsch's tred2/tql2).
fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut d = vec![0f64; n];
    let mut e = vec![0f64; n];
    // Householder: a becomes the orthogonal Q with A = Q T Qᵀ.
    for i in (1..n).rev() {
        let l = i - 1;
        let mut h = 0.0;
        if l > 0 {
            let scale: f64 = a[i * n..i * n + l + 1].iter().map(|v| v.abs()).sum();
            if scale == 0.0 {
                e[i] = a[i * n + l];
            } else {
                for k in 0..=l {
                    a[i * n + k] /= scale;
                    h += a[i * n + k] * a[i * n + k];
                }
                let f = a[i * n + l];
                let g = if f >= 0.0 { -h.sqrt() } else { h.sqrt() };
                e[i] = scale * g;
                h -= f * g;
                a[i * n + l] = f - g;
                // The active block 0..=l is kept whole (both triangles),
                // so every inner loop runs along a row.
                let mut f = 0.0;
                for j in 0..=l {
                    a[j * n + i] = a[i * n + j] / h;
                    let g = dot(&a[j * n..j * n + l + 1], &a[i * n..i * n + l + 1]);
                    e[j] = g / h;
                    f += e[j] * a[i * n + j];
                }
                let hh = f / (h + h);
                for j in 0..=l {
                    e[j] -= hh * a[i * n + j];
                }
                let (top, rest) = a.split_at_mut(i * n);
                let u = &rest[..l + 1];
                let q = &e[..l + 1];
                for j in 0..=l {
                    let (fj, gj) = (u[j], q[j]);
                    let row = &mut top[j * n..j * n + l + 1];
                    for ((x, &qk), &uk) in row.iter_mut().zip(q).zip(u) {
                        *x -= fj * qk + gj * uk;
                    }
                }
            }
        } else {
            e[i] = a[i * n + l];
        }
        d[i] = h;
    }
    d[0] = 0.0;
    e[0] = 0.0;
    // Accumulate the transformations, transposed (row j of `zt` is column
    // j of Q) so the QL rotations below run along rows.
    let mut zt = vec![0f64; n * n];
    let mut g = vec![0f64; n];
    for i in 0..n {
        if d[i] != 0.0 {
            // Q[..i, ..i] −= (u/h) (uᵀ Q[..i, ..i]), by rows.
            g[..i].iter_mut().for_each(|v| *v = 0.0);
            for k in 0..i {
                let uk = a[i * n + k];
                for (gj, &qkj) in g[..i].iter_mut().zip(&a[k * n..k * n + i]) {
                    *gj += uk * qkj;
                }
            }
            for k in 0..i {
                let w = a[k * n + i];
                for (qkj, &gj) in a[k * n..k * n + i].iter_mut().zip(&g[..i]) {
                    *qkj -= w * gj;
                }
            }
        }
        d[i] = a[i * n + i];
        a[i * n + i] = 1.0;
        for j in 0..i {
            a[j * n + i] = 0.0;
            a[i * n + j] = 0.0;
        }
    }
    for i in 0..n {
        for j in 0..n {
            zt[j * n + i] = a[i * n + j];
        }
    }
    // Implicit QL with Wilkinson shifts on the tridiagonal (d, e).
    for i in 1..n {
        e[i - 1] = e[i];
    }
    if n > 0 {
        e[n - 1] = 0.0;
    }
    for l in 0..n {
        let mut iter = 0;
        loop {
            let mut m = l;
            while m + 1 < n {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            iter += 1;
            if iter > 60 {
                break;
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + if g >= 0.0 { r } else { -r });
            let (mut s, mut c, mut p) = (1.0, 1.0, 0.0);
            let mut underflow = false;
            let mut i = m;
            while i > l {
                i -= 1;
                let f = s * e[i];
                let b = c * e[i];
                r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    underflow = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
                let (lo, hi) = zt.split_at_mut((i + 1) * n);
                let zi = &mut lo[i * n..];
                let zi1 = &mut hi[..n];
                for (x, y) in zi.iter_mut().zip(zi1.iter_mut()) {
                    let f = *y;
                    *y = s * *x + c * f;
                    *x = c * *x - s * f;
                }
            }
            if underflow {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    // Descending eigenvalues, eigenvectors with them.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| d[y].total_cmp(&d[x]));
    let values = order.iter().map(|&k| d[k]).collect();
    let mut vt = vec![0f64; n * n];
    for (row, &k) in order.iter().enumerate() {
        vt[row * n..(row + 1) * n].copy_from_slice(&zt[k * n..(k + 1) * n]);
    }
    (values, vt)
}

/// `A · B` for sparse `A` (rows × k) and dense row-major `B` (k × d).
fn spmm(a: &Csr, b: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0f64; a.n_rows() * d];
    out.par_chunks_mut(d).enumerate().for_each(|(row, o)| {
        let (cols, vals) = a.row(row);
        for (&c, &v) in cols.iter().zip(vals) {
            let v = v as f64;
            let bc = &b[c as usize * d..(c as usize + 1) * d];
            for (x, &y) in o.iter_mut().zip(bc) {
                *x += v * y;
            }
        }
    });
    out
}

/// `YᵀY` (d × d) of a row-major `n × d` matrix, summed in fixed chunks.
fn gram(y: &[f64], d: usize) -> Vec<f64> {
    let partials: Vec<Vec<f64>> = y
        .par_chunks(CHUNK * d)
        .map(|rows| {
            let mut g = vec![0f64; d * d];
            for row in rows.chunks_exact(d) {
                for (a, &ya) in row.iter().enumerate() {
                    if ya != 0.0 {
                        let ga = &mut g[a * d + a..(a + 1) * d];
                        for (x, &yb) in ga.iter_mut().zip(&row[a..]) {
                            *x += ya * yb;
                        }
                    }
                }
            }
            g
        })
        .collect();
    let mut g = vec![0f64; d * d];
    for p in partials {
        for (a, b) in g.iter_mut().zip(p) {
            *a += b;
        }
    }
    for a in 0..d {
        for b in 0..a {
            g[a * d + b] = g[b * d + a];
        }
    }
    g
}

/// An orthonormal basis (row-major `n × r`, `r ≤ d`) of the columns of `y`
/// (`n × d`): pivoted Cholesky QR, twice. Columns that add less than a
/// relative 1e-10 of the largest are dropped (a rank-deficient `y`).
fn orthonormalise(y: &[f64], d: usize) -> Vec<f64> {
    let (q, r) = chol_qr(y, d, 1e-10);
    let (q, _) = chol_qr(&q, r, 1e-13);
    q
}

/// One pivoted Cholesky QR pass: `Y P = Q R`; returns `Q` and its width.
fn chol_qr(y: &[f64], d: usize, tol: f64) -> (Vec<f64>, usize) {
    let s = gram(y, d);
    let mut perm: Vec<usize> = (0..d).collect();
    let mut diag: Vec<f64> = (0..d).map(|i| s[i * d + i]).collect();
    let top = diag.iter().cloned().fold(0.0, f64::max);
    // L (d × d, lower, in pivoted order).
    let mut l = vec![0f64; d * d];
    let mut rank = 0;
    for k in 0..d {
        let (best, &v) = perm[k..]
            .iter()
            .enumerate()
            .map(|(i, &p)| (i + k, &diag[p]))
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap_or((k, &0.0));
        if v.is_nan() || v <= tol * top {
            break;
        }
        perm.swap(k, best);
        swap_rows(&mut l, k, best, d);
        let lkk = v.sqrt();
        l[k * d + k] = lkk;
        let pk = perm[k];
        for i in k + 1..d {
            let pi = perm[i];
            let mut acc = s[pi * d + pk];
            for m in 0..k {
                acc -= l[i * d + m] * l[k * d + m];
            }
            let lik = acc / lkk;
            l[i * d + k] = lik;
            diag[pi] -= lik * lik;
        }
        rank = k + 1;
    }
    let r = rank.max(1);
    // L⁻¹ (r × r, lower, row-major): then each row of Q is
    // q_k = Σ_m y_perm[m] L⁻¹[k][m], a dot along rows.
    let mut linv = vec![0f64; r * r];
    for c in 0..r {
        linv[c * r + c] = 1.0 / l[c * d + c];
        for k in c + 1..r {
            let s: f64 = (c..k).map(|m| l[k * d + m] * linv[m * r + c]).sum();
            linv[k * r + c] = -s / l[k * d + k];
        }
    }
    let n = y.len() / d;
    let mut q = vec![0f64; n * r];
    q.par_chunks_mut(r).enumerate().for_each(|(row, out)| {
        let yr = &y[row * d..(row + 1) * d];
        let yp: Vec<f64> = perm[..r].iter().map(|&p| yr[p]).collect();
        for (k, o) in out.iter_mut().enumerate() {
            *o = dot(&yp[..k + 1], &linv[k * r..k * r + k + 1]);
        }
    });
    (q, r)
}

/// Swaps rows `a` and `b` of a row-major matrix with `d` columns.
fn swap_rows(m: &mut [f64], a: usize, b: usize, d: usize) {
    if a != b {
        for k in 0..d {
            m.swap(a * d + k, b * d + k);
        }
    }
}

/// Trains EASE with regularisation `lambda` and at most `max_dim`
/// dimensions (see the module documentation).
pub fn train_ease(weights: &Csr, lambda: f64, max_dim: usize, seed: u64) -> Result<Factors> {
    EaseBasis::new(weights, max_dim, seed)?.factors(lambda)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_eigen(a: &[f64], n: usize) {
        let (vals, vt) = symmetric_eigen(a.to_vec(), n);
        let scale = a.iter().fold(1f64, |m, v| m.max(v.abs()));
        for k in 0..n {
            assert!(k == 0 || vals[k] <= vals[k - 1], "descending");
            let v = &vt[k * n..(k + 1) * n];
            for i in 0..n {
                let av: f64 = (0..n).map(|j| a[i * n + j] * v[j]).sum();
                assert!(
                    (av - vals[k] * v[i]).abs() < 1e-9 * scale * n as f64,
                    "A v = λ v ({k}, {i})"
                );
            }
            for l in 0..n {
                let w = &vt[l * n..(l + 1) * n];
                let want = if k == l { 1.0 } else { 0.0 };
                assert!((dot(v, w) - want).abs() < 1e-9, "orthonormal ({k}, {l})");
            }
        }
    }

    #[test]
    fn eigen_decomposes_symmetric_matrices() {
        for (n, seed) in [(1, 1), (2, 2), (7, 3), (33, 4), (64, 5)] {
            let x = crate::rng::test_floats(seed, n * n);
            let mut a = vec![0f64; n * n];
            for i in 0..n {
                for j in 0..n {
                    a[i * n + j] = (x[i * n + j] + x[j * n + i]) as f64;
                }
            }
            check_eigen(&a, n);
        }
        // Repeated eigenvalues, and a matrix already diagonal.
        let n = 6;
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            a[i * n + i] = if i < 3 { 2.0 } else { -1.0 };
        }
        check_eigen(&a, n);
        // A Gram matrix (positive semi-definite, rank 2).
        let y = crate::rng::test_floats(9, 10 * 2);
        let y: Vec<f64> = y.iter().map(|&v| v as f64).collect();
        let g = gram(&y, 2);
        check_eigen(&g, 2);
    }

    #[test]
    fn orthonormalise_drops_dependent_columns() {
        // Columns 0 and 2 equal: rank 2 of 3.
        let n = 20;
        let x = crate::rng::test_floats(3, n * 2);
        let mut y = vec![0f64; n * 3];
        for i in 0..n {
            y[i * 3] = x[2 * i] as f64;
            y[i * 3 + 1] = x[2 * i + 1] as f64;
            y[i * 3 + 2] = x[2 * i] as f64;
        }
        let q = orthonormalise(&y, 3);
        assert_eq!(q.len(), n * 2);
        let g = gram(&q, 2);
        for (i, v) in g.iter().enumerate() {
            let want = if i % 3 == 0 { 1.0 } else { 0.0 };
            assert!((v - want).abs() < 1e-12, "{g:?}");
        }
    }
}
