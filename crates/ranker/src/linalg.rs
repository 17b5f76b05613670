//! Small dense kernels for training: dot, axpy, Gram matrices, a dense
//! Cholesky solve and the conjugate-gradient step of iALS.
//!
//! The loops are written with independent accumulators over `chunks_exact` so
//! the compiler vectorises them; [`Isa`] picks, once, a `#[target_feature]`
//! copy of the hot loops compiled for AVX2+FMA where the CPU has it.

use crate::simd::Isa;

/// How a kernel multiplies and adds: plain `a * b + c` for portable code, a
/// fused multiply-add inside `#[target_feature(enable = "fma")]` functions
/// (where `f32::mul_add` compiles to one instruction; elsewhere it would call
/// the slow software `fmaf`).
pub trait MulAdd {
    /// `a * b + c`.
    fn mul_add(a: f32, b: f32, c: f32) -> f32;

    /// Hint that `row` will be read soon (a no-op where not supported).
    #[inline(always)]
    fn prefetch(_row: &[f32]) {}
}

/// Separate multiply and add.
#[derive(Debug, Clone, Copy)]
pub struct Plain;

impl MulAdd for Plain {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// Fused multiply-add (only inside functions compiled with the `fma` feature).
#[derive(Debug, Clone, Copy)]
pub struct Fused;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }

    /// Fetches every cache line of the row: the rows of a user's items are
    /// scattered over the item table, and fetching the next ones while the
    /// current one is used hides most of the latency.
    #[inline(always)]
    fn prefetch(row: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        for line in row.chunks(16) {
            // SAFETY: prefetching has no architectural effect; the pointer is in
            // bounds of a live slice.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    line.as_ptr() as *const i8
                )
            };
        }
    }
}

/// Dot product with sixteen independent accumulators (two 256-bit registers).
#[inline(always)]
pub fn dot_with<M: MulAdd>(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..16 {
            acc[j] = M::mul_add(x[j], y[j], acc[j]);
        }
    }
    let mut h = [0f32; 8];
    for j in 0..8 {
        h[j] = acc[j] + acc[j + 8];
    }
    let mut s = ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7]));
    for (x, y) in ra.iter().zip(rb) {
        s = M::mul_add(*x, *y, s);
    }
    s
}

/// Dot product (portable arithmetic).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_with::<Plain>(a, b)
}

/// `y += alpha * x`.
#[inline(always)]
pub fn axpy_with<M: MulAdd>(alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = M::mul_add(alpha, *xi, *yi);
    }
}

/// `y += alpha * x` (portable arithmetic).
#[inline(always)]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    axpy_with::<Plain>(alpha, x, y)
}

/// `out = m · v` for a row-major **symmetric** `n × n` matrix, computed as a
/// combination of rows (`Σ_j v_j m_j`): independent lanes, no horizontal sums.
/// The output is produced in blocks of 64 lanes whose accumulators stay in
/// registers while the rows stream through.
#[inline(always)]
pub fn symv_with<M: MulAdd>(m: &[f32], v: &[f32], out: &mut [f32]) {
    const B: usize = 64;
    let n = v.len();
    assert_eq!(m.len(), n * n);
    assert_eq!(out.len(), n);
    let full = n / B * B;
    for start in (0..full).step_by(B) {
        let mut acc = [0f32; B];
        for (j, &vj) in v.iter().enumerate() {
            let row: &[f32; B] = m[j * n + start..j * n + start + B]
                .try_into()
                .unwrap_or(&[0.0; B]);
            for t in 0..B {
                acc[t] = M::mul_add(vj, row[t], acc[t]);
            }
        }
        out[start..start + B].copy_from_slice(&acc);
    }
    if full < n {
        let tail = &mut out[full..];
        tail.iter_mut().for_each(|o| *o = 0.0);
        for (row, &vj) in m.chunks_exact(n).zip(v) {
            axpy_with::<M>(vj, &row[full..], tail);
        }
    }
}

