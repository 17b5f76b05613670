//! A user's taste per surface: a shared part and a part of each surface's
//! own, whose weight is learned (hierarchical iALS).
//!
//! **Model.** A user `u` on surface `s` scores item `i` by `w_us · q_i`, with
//!
//! ```text
//! w_us = a_s p_u + δ_us,   a_s = √(1 − φ_s),
//! p_u ~ N(0, I/λ),   δ_us ~ N(0, φ_s I/λ)   (λ = `reg`),
//! ```
//!
//! so that on every surface the prior of `w_us` is `N(0, I/λ)`, the plain iALS
//! prior, and `φ_s ∈ [0, 1]` is the share of a user's taste on surface `s`
//! that is that surface's own (the *specific share*). `φ_s = 0` is one taste
//! everywhere (`w_us = p_u`, the `shared` model); `φ_s = 1` an independent
//! taste per surface with the video vectors still shared (the `per_surface`
//! model); in between, a user's vector on a surface is pulled towards their
//! shared taste, harder the less the surface's tastes differ, and a user new
//! to a surface starts from `a_s p_u`. (The same structure as a simulated
//! world's `surface_taste_divergence`, where a user's taste on a surface is
//! `√(1 − d) base + √d own`.) The video vectors `q_i` are one per video: a
//! video is the same video on every surface.
//!
//! **Objective.** iALS per (user, surface) row: observed pairs have
//! confidence `c = 1 + α w`, every item the surface showed (`item_surfaces`)
//! is a zero with confidence 1 (so a row of reels is not asked to push down
//! long videos reels never shows), plus the priors above as penalties
//! `λ|p_u|² + Σ_s (λ/φ_s)|δ_us|² + λ Σ_i |q_i|²` (with `reg_exponent`, each
//! `λ` scaled by `(1 + n)^ν` of its row's count, as in plain iALS).
//!
//! **Fitting** alternates, as iALS does:
//! - users: per user, one joint problem in `(p_u, δ_u1 … δ_uS)` (the
//!   surfaces where the user has data; `δ` is fixed at 0 where `φ_s = 0`),
//!   solved by Jacobi-preconditioned conjugate gradient warm-started from the
//!   current vectors. A product with its Hessian costs one product with each
//!   surface's `A_s = G_s + Σ (c − 1) q qᵀ`: what a per-surface model pays.
//! - items: iALS's item step over the rows `w_us`, where each item's Gram
//!   term sums the rows of the surfaces it was shown on.
//!
//! **Choosing `φ`.** [`choose_specific`] refits the users (video vectors
//! fixed) for each value of a grid and scores impressions the model did not
//! train on, per surface, by the gain-weighted concordance of
//! [`heldout_concordance`]; per surface it keeps the most shared value whose
//! paired difference to the best is within one standard error. Several days'
//! evidence ([`SpecificChoice::evidence`]) pools with [`HeldOutScore::pool`]
//! and [`pick_specific`] chooses on it.

use rayon::prelude::*;

use crate::als::{check_lengths, init_factors, row_reg, solve_side_grams, EpochReport, Grams};
use crate::csr::Csr;
use crate::error::{Error, Result};
use crate::factors::Factors;
use crate::ids::IdMap;
use crate::isa::{Isa, Level};
use crate::linalg::{axpy_with, dot, dot_with, gram, MulAdd, Plain};
use crate::params::ValidTrainParams;
use crate::TrainControl;

mod choose;
pub use choose::{
    choose_specific, heldout_concordance, pick_specific, HeldOut, HeldOutScore, SpecificChoice,
};

/// Most surfaces a model can tell apart (the item masks are one byte).
pub const MAX_SURFACES: usize = 8;

/// Users per parallel task of the user step.
const USERS_PER_TASK: usize = 16;

/// Interactions keyed by (user, surface): the training input of
/// [`train_surface_ials`].
#[derive(Debug, Clone)]
pub struct SurfaceData {
    /// External user id ↔ user index.
    pub users: IdMap,
    /// External item id ↔ column of `matrix`.
    pub items: IdMap,
    /// How many surfaces (rows per user).
    pub n_surfaces: usize,
    /// `(users · n_surfaces) × items`: row `u · n_surfaces + s` holds user
    /// `u`'s summed weights on surface `s` (positives only).
    pub matrix: Csr,
    /// Per item, bit `s` set when it was shown on surface `s` (its zeros count
    /// only there).
    pub item_surfaces: Vec<u8>,
}

