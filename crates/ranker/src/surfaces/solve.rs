//! The joint row problem of the hierarchical model, for either side: a
//! row's shared vector and its parts of each surface's own, solved by
//! Jacobi-preconditioned conjugate gradient (see the parent module's docs).

use rayon::prelude::*;

use super::USERS_PER_TASK;
use crate::als::row_reg;
use crate::csr::Csr;
use crate::linalg::{axpy_with, dot_with, MulAdd, Plain};
use crate::params::ValidTrainParams;
use crate::simd::Isa;

/// One surface's part of a row's problem (a user's, or a video's).
struct Part<'a> {
    /// Shared-part weight `a_s`.
    a: f32,
    /// `λ_s` of the surface's own part; `None` when it is fixed at 0 (a
    /// share of 0).
    reg: Option<f32>,
    /// Index of the own part's block in the unknowns.
    block: usize,
    /// The surface.
    surface: usize,
    gram: &'a [f32],
    /// The other side's positives of the row on this surface.
    cols: &'a [u32],
    conf: &'a [f32],
    /// The part's whole Hessian block `G + Σ (c − 1) y yᵀ` (`f × f`), when
    /// it was built for the row: each product is then one symv.
    dense: Option<&'a [f32]>,
}

/// The other side's vectors: row `j` on surface `s` at `(j · ns + s) · f`.
#[derive(Clone, Copy)]
pub(super) struct Other<'a> {
    pub(super) x: &'a [f32],
    pub(super) ns: usize,
    pub(super) f: usize,
}

impl<'a> Other<'a> {
    #[inline(always)]
    fn at(&self, j: u32, s: usize) -> &'a [f32] {
        let at = (j as usize * self.ns + s) * self.f;
        &self.x[at..at + self.f]
    }
}

/// `out = A v` for one surface part, without a ridge: `G v + Σ (c − 1)(y·v) y`.
#[inline(always)]
fn apply_part<M: MulAdd>(part: &Part<'_>, y: Other<'_>, v: &[f32], out: &mut [f32]) {
    if let Some(h) = part.dense {
        crate::linalg::symv_with::<M>(h, v, out);
        return;
    }
    crate::linalg::symv_with::<M>(part.gram, v, out);
    for (&j, &c) in part.cols.iter().zip(part.conf) {
        let q = y.at(j, part.surface);
        let w = (c - 1.0) * dot_with::<M>(q, v);
        axpy_with::<M>(w, q, out);
    }
}

/// One row's joint problem in `(p, δ_1 … δ_k)`, stacked as blocks of `f`.
struct RowProblem<'a> {
    f: usize,
    y: Other<'a>,
    parts: Vec<Part<'a>>,
    /// `λ` of `p`.
    reg_p: f32,
    blocks: usize,
}