/// `out = m · v` for a symmetric matrix (portable arithmetic).
#[inline(always)]
pub fn symv(m: &[f32], v: &[f32], out: &mut [f32]) {
    symv_with::<Plain>(m, v, out)
}

/// Adds `Σ_r x_r x_rᵀ` over the rows of `chunk` to `g`. Rows go in blocks of
/// eight with the loops swapped (a row of `g` stays in L1 while the block's
/// rows are added to it) but every element still receives the rows' products
/// in row order, so the sums are those of the plain row-by-row loop, bit for
/// bit. Plain multiply and add: the same result in the portable and the AVX2
/// copy.
#[inline(always)]
fn gram_rows(chunk: &[f32], f: usize, g: &mut [f32]) {
    const BLOCK_ROWS: usize = 8;
    for block in chunk.chunks(BLOCK_ROWS * f) {
        for (a, ga) in g.chunks_exact_mut(f).enumerate() {
            for row in block.chunks_exact(f) {
                let ra = row[a];
                if ra != 0.0 {
                    axpy(ra, row, ga);
                }
            }
        }
    }
}

crate::simd::multiversion! {
    /// [`gram_rows`] compiled for `isa` (wider registers, same arithmetic).
    fn gram_rows_on(chunk: &[f32], f: usize, g: &mut [f32]);
    portable: gram_rows,
    vector: gram_rows,
    features: "avx2", "avx512f",
}

/// Gram matrix `Σ_r x_r x_rᵀ` of the rows of a row-major `rows × f` matrix,
/// accumulated in fixed-size chunks summed in order (deterministic for any
/// thread count).
pub fn gram(x: &[f32], f: usize) -> Vec<f32> {
    gram_with(Isa::detect(), x, f)
}

/// [`gram`] with the kernels compiled for `isa`.
fn gram_with(isa: Isa, x: &[f32], f: usize) -> Vec<f32> {
    use rayon::prelude::*;
    const CHUNK_ROWS: usize = 2048;
    if f == 0 {
        return Vec::new();
    }
    let partials: Vec<Vec<f32>> = x
        .par_chunks(CHUNK_ROWS * f)
        .map(|chunk| {
            let mut g = vec![0f32; f * f];
            gram_rows_on(isa, chunk, f, &mut g);
            g
        })
        .collect();
    let mut g = vec![0f32; f * f];
    for p in partials {
        for (a, b) in g.iter_mut().zip(p) {
            *a += b;
        }
    }
    g
}

/// Solves `a x = b` for a symmetric positive definite row-major `n × n` matrix
/// by Cholesky (in f64). Returns `None` if `a` is not positive definite.
pub fn cholesky_solve(a: &[f32], b: &[f32]) -> Option<Vec<f32>> {
    let n = b.len();
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j] as f64;
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut y = vec![0f64; n];
    for i in 0..n {
        let mut s = b[i] as f64;
        for k in 0..i {
            s -= l[i * n + k] * y[k];
        }
        y[i] = s / l[i * n + i];
    }
    let mut x = vec![0f64; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= l[k * n + i] * x[k];
        }
        x[i] = s / l[i * n + i];
    }
    Some(x.into_iter().map(|v| v as f32).collect())
}

/// One row's least-squares problem of implicit ALS:
/// `(G + Σ_i (c_i − 1) y_i y_iᵀ + λ I) x = Σ_i c_i y_i`,
/// where `G` is the Gram matrix of the other side, `items`/`conf` the row's
/// entries with confidences `c_i`, and `y` the other side's factors.
#[derive(Debug, Clone, Copy)]
pub struct RowProblem<'a> {
    pub gram: &'a [f32],
    pub y: &'a [f32],
    pub items: &'a [u32],
    pub conf: &'a [f32],
    pub reg: f32,
}