impl SurfaceData {
    /// From impressions `(user, surface, item, weight)`: a pair's weights on
    /// a surface are summed, and it is a positive when the sum is above
    /// `min_weight`; every impression, positive or not, marks its item as
    /// shown on its surface. Ids are indexed in order of first appearance.
    pub fn from_triplets(
        user_ids: &[u64],
        surfaces: &[u8],
        item_ids: &[u64],
        weights: Option<&[f32]>,
        n_surfaces: usize,
        min_weight: f32,
    ) -> Result<SurfaceData> {
        if !(1..=MAX_SURFACES).contains(&n_surfaces) {
            return Err(Error::InvalidParam {
                field: "n_surfaces",
                allowed: "1 ..= 8",
                got: n_surfaces.to_string(),
            });
        }
        let n = user_ids.len();
        check_lengths(&[
            ("surfaces", n, surfaces.len()),
            ("item ids", n, item_ids.len()),
        ])?;
        if let Some(w) = weights {
            check_lengths(&[("weights", n, w.len())])?;
            if let Some(row) = w.iter().position(|v| !v.is_finite()) {
                return Err(Error::NotFinite {
                    what: "weight",
                    row,
                    value: w[row],
                });
            }
        }
        if let Some(row) = surfaces.iter().position(|&s| s as usize >= n_surfaces) {
            return Err(Error::InvalidInput(format!(
                "surface index {} at row {row} is not below the {n_surfaces} surfaces",
                surfaces[row]
            )));
        }
        let mut users = IdMap::new();
        let mut items = IdMap::new();
        let mut rows = Vec::with_capacity(n);
        let mut cols = Vec::with_capacity(n);
        for i in 0..n {
            let u = users.insert(user_ids[i]) as usize;
            rows.push((u * n_surfaces + surfaces[i] as usize) as u32);
            cols.push(items.insert(item_ids[i]));
        }
        if users.len() * n_surfaces > u32::MAX as usize {
            return Err(Error::InvalidInput(format!(
                "{} users × {n_surfaces} surfaces is more rows than a model holds",
                users.len()
            )));
        }
        let mut item_surfaces = vec![0u8; items.len()];
        for (&c, &s) in cols.iter().zip(surfaces) {
            item_surfaces[c as usize] |= 1 << s;
        }
        let vals = match weights {
            Some(w) => w.to_vec(),
            None => vec![1.0; n],
        };
        let m = Csr::from_triplets(users.len() * n_surfaces, items.len(), &rows, &cols, &vals);
        Ok(SurfaceData {
            users,
            items,
            n_surfaces,
            matrix: crate::confidence::keep_above(&m, min_weight),
            item_surfaces,
        })
    }

    /// The row of user `u` on surface `s`.
    fn row(&self, u: usize, s: usize) -> usize {
        u * self.n_surfaces + s
    }

    /// User `u`'s positives on surface `s`.
    pub fn count(&self, u: usize, s: usize) -> usize {
        self.matrix.row_len(self.row(u, s))
    }

    /// Every surface's positives folded into one users × items matrix (a
    /// pair seen on two surfaces sums its weights): the data of a model with
    /// one vector per user.
    pub fn pooled(&self) -> Csr {
        let (mut rows, mut cols, mut vals) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..self.matrix.n_rows() {
            let (c, v) = self.matrix.row(r);
            rows.extend(std::iter::repeat_n((r / self.n_surfaces) as u32, c.len()));
            cols.extend_from_slice(c);
            vals.extend_from_slice(v);
        }
        Csr::from_triplets(self.users.len(), self.items.len(), &rows, &cols, &vals)
    }
}

/// The specific share `φ_s` of each surface, unchecked (see
/// [`SurfaceParams::check`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SurfaceParams {
    /// `φ_s ∈ [0, 1]` per surface: 0 = one taste everywhere, 1 = a taste of
    /// the surface's own.
    pub specific: Vec<f32>,
}