impl RowProblem<'_> {
    /// `out = H v`; `z` and `t` are scratch of `f`.
    #[inline(always)]
    fn apply<M: MulAdd>(&self, v: &[f32], out: &mut [f32], z: &mut [f32], t: &mut [f32]) {
        let f = self.f;
        out.iter_mut().for_each(|o| *o = 0.0);
        let (vp, _) = v.split_at(f);
        for part in &self.parts {
            // z = a p + δ
            for (zi, &pi) in z.iter_mut().zip(vp) {
                *zi = part.a * pi;
            }
            if part.reg.is_some() {
                let vd = &v[part.block * f..(part.block + 1) * f];
                z.iter_mut().zip(vd).for_each(|(zi, &d)| *zi += d);
            }
            apply_part::<M>(part, self.y, z, t);
            axpy_with::<M>(part.a, t, &mut out[..f]);
            if let Some(reg) = part.reg {
                let vd = &v[part.block * f..(part.block + 1) * f];
                let od = &mut out[part.block * f..(part.block + 1) * f];
                for ((o, &ti), &d) in od.iter_mut().zip(t.iter()).zip(vd) {
                    *o = M::mul_add(reg, d, ti);
                }
            }
        }
        axpy_with::<M>(self.reg_p, vp, &mut out[..f]);
    }

    /// The right-hand side `b` and the Jacobi preconditioner (the inverse of
    /// the Hessian's diagonal); `bs` and `ds` are scratch of `f`.
    fn rhs_and_diag(&self, b: &mut [f32], diag: &mut [f32], bs: &mut [f32], ds: &mut [f32]) {
        let f = self.f;
        b.iter_mut().for_each(|x| *x = 0.0);
        diag.iter_mut().for_each(|x| *x = 0.0);
        for part in &self.parts {
            bs.iter_mut().for_each(|x| *x = 0.0);
            for (d, dsd) in ds.iter_mut().enumerate() {
                *dsd = part.dense.unwrap_or(part.gram)[d * f + d];
            }
            for (&j, &c) in part.cols.iter().zip(part.conf) {
                let q = self.y.at(j, part.surface);
                axpy_with::<Plain>(c, q, bs);
                if part.dense.is_none() {
                    for (dsd, &qd) in ds.iter_mut().zip(q) {
                        *dsd += (c - 1.0) * qd * qd;
                    }
                }
            }
            let a2 = part.a * part.a;
            for d in 0..f {
                b[d] += part.a * bs[d];
                diag[d] += a2 * ds[d];
            }
            if let Some(reg) = part.reg {
                let at = part.block * f;
                b[at..at + f].copy_from_slice(bs);
                for d in 0..f {
                    diag[at + d] = ds[d] + reg;
                }
            }
        }
        for d in diag.iter_mut().take(f) {
            *d += self.reg_p;
        }
        for d in diag.iter_mut() {
            *d = if *d > 0.0 { 1.0 / *d } else { 1.0 };
        }
    }

    /// `steps` preconditioned CG iterations from `x` (warm start).
    #[inline(always)]
    fn pcg<M: MulAdd>(&self, x: &mut [f32], steps: usize, sc: &mut Scratch) {
        let n = self.blocks * self.f;
        sc.size(n, self.f);
        let Scratch {
            b,
            minv,
            r,
            p,
            ap,
            z,
            z1,
            z2,
        } = sc;
        self.rhs_and_diag(b, minv, z1, z2);
        self.apply::<M>(x, ap, z1, z2);
        for i in 0..n {
            r[i] = b[i] - ap[i];
        }
        for ((zi, &ri), &mi) in z.iter_mut().zip(r.iter()).zip(minv.iter()) {
            *zi = ri * mi;
        }
        p.copy_from_slice(z);
        let mut rz = dot_with::<M>(r, z);
        for _ in 0..steps {
            if rz.is_nan() || rz <= 1e-20 {
                break;
            }
            self.apply::<M>(p, ap, z1, z2);
            let pap = dot_with::<M>(p, ap);
            if pap.is_nan() || pap <= 0.0 || !pap.is_finite() {
                break;
            }
            let alpha = rz / pap;
            axpy_with::<M>(alpha, p, x);
            axpy_with::<M>(-alpha, ap, r);
            for ((zi, &ri), &mi) in z.iter_mut().zip(r.iter()).zip(minv.iter()) {
                *zi = ri * mi;
            }
            let rz_new = dot_with::<M>(r, z);
            let beta = rz_new / rz;
            for (pi, &zi) in p.iter_mut().zip(z.iter()) {
                *pi = M::mul_add(beta, *pi, zi);
            }
            rz = rz_new;
        }
    }
}

/// Buffers of one task's row solves, reused from row to row.
#[derive(Default)]
struct Scratch {
    b: Vec<f32>,
    minv: Vec<f32>,
    r: Vec<f32>,
    p: Vec<f32>,
    ap: Vec<f32>,
    z: Vec<f32>,
    z1: Vec<f32>,
    z2: Vec<f32>,
}

impl Scratch {
    /// Sizes the stacked buffers to `n` and the block ones to `f`.
    fn size(&mut self, n: usize, f: usize) {
        for v in [
            &mut self.b,
            &mut self.minv,
            &mut self.r,
            &mut self.p,
            &mut self.ap,
            &mut self.z,
        ] {
            v.clear();
            v.resize(n, 0.0);
        }
        for v in [&mut self.z1, &mut self.z2] {
            v.clear();
            v.resize(f, 0.0);
        }
    }
}