impl RowProblem<'_> {
    /// `out = A v`.
    #[inline(always)]
    fn apply<M: MulAdd>(&self, v: &[f32], out: &mut [f32]) {
        symv_with::<M>(self.gram, v, out);
        self.apply_rest::<M>(v, out);
    }

    /// Completes `out = G v` into `out = A v = (G + λI) v + Σ_i (c_i − 1)(y_i·v) y_i`.
    #[inline(always)]
    fn apply_rest<M: MulAdd>(&self, v: &[f32], out: &mut [f32]) {
        let f = v.len();
        axpy_with::<M>(self.reg, v, out);
        for (k, (&i, &c)) in self.items.iter().zip(self.conf).enumerate() {
            self.prefetch_ahead::<M>(k, f);
            let yi = &self.y[i as usize * f..(i as usize + 1) * f];
            let w = (c - 1.0) * dot_with::<M>(yi, v);
            axpy_with::<M>(w, yi, out);
        }
    }

    /// Completes `r = G x` into the residual `r = b − A x` in one pass over the
    /// items: `r = −(G + λI) x + Σ_i (c_i − (c_i − 1) y_i·x) y_i`.
    #[inline(always)]
    fn residual_rest<M: MulAdd>(&self, x: &[f32], r: &mut [f32]) {
        let f = x.len();
        for (ri, xi) in r.iter_mut().zip(x.iter()) {
            *ri = -M::mul_add(self.reg, *xi, *ri);
        }
        for (k, (&i, &c)) in self.items.iter().zip(self.conf).enumerate() {
            self.prefetch_ahead::<M>(k, f);
            let yi = &self.y[i as usize * f..(i as usize + 1) * f];
            let w = c - (c - 1.0) * dot_with::<M>(yi, x);
            axpy_with::<M>(w, yi, r);
        }
    }

    /// Prefetches the factor row of the item `PREFETCH_DISTANCE` places ahead.
    #[inline(always)]
    fn prefetch_ahead<M: MulAdd>(&self, k: usize, f: usize) {
        const PREFETCH_DISTANCE: usize = 8;
        if let Some(&j) = self.items.get(k + PREFETCH_DISTANCE) {
            let start = j as usize * f;
            if let Some(row) = self.y.get(start..start + f) {
                M::prefetch(row);
            }
        }
    }

    /// The dense matrix `A` and right-hand side `b` (for exact solves and tests).
    pub fn dense(&self, f: usize) -> (Vec<f32>, Vec<f32>) {
        let mut a = self.gram.to_vec();
        for d in 0..f {
            a[d * f + d] += self.reg;
        }
        let mut b = vec![0f32; f];
        for (&i, &c) in self.items.iter().zip(self.conf) {
            let yi = &self.y[i as usize * f..(i as usize + 1) * f];
            for r in 0..f {
                axpy((c - 1.0) * yi[r], yi, &mut a[r * f..(r + 1) * f]);
            }
            axpy(c, yi, &mut b);
        }
        (a, b)
    }

    /// The exact solution by Cholesky (fold-in, tests).
    pub fn solve_exact(&self, f: usize) -> Option<Vec<f32>> {
        let (a, b) = self.dense(f);
        cholesky_solve(&a, &b)
    }

    /// `steps` conjugate-gradient iterations from the current `x` (warm start).
    /// `scratch` must hold `3 f` floats.
    pub fn cg(&self, x: &mut [f32], steps: usize, scratch: &mut [f32]) {
        self.cg_with::<Plain>(x, steps, scratch)
    }

    #[inline(always)]
    fn cg_with<M: MulAdd>(&self, x: &mut [f32], steps: usize, scratch: &mut [f32]) {
        let f = x.len();
        let (r, rest) = scratch.split_at_mut(f);
        let (p, ap) = rest.split_at_mut(f);
        self.cg_parts::<M>(x, steps, r, p, &mut ap[..f])
    }

    /// The same CG with a fixed dimension `N`: every loop has a constant trip
    /// count, so the compiler unrolls it and keeps the vectors in registers.
    #[inline(always)]
    fn cg_fixed<const N: usize, M: MulAdd>(&self, x: &mut [f32], steps: usize) {
        let mut r = [0f32; N];
        let mut p = [0f32; N];
        let mut ap = [0f32; N];
        let mut xa = [0f32; N];
        xa.copy_from_slice(x);
        self.cg_parts::<M>(&mut xa, steps, &mut r, &mut p, &mut ap);
        x.copy_from_slice(&xa);
    }

    #[inline(always)]
    fn cg_parts<M: MulAdd>(
        &self,
        x: &mut [f32],
        steps: usize,
        r: &mut [f32],
        p: &mut [f32],
        ap: &mut [f32],
    ) {
        symv_with::<M>(self.gram, x, r);
        self.residual_rest::<M>(x, r);
        p.copy_from_slice(r);
        let mut rs_old = dot_with::<M>(r, r);
        for _ in 0..steps {
            if rs_old < 1e-20 {
                break;
            }
            self.apply::<M>(p, ap);
            match cg_update::<M>(x, r, p, ap, rs_old) {
                Some(rs_new) => rs_old = rs_new,
                None => break,
            }
        }
    }
}