/// [`SurfaceParams`] that passed [`SurfaceParams::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSurfaceParams(SurfaceParams);

impl std::ops::Deref for ValidSurfaceParams {
    type Target = SurfaceParams;
    fn deref(&self) -> &SurfaceParams {
        &self.0
    }
}

impl SurfaceParams {
    /// Checks that there is one share per surface, each in `[0, 1]`.
    pub fn check(self, n_surfaces: usize) -> Result<ValidSurfaceParams> {
        if self.specific.len() != n_surfaces {
            return Err(Error::LengthMismatch {
                what: "specific shares",
                expected: n_surfaces,
                got: self.specific.len(),
            });
        }
        if let Some(v) = self.specific.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(Error::InvalidParam {
                field: "specific",
                allowed: "[0, 1]",
                got: v.to_string(),
            });
        }
        Ok(ValidSurfaceParams(self))
    }
}

/// A fitted per-surface model.
#[derive(Debug, Clone, PartialEq)]
pub struct SurfaceFactors {
    /// Embedding dimension.
    pub dim: usize,
    /// Surfaces per user.
    pub n_surfaces: usize,
    /// The specific shares it was fitted with.
    pub specific: Vec<f32>,
    /// `users × dim`: each user's shared taste `p_u`.
    pub shared: Vec<f32>,
    /// `users × n_surfaces × dim`: each user's vector on each surface `w_us`
    /// (`a_s p_u` where the user had no data on the surface).
    pub surface: Vec<f32>,
    /// `items × dim`.
    pub items: Vec<f32>,
    /// Per-item bias (0: iALS has none).
    pub item_bias: Vec<f32>,
}

impl SurfaceFactors {
    /// User `u`'s shared taste.
    pub fn shared_user(&self, u: usize) -> &[f32] {
        &self.shared[u * self.dim..(u + 1) * self.dim]
    }

    /// User `u`'s vector on surface `s`.
    pub fn surface_user(&self, u: usize, s: usize) -> &[f32] {
        let at = (u * self.n_surfaces + s) * self.dim;
        &self.surface[at..at + self.dim]
    }

    /// Item `i`'s vector.
    pub fn item(&self, i: usize) -> &[f32] {
        &self.items[i * self.dim..(i + 1) * self.dim]
    }

    /// The model as plain factors whose user vectors are the shared tastes.
    pub fn to_factors(&self) -> Factors {
        Factors {
            dim: self.dim,
            users: self.shared.clone(),
            items: self.items.clone(),
            item_bias: self.item_bias.clone(),
        }
    }
}

/// `a_s = √(1 − φ_s)`, the weight of the shared taste on each surface.
fn shared_weights(specific: &[f32]) -> Vec<f32> {
    specific
        .iter()
        .map(|&f| (1.0 - f).max(0.0).sqrt())
        .collect()
}

/// One surface's part of a user's problem.
struct Part<'a> {
    /// Shared-taste weight `a_s`.
    a: f32,
    /// `λ_s` of `δ`; `None` when `δ` is fixed at 0 (`φ_s = 0`).
    reg: Option<f32>,
    /// Index of `δ`'s block in the unknowns.
    block: usize,
    /// The surface.
    surface: usize,
    gram: &'a [f32],
    items: &'a [u32],
    conf: &'a [f32],
}

/// `out = A v` for one surface part, without a ridge: `G v + Σ (c − 1)(q·v) q`.
#[inline(always)]
fn apply_part<M: MulAdd>(part: &Part<'_>, y: &[f32], v: &[f32], out: &mut [f32]) {
    let f = v.len();
    crate::linalg::symv_with::<M>(part.gram, v, out);
    for (&i, &c) in part.items.iter().zip(part.conf) {
        let q = &y[i as usize * f..(i as usize + 1) * f];
        let w = (c - 1.0) * dot_with::<M>(q, v);
        axpy_with::<M>(w, q, out);
    }
}

/// One user's joint problem in `(p, δ_1 … δ_k)`, stacked as blocks of `f`.
struct UserProblem<'a> {
    f: usize,
    y: &'a [f32],
    parts: Vec<Part<'a>>,
    /// `λ` of `p`.
    reg_p: f32,
    blocks: usize,
}