/// One set of specific shares and the shared-part weights `√(1 − share)`
/// they give.
pub(super) struct Shares {
    pub(super) a: Vec<f32>,
    pub(super) specific: Vec<f32>,
}

impl Shares {
    pub(super) fn new(specific: &[f32]) -> Shares {
        Shares {
            a: super::shared_weights(specific),
            specific: specific.to_vec(),
        }
    }
}

/// What a half-sweep of joint row problems needs besides each row's data.
/// The users' step and, with specific items, the videos' step are the same
/// problem with the sides swapped.
pub(super) struct SideStep<'a> {
    /// Row `r · ns + s`: row `r`'s confidences on surface `s`.
    pub(super) conf: &'a Csr,
    /// The other side's vectors on each surface.
    pub(super) other: Other<'a>,
    /// Per surface, the Gram matrix of the other side's zeros there.
    pub(super) grams: &'a [Vec<f32>],
    /// The shares each row is solved for: row `r`'s vectors for share set
    /// `k` are slot `k` of its `shares.len()` slots (one set: the plain
    /// layout). Solving several sets row by row reads a row's data and the
    /// other side's vectors once for all of them.
    pub(super) shares: &'a [Shares],
    pub(super) p: &'a ValidTrainParams,
    pub(super) n_surfaces: usize,
    pub(super) steps: usize,
    /// Only these rows are solved (the others keep their vectors).
    pub(super) only: Option<&'a [bool]>,
    /// Videos: per row, the surfaces it was shown on, where it has a part
    /// (its zeros there) with or without positives, and whose surface
    /// vector elsewhere is `a_s q`. Users (`None`): a part per surface with
    /// positives, zero surface vectors elsewhere.
    pub(super) shown: Option<&'a [u8]>,
}

/// Re-solves the rows `first..` of `shared` (rows of `k · f`, a slot of `f`
/// per share set) and their surface rows `surface` (`k · ns · f`).
#[inline(always)]
fn solve_rows_joint<M: MulAdd>(
    st: &SideStep<'_>,
    first: usize,
    shared: &mut [f32],
    surface: &mut [f32],
) {
    let f = st.p.factors;
    let ns = st.n_surfaces;
    let k = st.shares.len();
    let mut sc = Scratch::default();
    let mut x = Vec::new();
    // Several share sets: each part's Hessian block once per row, reused by
    // every set's products (fewer flops than the rows' products each time).
    let mut hessians = Vec::new();
    for (r, (prow, wrow)) in shared
        .chunks_exact_mut(k * f)
        .zip(surface.chunks_exact_mut(k * ns * f))
        .enumerate()
    {
        let u = first + r;
        if st.only.is_some_and(|o| !o[u]) {
            continue;
        }
        if k > 1 {
            build_dense::<M>(st, u, &mut hessians);
        }
        let dense = (k > 1).then_some(&hessians[..]);
        for (share, (pu, wu)) in st
            .shares
            .iter()
            .zip(prow.chunks_exact_mut(f).zip(wrow.chunks_exact_mut(ns * f)))
        {
            solve_row::<M>(st, share, u, dense, &mut x, &mut sc, pu, wu);
        }
    }
}

/// Row `u`'s part Hessians `G_s + Σ (c − 1) y yᵀ` into `out` (`ns` blocks
/// of `f × f`; a surface without positives keeps its Gram): the upper
/// triangle summed, the lower one its mirror (exactly symmetric, half the
/// products).
#[inline(always)]
fn build_dense<M: MulAdd>(st: &SideStep<'_>, u: usize, out: &mut Vec<f32>) {
    let f = st.p.factors;
    let ns = st.n_surfaces;
    out.clear();
    out.resize(ns * f * f, 0.0);
    for (s, h) in out.chunks_exact_mut(f * f).enumerate() {
        h.copy_from_slice(&st.grams[s]);
        let (cols, conf) = st.conf.row(u * ns + s);
        if cols.is_empty() {
            continue;
        }
        for (&j, &c) in cols.iter().zip(conf) {
            let q = st.other.at(j, s);
            for r in 0..f {
                axpy_with::<M>((c - 1.0) * q[r], &q[r..], &mut h[r * f + r..(r + 1) * f]);
            }
        }
        for r in 1..f {
            for c in 0..r {
                h[r * f + c] = h[c * f + r];
            }
        }
    }
}