/// One CG update once `ap = A p` is known: moves `x` and `r` along `p`, then
/// turns `p` into the next direction. Returns the new `r·r`, or `None` (and
/// changes nothing) when the curvature `p·Ap` is not positive and finite.
#[inline(always)]
fn cg_update<M: MulAdd>(
    x: &mut [f32],
    r: &mut [f32],
    p: &mut [f32],
    ap: &[f32],
    rs_old: f32,
) -> Option<f32> {
    let pap = dot_with::<M>(p, ap);
    if pap <= 0.0 || !pap.is_finite() {
        return None;
    }
    let alpha = rs_old / pap;
    axpy_with::<M>(alpha, p, x);
    axpy_with::<M>(-alpha, ap, r);
    let rs_new = dot_with::<M>(r, r);
    let beta = rs_new / rs_old;
    p.iter_mut()
        .zip(r.iter())
        .for_each(|(p, r)| *p = M::mul_add(beta, *p, *r));
    Some(rs_new)
}

/// `outs[b] = m · vs[b]` for `B` vectors at once (a symmetric `N × N` matrix,
/// `N` a multiple of 16): each 16-lane block of `m` is read once for all `B`
/// vectors instead of once per vector. Every element is accumulated over `j`
/// in order, exactly as [`symv_with`] does, so the results are bit-identical.
#[inline(always)]
fn symv_block<const N: usize, const B: usize, M: MulAdd>(
    m: &[f32],
    vs: &[[f32; N]; B],
    outs: &mut [[f32; N]; B],
) {
    const W: usize = 16;
    assert!(m.len() == N * N && N.is_multiple_of(W));
    for start in (0..N).step_by(W) {
        let mut acc = [[0f32; W]; B];
        for j in 0..N {
            let row: &[f32; W] = m[j * N + start..j * N + start + W]
                .try_into()
                .unwrap_or(&[0.0; W]);
            for b in 0..B {
                let vj = vs[b][j];
                for t in 0..W {
                    acc[b][t] = M::mul_add(vj, row[t], acc[b][t]);
                }
            }
        }
        for b in 0..B {
            outs[b][start..start + W].copy_from_slice(&acc[b]);
        }
    }
}