impl UserProblem<'_> {
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
                *dsd = part.gram[d * f + d];
            }
            for (&i, &c) in part.items.iter().zip(part.conf) {
                let q = &self.y[i as usize * f..(i as usize + 1) * f];
                axpy_with::<Plain>(c, q, bs);
                for (dsd, &qd) in ds.iter_mut().zip(q) {
                    *dsd += (c - 1.0) * qd * qd;
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

/// Buffers of one task's user solves, reused from user to user.
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

/// What the user step needs besides each user's rows.
struct UserStep<'a> {
    conf: &'a Csr,
    y: &'a [f32],
    /// Per surface, the Gram matrix of the items shown there.
    grams: &'a [Vec<f32>],
    a: &'a [f32],
    specific: &'a [f32],
    p: &'a ValidTrainParams,
    n_surfaces: usize,
    steps: usize,
    /// Only these users are solved (the others keep their vectors).
    only: Option<&'a [bool]>,
}

/// Re-solves the users `first..` of `shared` (rows of `f`) and their surface
/// rows `surface` (zeros where a user has no data on a surface).
#[inline(always)]
fn solve_users<M: MulAdd>(
    st: &UserStep<'_>,
    first: usize,
    shared: &mut [f32],
    surface: &mut [f32],
) {
    let f = st.p.factors;
    let ns = st.n_surfaces;
    let mut sc = Scratch::default();
    let mut x = Vec::new();
    for (k, (pu, wu)) in shared
        .chunks_exact_mut(f)
        .zip(surface.chunks_exact_mut(ns * f))
        .enumerate()
    {
        let u = first + k;
        if st.only.is_some_and(|o| !o[u]) {
            continue;
        }
        let mut parts = Vec::with_capacity(ns);
        let mut blocks = 1;
        let mut total = 0;
        for s in 0..ns {
            let (items, conf) = st.conf.row(u * ns + s);
            if items.is_empty() {
                continue;
            }
            total += items.len();
            let reg = (st.specific[s] > 0.0)
                .then(|| row_reg(st.p.reg, st.p.reg_exponent, items.len()) / st.specific[s]);
            let block = if reg.is_some() {
                blocks += 1;
                blocks - 1
            } else {
                0
            };
            parts.push(Part {
                a: st.a[s],
                reg,
                block,
                surface: s,
                gram: &st.grams[s],
                items,
                conf,
            });
        }
        if parts.is_empty() {
            pu.iter_mut().for_each(|v| *v = 0.0);
            wu.iter_mut().for_each(|v| *v = 0.0);
            continue;
        }
        let prob = UserProblem {
            f,
            y: st.y,
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
        prob.pcg::<M>(&mut x, st.steps, &mut sc);
        pu.copy_from_slice(&x[..f]);
        wu.iter_mut().for_each(|v| *v = 0.0);
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
}

/// [`solve_users`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn solve_users_avx2(
    st: &UserStep<'_>,
    first: usize,
    shared: &mut [f32],
    surface: &mut [f32],
) {
    solve_users::<crate::linalg::Fused>(st, first, shared, surface)
}

/// [`solve_users`] compiled for AVX-512 and FMA.
///
/// # Safety
/// The CPU must support AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn solve_users_avx512(
    st: &UserStep<'_>,
    first: usize,
    shared: &mut [f32],
    surface: &mut [f32],
) {
    solve_users::<crate::linalg::Fused>(st, first, shared, surface)
}

/// The Gram matrix of the rows of `x` whose bit `s` is set in `mask`.
fn masked_gram(x: &[f32], f: usize, mask: &[u8], s: usize) -> Vec<f32> {
    let rows: Vec<f32> = x
        .chunks_exact(f)
        .zip(mask)
        .filter(|(_, &m)| m & (1 << s) != 0)
        .flat_map(|(r, _)| r.iter().copied())
        .collect();
    gram(&rows, f)
}

/// The user half-sweep: every user's shared and surface vectors given the
/// item factors `y` (rows without data stay zero in `surface`).
#[allow(clippy::too_many_arguments)]
fn user_step(
    isa: Isa,
    data: &SurfaceData,
    conf: &Csr,
    y: &[f32],
    specific: &[f32],
    p: &ValidTrainParams,
    steps: usize,
    only: Option<&[bool]>,
    shared: &mut [f32],
    surface: &mut [f32],
) {
    let f = p.factors;
    let ns = data.n_surfaces;
    let grams: Vec<Vec<f32>> = (0..ns)
        .map(|s| masked_gram(y, f, &data.item_surfaces, s))
        .collect();
    let a = shared_weights(specific);
    let st = UserStep {
        conf,
        y,
        grams: &grams,
        a: &a,
        specific,
        p,
        n_surfaces: ns,
        steps,
        only,
    };
    shared
        .par_chunks_mut(f * USERS_PER_TASK)
        .zip(surface.par_chunks_mut(ns * f * USERS_PER_TASK))
        .enumerate()
        .for_each(|(chunk, (ps, ws))| {
            let first = chunk * USERS_PER_TASK;
            match isa.level() {
                Level::Generic => solve_users::<Plain>(&st, first, ps, ws),
                #[cfg(target_arch = "x86_64")]
                // SAFETY: an `Isa` at this level exists only if run-time
                // detection found its features on this CPU.
                Level::Avx2 => unsafe { solve_users_avx2(&st, first, ps, ws) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                Level::Avx512 => unsafe { solve_users_avx512(&st, first, ps, ws) },
            }
        });
}

/// The item half-sweep: each item's Gram term sums the surface rows of the
/// surfaces it was shown on.
fn item_step(
    isa: Isa,
    data: &SurfaceData,
    conf_t: &Csr,
    surface: &[f32],
    p: &ValidTrainParams,
    items: &mut [f32],
) {
    let f = p.factors;
    let ns = data.n_surfaces;
    // Per surface, the Gram of its rows (zeros for users without data there).
    let per_surface: Vec<Vec<f32>> = (0..ns)
        .map(|s| {
            let rows: Vec<f32> = surface
                .chunks_exact(f)
                .skip(s)
                .step_by(ns)
                .flat_map(|r| r.iter().copied())
                .collect();
            gram(&rows, f)
        })
        .collect();
    // One Gram per mask that occurs.
    let mut grams: Vec<Vec<f32>> = vec![Vec::new(); 1 << ns];
    for &m in &data.item_surfaces {
        let g = &mut grams[m as usize];
        if g.is_empty() {
            *g = vec![0f32; f * f];
            for (s, gs) in per_surface.iter().enumerate() {
                if m & (1 << s) != 0 {
                    g.iter_mut().zip(gs).for_each(|(a, b)| *a += b);
                }
            }
        }
    }
    let grams = Grams::PerRow {
        grams: &grams,
        index: &data.item_surfaces,
    };
    solve_side_grams(isa, items, surface, conf_t, f, p, &grams);
}

/// The confidences `1 + α w` of `data`'s matrix.
fn confidences(data: &SurfaceData, p: &ValidTrainParams) -> Csr {
    let mut conf = data.matrix.clone();
    let alpha = p.alpha;
    conf.map_values(|w| 1.0 + alpha * w);
    conf
}

/// Fills the surface rows of users without data there with `a_s p_u`.
fn fill_missing(data: &SurfaceData, f: usize, a: &[f32], shared: &[f32], surface: &mut [f32]) {
    let ns = data.n_surfaces;
    for (u, (pu, wu)) in shared
        .chunks_exact(f)
        .zip(surface.chunks_exact_mut(ns * f))
        .enumerate()
    {
        for s in 0..ns {
            if data.count(u, s) == 0 {
                for (w, &p) in wu[s * f..(s + 1) * f].iter_mut().zip(pu) {
                    *w = a[s] * p;
                }
            }
        }
    }
}

/// Zeros the surface rows of users without data there (the training state).
fn clear_missing(data: &SurfaceData, f: usize, surface: &mut [f32]) {
    for (r, w) in surface.chunks_exact_mut(f).enumerate() {
        if data.matrix.row_len(r) == 0 {
            w.iter_mut().for_each(|v| *v = 0.0);
        }
    }
}

/// The objective (see the module docs) divided by the number of observed pairs.
fn objective(data: &SurfaceData, conf: &Csr, fac: &SurfaceFactors, p: &ValidTrainParams) -> f64 {
    let f = fac.dim;
    let ns = data.n_surfaces;
    let grams: Vec<Vec<f32>> = (0..ns)
        .map(|s| masked_gram(&fac.items, f, &data.item_surfaces, s))
        .collect();
    let a = shared_weights(&fac.specific);
    let total: f64 = (0..data.users.len())
        .into_par_iter()
        .map(|u| {
            let pu = fac.shared_user(u);
            let mut t = 0f64;
            let mut gx = vec![0f32; f];
            let mut n = 0;
            for s in 0..ns {
                let (items, c) = conf.row(u * ns + s);
                if items.is_empty() {
                    continue;
                }
                n += items.len();
                let w = fac.surface_user(u, s);
                crate::linalg::symv(&grams[s], w, &mut gx);
                t += dot(w, &gx) as f64;
                for (&i, &ci) in items.iter().zip(c) {
                    let yhat = dot(w, fac.item(i as usize)) as f64;
                    t += ci as f64 * (1.0 - yhat) * (1.0 - yhat) - yhat * yhat;
                }
                if fac.specific[s] > 0.0 {
                    let reg =
                        row_reg(p.reg, p.reg_exponent, items.len()) as f64 / fac.specific[s] as f64;
                    let d2: f64 = w
                        .iter()
                        .zip(pu)
                        .map(|(&w, &p)| {
                            let d = (w - a[s] * p) as f64;
                            d * d
                        })
                        .sum();
                    t += reg * d2;
                }
            }
            if n > 0 {
                t += row_reg(p.reg, p.reg_exponent, n) as f64 * dot(pu, pu) as f64;
            }
            t
        })
        .collect::<Vec<f64>>()
        .into_iter()
        .sum();
    let conf_t_counts = crate::eval::item_counts(&data.matrix);
    let item_reg: f64 = (0..data.items.len())
        .map(|i| {
            let q = fac.item(i);
            row_reg(p.reg, p.reg_exponent, conf_t_counts[i] as usize) as f64 * dot(q, q) as f64
        })
        .sum();
    (total + item_reg) / conf.nnz().max(1) as f64
}

/// Trains the per-surface model from random vectors (`p.epochs` sweeps).
pub fn train_surface_ials(
    data: &SurfaceData,
    p: &ValidTrainParams,
    s: &ValidSurfaceParams,
    ctl: &mut TrainControl<'_>,
) -> Result<SurfaceFactors> {
    let f = p.factors;
    let (nu, ni, ns) = (data.users.len(), data.items.len(), data.n_surfaces);
    let shared = init_factors(nu, f, p.init_scale, p.seed, 0);
    let mut surface = vec![0f32; nu * ns * f];
    let a = shared_weights(&s.specific);
    fill_missing(data, f, &a, &shared, &mut surface);
    let start = SurfaceFactors {
        dim: f,
        n_surfaces: ns,
        specific: s.specific.clone(),
        shared,
        surface,
        items: init_factors(ni, f, p.init_scale, p.seed, 1),
        item_bias: vec![0.0; ni],
    };
    train_surface_ials_from(data, p, s, start, ctl)
}

/// Continues training from `start` (a warm start: yesterday's model with
/// rows added for new users and items; its surface rows are read as
/// `w_us`, whatever specific shares it was fitted with) for `p.epochs`
/// sweeps.
pub fn train_surface_ials_from(
    data: &SurfaceData,
    p: &ValidTrainParams,
    s: &ValidSurfaceParams,
    start: SurfaceFactors,
    ctl: &mut TrainControl<'_>,
) -> Result<SurfaceFactors> {
    if data.matrix.nnz() == 0 {
        return Err(Error::Empty);
    }
    let f = p.factors;
    let (nu, ni, ns) = (data.users.len(), data.items.len(), data.n_surfaces);
    if s.specific.len() != ns {
        return Err(Error::LengthMismatch {
            what: "specific shares",
            expected: ns,
            got: s.specific.len(),
        });
    }
    if start.dim != f {
        return Err(Error::DimensionMismatch {
            expected: f,
            got: start.dim,
        });
    }
    check_lengths(&[
        ("starting shared vectors", nu * f, start.shared.len()),
        ("starting surface vectors", nu * ns * f, start.surface.len()),
        ("starting item factors", ni * f, start.items.len()),
    ])?;
    let conf = confidences(data, p);
    let conf_t = conf.transpose();
    let isa = Isa::detect();
    tracing::info!(
        users = nu,
        items = ni,
        surfaces = ns,
        nnz = conf.nnz(),
        factors = f,
        "training per-surface iALS"
    );
    let mut fac = SurfaceFactors {
        specific: s.specific.clone(),
        item_bias: vec![0.0; ni],
        ..start
    };
    clear_missing(data, f, &mut fac.surface);
    let steps = user_steps(p);
    for epoch in 1..=p.epochs {
        let _span = tracing::info_span!("surface_ials_epoch", epoch).entered();
        let t = std::time::Instant::now();
        if ctl.stopped() {
            return Err(Error::Stopped);
        }
        user_step(
            isa,
            data,
            &conf,
            &fac.items,
            &s.specific,
            p,
            steps,
            None,
            &mut fac.shared,
            &mut fac.surface,
        );
        if ctl.stopped() {
            return Err(Error::Stopped);
        }
        item_step(isa, data, &conf_t, &fac.surface, p, &mut fac.items);
        let seconds = t.elapsed().as_secs_f64();
        if let Some(cb) = ctl.on_epoch.as_deref_mut() {
            let report = EpochReport {
                epoch,
                loss: objective(data, &conf, &fac, p),
                seconds,
            };
            tracing::info!(epoch, loss = report.loss, seconds, "epoch done");
            if !cb(&report, &fac.to_factors()) {
                break;
            }
        }
    }
    let a = shared_weights(&s.specific);
    fill_missing(data, f, &a, &fac.shared.clone(), &mut fac.surface);
    Ok(fac)
}

/// CG steps of the joint user problem: its unknowns are up to `1 + surfaces`
/// blocks, so one more than a plain row's.
fn user_steps(p: &ValidTrainParams) -> usize {
    p.cg_steps + 1
}

/// The users' shared and surface vectors with the item factors `items` fixed
/// (a fold-in of every user at once): `steps` preconditioned CG iterations
/// per user from `start` (its `shared` and `surface` rows; zeros without).
/// Rows without data get `a_s p_u`.
pub fn solve_surface_users(
    data: &SurfaceData,
    items: &[f32],
    p: &ValidTrainParams,
    s: &ValidSurfaceParams,
    start: Option<(&[f32], &[f32])>,
    steps: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    solve_some_users(data, items, p, &s.specific, start, steps, None)
}

/// [`solve_surface_users`] for the users `only` marks (the others keep
/// their starting vectors).
fn solve_some_users(
    data: &SurfaceData,
    items: &[f32],
    p: &ValidTrainParams,
    specific: &[f32],
    start: Option<(&[f32], &[f32])>,
    steps: usize,
    only: Option<&[bool]>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let f = p.factors;
    let (nu, ns) = (data.users.len(), data.n_surfaces);
    check_lengths(&[
        ("item factors", data.items.len() * f, items.len()),
        ("specific shares", ns, specific.len()),
    ])?;
    let (mut shared, mut surface) = match start {
        Some((sh, su)) => {
            check_lengths(&[
                ("starting shared vectors", nu * f, sh.len()),
                ("starting surface vectors", nu * ns * f, su.len()),
            ])?;
            (sh.to_vec(), su.to_vec())
        }
        None => (vec![0f32; nu * f], vec![0f32; nu * ns * f]),
    };
    clear_missing(data, f, &mut surface);
    let conf = confidences(data, p);
    user_step(
        Isa::detect(),
        data,
        &conf,
        items,
        specific,
        p,
        steps.max(1),
        only,
        &mut shared,
        &mut surface,
    );
    let a = shared_weights(specific);
    fill_missing(data, f, &a, &shared.clone(), &mut surface);
    Ok((shared, surface))
}

#[cfg(test)]
mod tests;