/// Row `u`'s joint problem under `share`, warm from and written to `pu`
/// (its shared vector) and `wu` (its surface vectors); `dense`, the row's
/// part Hessians when built ([`build_dense`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn solve_row<M: MulAdd>(
    st: &SideStep<'_>,
    share: &Shares,
    u: usize,
    dense: Option<&[f32]>,
    x: &mut Vec<f32>,
    sc: &mut Scratch,
    pu: &mut [f32],
    wu: &mut [f32],
) {
    let f = st.p.factors;
    let ns = st.n_surfaces;
    let mut parts = Vec::with_capacity(ns);
    let mut blocks = 1;
    let mut total = 0;
    for s in 0..ns {
        let (cols, conf) = st.conf.row(u * ns + s);
        let has_part = match st.shown {
            Some(m) => m[u] & (1 << s) != 0,
            None => !cols.is_empty(),
        };
        if !has_part {
            continue;
        }
        total += cols.len();
        let reg = (share.specific[s] > 0.0)
            .then(|| row_reg(st.p.reg, st.p.reg_exponent, cols.len()) / share.specific[s]);
        let block = if reg.is_some() {
            blocks += 1;
            blocks - 1
        } else {
            0
        };
        parts.push(Part {
            a: share.a[s],
            reg,
            block,
            surface: s,
            gram: &st.grams[s],
            cols,
            conf,
            dense: dense.map(|d| &d[s * f * f..(s + 1) * f * f]),
        });
    }
    if parts.is_empty() {
        pu.iter_mut().for_each(|v| *v = 0.0);
        wu.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let prob = RowProblem {
        f,
        y: st.other,
        reg_p: row_reg(st.p.reg, st.p.reg_exponent, total),
        blocks,
        parts,
    };
    // Unknowns from the current vectors: p, and δ_s = w_s − a_s p.
    x.clear();
    x.resize(blocks * f, 0.0);
    x[..f].copy_from_slice(pu);
    for part in &prob.parts {
        if part.reg.is_some() {
            let s = part.surface;
            let w = &wu[s * f..(s + 1) * f];
            for d in 0..f {
                x[part.block * f + d] = w[d] - part.a * pu[d];
            }
        }
    }
    prob.pcg::<M>(x, st.steps, sc);
    pu.copy_from_slice(&x[..f]);
    if st.shown.is_some() {
        // Surfaces without a part: the shared part alone.
        for s in 0..ns {
            for d in 0..f {
                wu[s * f + d] = share.a[s] * x[d];
            }
        }
    } else {
        wu.iter_mut().for_each(|v| *v = 0.0);
    }
    for part in &prob.parts {
        let s = part.surface;
        let w = &mut wu[s * f..(s + 1) * f];
        for d in 0..f {
            w[d] = part.a * x[d];
        }
        if part.reg.is_some() {
            for d in 0..f {
                w[d] += x[part.block * f + d];
            }
        }
    }
}

crate::simd::multiversion! {
    /// [`solve_rows_joint`] for `isa`: plain arithmetic on portable code,
    /// fused multiply-adds compiled for AVX2 or AVX-512.
    fn solve_rows_joint_on(st: &SideStep<'_>, first: usize, shared: &mut [f32], surface: &mut [f32]);
    portable: solve_rows_joint::<Plain>,
    vector: solve_rows_joint::<crate::linalg::Fused>,
    features: "avx2,fma", "avx512f,avx2,fma",
}

/// Runs the half-sweep `st` over every row of `shared` / `surface` (each
/// row a slot per share set of `st`).
pub(super) fn side_step(isa: Isa, st: &SideStep<'_>, shared: &mut [f32], surface: &mut [f32]) {
    let f = st.p.factors;
    let ns = st.n_surfaces;
    let k = st.shares.len();
    shared
        .par_chunks_mut(k * f * USERS_PER_TASK)
        .zip(surface.par_chunks_mut(k * ns * f * USERS_PER_TASK))
        .enumerate()
        .for_each(|(chunk, (ps, ws))| {
            let first = chunk * USERS_PER_TASK;
            solve_rows_joint_on(isa, st, first, ps, ws);
        });
}