/// [`RowProblem::cg`] for `B` rows sharing one Gram matrix, in lockstep: the
/// Gram products of the `B` rows are one [`symv_block`] (the matrix read once
/// for all), everything else is per row and in the same order as the single
/// solver, so each row's result is bit-identical to its own `cg`. A row that
/// converges (or meets a non-positive curvature) stops updating, as it would
/// alone.
#[inline(always)]
fn cg_block<const N: usize, const B: usize, M: MulAdd>(
    probs: &[&RowProblem<'_>; B],
    xs: &mut [[f32; N]; B],
    steps: usize,
) {
    let gram = probs[0].gram;
    let mut r = [[0f32; N]; B];
    let mut p = [[0f32; N]; B];
    let mut ap = [[0f32; N]; B];
    let mut rs_old = [0f32; B];
    let mut active = [true; B];
    symv_block::<N, B, M>(gram, xs, &mut r);
    for b in 0..B {
        probs[b].residual_rest::<M>(&xs[b], &mut r[b]);
        p[b] = r[b];
        rs_old[b] = dot_with::<M>(&r[b], &r[b]);
    }
    for _ in 0..steps {
        for b in 0..B {
            if rs_old[b] < 1e-20 {
                active[b] = false;
            }
        }
        if !active.iter().any(|&a| a) {
            break;
        }
        symv_block::<N, B, M>(gram, &p, &mut ap);
        for b in 0..B {
            if !active[b] {
                continue;
            }
            probs[b].apply_rest::<M>(&p[b], &mut ap[b]);
            match cg_update::<M>(&mut xs[b], &mut r[b], &mut p[b], &ap[b], rs_old[b]) {
                Some(rs_new) => rs_old[b] = rs_new,
                None => active[b] = false,
            }
        }
    }
}

/// Rows solved together by [`cg_dispatch_block`].
pub const CG_BLOCK: usize = 4;

crate::simd::multiversion! {
    /// Runs `cg` on [`CG_BLOCK`] row problems sharing one Gram matrix, each
    /// result bit-identical to its own [`cg_dispatch`]; returns `false` (and
    /// touches nothing) where no blocked kernel exists for `isa` and the
    /// dimension, so the caller solves the rows one by one.
    pub fn cg_dispatch_block(
        probs: &[&RowProblem<'_>; CG_BLOCK],
        xs: &mut [&mut [f32]; CG_BLOCK],
        steps: usize,
    ) -> bool;
    portable: |_, _, _| false,
    vector: cg_block_widths,
    features: "avx2,fma", "avx512f,avx2,fma",
}

/// Dispatches a block of CG solves to the width-specialised kernel (32, 64 or
/// 128 factors); `false` for other widths (the caller then solves row by row).
/// Inlined into its `#[target_feature]` callers, which compile it.
#[inline(always)]
fn cg_block_widths(
    probs: &[&RowProblem<'_>; CG_BLOCK],
    xs: &mut [&mut [f32]; CG_BLOCK],
    steps: usize,
) -> bool {
    match xs[0].len() {
        32 => cg_block_n::<32>(probs, xs, steps),
        64 => cg_block_n::<64>(probs, xs, steps),
        128 => cg_block_n::<128>(probs, xs, steps),
        _ => false,
    }
}

/// [`cg_block`] for dimension `N` with fused multiply-adds; `false` when
/// the lengths or the shared Gram matrix do not fit.
#[inline(always)]
fn cg_block_n<const N: usize>(
    probs: &[&RowProblem<'_>; CG_BLOCK],
    xs: &mut [&mut [f32]; CG_BLOCK],
    steps: usize,
) -> bool {
    let gram = probs[0].gram;
    if gram.len() != N * N
        || xs.iter().any(|x| x.len() != N)
        || probs.iter().any(|p| !std::ptr::eq(p.gram, gram))
    {
        return false;
    }
    let mut local = [[0f32; N]; CG_BLOCK];
    for (l, x) in local.iter_mut().zip(xs.iter()) {
        l.copy_from_slice(x);
    }
    cg_block::<N, CG_BLOCK, Fused>(probs, &mut local, steps);
    for (x, l) in xs.iter_mut().zip(&local) {
        x.copy_from_slice(l);
    }
    true
}

crate::simd::multiversion! {
    /// Runs `cg` on a row problem with the hot loops compiled for `isa`
    /// (fused multiply-adds, bit-identical at AVX2 and AVX-512).
    pub fn cg_dispatch(
        prob: &RowProblem<'_>,
        x: &mut [f32],
        steps: usize,
        scratch: &mut [f32],
    );
    portable: RowProblem::cg,
    vector: cg_widths,
    features: "avx2,fma", "avx512f,avx2,fma",
}

/// [`RowProblem::cg`] with fused multiply-adds, width-specialised at 32,
/// 64 and 128 factors; inlined into its `#[target_feature]` callers.
#[inline(always)]
fn cg_widths(prob: &RowProblem<'_>, x: &mut [f32], steps: usize, scratch: &mut [f32]) {
    match x.len() {
        32 => prob.cg_fixed::<32, Fused>(x, steps),
        64 => prob.cg_fixed::<64, Fused>(x, steps),
        128 => prob.cg_fixed::<128, Fused>(x, steps),
        _ => prob.cg_with::<Fused>(x, steps, scratch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    #[test]
    fn dot_matches_naive_for_all_small_dims() {
        let mut s = 1;
        for n in 0..=67 {
            let a: Vec<f32> = (0..n).map(|_| lcg(&mut s)).collect();
            let b: Vec<f32> = (0..n).map(|_| lcg(&mut s)).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!(
                (dot(&a, &b) as f64 - naive).abs() < 1e-5 * (1.0 + naive.abs()),
                "{n}"
            );
        }
    }

    #[test]
    fn cholesky_solves_spd_systems() {
        let a = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let x_true = [1.0f32, -2.0, 0.5];
        let mut b = [0f32; 3];
        symv(&a, &x_true, &mut b);
        let x = cholesky_solve(&a, &b).expect("spd");
        for (u, v) in x.iter().zip(x_true) {
            assert!((u - v).abs() < 1e-5);
        }
        assert!(cholesky_solve(&[1.0, 2.0, 2.0, 1.0], &[1.0, 1.0]).is_none());
    }

    #[test]
    fn conjugate_gradient_converges_to_the_cholesky_solution() {
        for f in [12, 32, 64, 128] {
            cg_case(f);
        }
    }

    fn cg_case(f: usize) {
        let n_items = 40;
        let mut s = 7;
        let y: Vec<f32> = (0..n_items * f).map(|_| lcg(&mut s)).collect();
        let g = gram(&y, f);
        let items: Vec<u32> = vec![1, 4, 9, 22, 31];
        let conf: Vec<f32> = vec![2.0, 5.0, 1.5, 11.0, 3.0];
        let prob = RowProblem {
            gram: &g,
            y: &y,
            items: &items,
            conf: &conf,
            reg: 0.1,
        };
        let exact = prob.solve_exact(f).expect("spd");
        for isa in [Isa::GENERIC, Isa::detect()] {
            let mut x = vec![0f32; f];
            let mut scratch = vec![0f32; 3 * f];
            cg_dispatch(isa, &prob, &mut x, f, &mut scratch);
            let err: f32 = x
                .iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            let scale: f32 = exact.iter().map(|v| v.abs()).fold(0.0, f32::max);
            assert!(err < 1e-3 * scale.max(1.0), "{isa:?}: {err}");
            // Warm start: a few more steps from the solution stay there.
            cg_dispatch(isa, &prob, &mut x, 3, &mut scratch);
            let err2: f32 = x
                .iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err2 < 1e-3 * scale.max(1.0));
        }
    }

    #[test]
    fn blocked_cg_equals_row_by_row_cg_bit_for_bit() {
        for f in [32, 64, 128] {
            let n_items = 60;
            let mut s = 11 + f as u64;
            let y: Vec<f32> = (0..n_items * f).map(|_| lcg(&mut s)).collect();
            let g = gram(&y, f);
            // Rows of different lengths; the last one starts at its solution
            // (warm start), so it stops early while the others go on.
            let items: [Vec<u32>; CG_BLOCK] = [
                vec![1, 4, 9],
                (0..40).collect(),
                vec![59],
                vec![2, 3, 5, 7, 11, 13],
            ];
            let conf: Vec<Vec<f32>> = items
                .iter()
                .map(|it| it.iter().map(|&i| 1.0 + (i % 7) as f32).collect())
                .collect();
            let probs: Vec<RowProblem<'_>> = (0..CG_BLOCK)
                .map(|b| RowProblem {
                    gram: &g,
                    y: &y,
                    items: &items[b],
                    conf: &conf[b],
                    reg: 0.05 * (b + 1) as f32,
                })
                .collect();
            let start: Vec<Vec<f32>> = (0..CG_BLOCK)
                .map(|b| {
                    if b == CG_BLOCK - 1 {
                        probs[b].solve_exact(f).expect("spd")
                    } else {
                        (0..f).map(|_| lcg(&mut s) * 0.1).collect()
                    }
                })
                .collect();
            let isa = Isa::detect();
            for steps in [1, 3, 8] {
                let mut alone = start.clone();
                let mut scratch = vec![0f32; 3 * f];
                for (prob, x) in probs.iter().zip(alone.iter_mut()) {
                    cg_dispatch(isa, prob, x, steps, &mut scratch);
                }
                let mut blocked = start.clone();
                let [a, b, c, d] = &mut blocked[..] else {
                    panic!("four rows")
                };
                let refs = [&probs[0], &probs[1], &probs[2], &probs[3]];
                let done = cg_dispatch_block(isa, &refs, &mut [a, b, c, d], steps);
                if isa == Isa::GENERIC {
                    assert!(!done);
                    continue;
                }
                assert!(done, "f = {f}");
                for (x, y) in blocked.iter().zip(&alone) {
                    let (xb, yb): (Vec<u32>, Vec<u32>) = (
                        x.iter().map(|v| v.to_bits()).collect(),
                        y.iter().map(|v| v.to_bits()).collect(),
                    );
                    assert_eq!(xb, yb, "f = {f}, steps = {steps}");
                }
            }
        }
    }

    /// Every x86 level this CPU has gives the bits of the others on the
    /// same fused path: AVX-512 against AVX2 (where the CPU has AVX-512;
    /// elsewhere the loop holds AVX2 alone and checks it against itself).
    #[test]
    fn avx512_kernels_equal_avx2_bit_for_bit() {
        let levels: Vec<Isa> = Isa::available()
            .into_iter()
            .filter(|i| *i != Isa::GENERIC)
            .collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        for f in [12, 32, 64, 128] {
            let mut s = 5 + f as u64;
            let y: Vec<f32> = (0..3000 * f).map(|_| lcg(&mut s)).collect();
            let grams: Vec<Vec<f32>> = levels.iter().map(|&i| gram_with(i, &y, f)).collect();
            for g in &grams[1..] {
                assert_eq!(bits(g), bits(&grams[0]), "gram, f = {f}");
            }
            let items: Vec<u32> = (0..50).map(|i| i * 7 % 3000).collect();
            let conf: Vec<f32> = items.iter().map(|&i| 1.0 + (i % 5) as f32).collect();
            let prob = RowProblem {
                gram: &grams[0],
                y: &y,
                items: &items,
                conf: &conf,
                reg: 0.3,
            };
            let mut outs = Vec::new();
            for &isa in &levels {
                let mut x = vec![0f32; f];
                let mut scratch = vec![0f32; 3 * f];
                cg_dispatch(isa, &prob, &mut x, 6, &mut scratch);
                let start = x.clone();
                let (mut a, mut b, mut c, mut d) =
                    (start.clone(), start.clone(), start.clone(), start);
                let refs = [&prob, &prob, &prob, &prob];
                cg_dispatch_block(isa, &refs, &mut [&mut a, &mut b, &mut c, &mut d], 4);
                outs.push((x, a));
            }
            for (x, a) in &outs[1..] {
                assert_eq!(bits(x), bits(&outs[0].0), "cg, f = {f}");
                assert_eq!(bits(a), bits(&outs[0].1), "blocked cg, f = {f}");
            }
        }
    }

    #[test]
    fn gram_matches_naive() {
        let f = 5;
        let mut s = 3;
        let x: Vec<f32> = (0..9 * f).map(|_| lcg(&mut s)).collect();
        let g = gram(&x, f);
        for a in 0..f {
            for b in 0..f {
                let naive: f32 = x.chunks(f).map(|r| r[a] * r[b]).sum();
                assert!((g[a * f + b] - naive).abs() < 1e-5);
            }
        }
    }
}
