//! A user's taste per surface, and a video's vector per surface: a shared
//! part and a part of each surface's own, whose weights are learned
//! (hierarchical iALS).
//!
//! **Model.** A user `u` on surface `s` scores item `i` by `w_us · z_is`, with
//!
//! ```text
//! w_us = a_s p_u + δ_us,   a_s = √(1 − φ_s),
//! p_u ~ N(0, I/λ),   δ_us ~ N(0, φ_s I/λ)   (λ = `reg`),
//! z_is = b_s q_i + ε_is,   b_s = √(1 − ψ_s),
//! q_i ~ N(0, I/λ),   ε_is ~ N(0, ψ_s I/λ),
//! ```
//!
//! so that on every surface the priors of `w_us` and `z_is` are `N(0, I/λ)`,
//! the plain iALS priors. `φ_s ∈ [0, 1]` is the share of a user's taste on
//! surface `s` that is that surface's own (the *specific share*), `ψ_s` the
//! same for videos (the *video share*). `φ_s = 0` is one taste everywhere
//! (`w_us = p_u`, the `shared` model); `φ_s = 1` an independent taste per
//! surface; in between, a user's vector on a surface is pulled towards their
//! shared taste, harder the less the surface's tastes differ, and a user new
//! to a surface starts from `a_s p_u`. (The same structure as a simulated
//! world's `surface_taste_divergence`, where a user's taste on a surface is
//! `√(1 − d) base + √d own`.) `ψ = 0` is one vector per video on every
//! surface; `φ = ψ = 1` one iALS model per surface (trained jointly, at the
//! cost of one); a thin surface whose audience has a taste of its own can
//! still borrow the other surfaces' evidence about its videos (`φ` large,
//! `ψ` small).
//!
//! **Objective.** iALS per (user, surface) row: observed pairs have
//! confidence `c = 1 + α w`, every item the surface showed (`item_surfaces`)
//! is a zero with confidence 1 (so a row of reels is not asked to push down
//! long videos reels never shows), plus the priors above as penalties
//! `λ|p_u|² + Σ_s (λ/φ_s)|δ_us|² + λ|q_i|² + Σ_s (λ/ψ_s)|ε_is|²` (with
//! `reg_exponent`, each `λ` scaled by `(1 + n)^ν` of its row's count, as in
//! plain iALS).
//!
//! **Fitting** alternates, as iALS does:
//! - users: per user, one joint problem in `(p_u, δ_u1 … δ_uS)` (the
//!   surfaces where the user has data; `δ` is fixed at 0 where `φ_s = 0`),
//!   solved by Jacobi-preconditioned conjugate gradient warm-started from the
//!   current vectors. A product with its Hessian costs one product with each
//!   surface's `A_s = G_s + Σ (c − 1) z zᵀ`: what a per-surface model pays.
//! - items: the same problem with the sides swapped, per video in `(q_i,
//!   ε_i1 … ε_iS)` over the surfaces it was shown on; with every `ψ_s = 0`,
//!   iALS's exact item step over the rows `w_us`, where each item's Gram
//!   term sums the rows of the surfaces it was shown on.
//!
//! **Choosing `φ` and `ψ`.** [`choose_specific`] refits the users (video
//! vectors fixed) for each value of a grid and scores impressions the model
//! did not train on, per surface, by the gain-weighted concordance of
//! [`heldout_concordance`]; per surface it keeps the most shared value whose
//! paired difference to the best is within one standard error.
//! [`choose_item_specific`] does the same for `ψ`, refitting the videos
//! with the users fixed. Several days' evidence ([`SpecificChoice::evidence`])
//! pools with [`HeldOutScore::pool`] and [`pick_specific`] chooses on it.

use rayon::prelude::*;

use crate::als::{check_lengths, init_factors, row_reg, solve_side_grams, EpochReport, Grams};
use crate::csr::Csr;
use crate::error::{Error, Result};
use crate::factors::Factors;
use crate::ids::IdMap;
use crate::linalg::{dot, gram};
use crate::params::ValidTrainParams;
use crate::simd::Isa;
use crate::TrainControl;

mod choose;
mod solve;
pub use choose::{
    choose_item_specific, choose_specific, heldout_concordance, pick_specific, HeldOut,
    HeldOutScore, SpecificChoice,
};
use solve::{side_step, Other, Shares, SideStep};

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
    /// `ψ_s ∈ [0, 1]` per surface, the videos' specific shares: a video's
    /// vector on surface `s` is `z_is = √(1 − ψ_s) q_i + ε_is`, its own part
    /// `ε_is` shrunk as a user's `δ_us` is. All 0: one vector per video on
    /// every surface (`z_is = q_i`).
    pub item_specific: Vec<f32>,
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
    /// Checks that there is one share per surface for users and for
    /// videos, each in `[0, 1]`.
    pub fn check(self, n_surfaces: usize) -> Result<ValidSurfaceParams> {
        for (field, what, shares) in [
            ("specific", "specific shares", &self.specific),
            ("item_specific", "item specific shares", &self.item_specific),
        ] {
            if shares.len() != n_surfaces {
                return Err(Error::LengthMismatch {
                    what,
                    expected: n_surfaces,
                    got: shares.len(),
                });
            }
            if let Some(v) = shares.iter().find(|v| !(0.0..=1.0).contains(*v)) {
                return Err(Error::InvalidParam {
                    field,
                    allowed: "[0, 1]",
                    got: v.to_string(),
                });
            }
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
    /// The users' specific shares it was fitted with.
    pub specific: Vec<f32>,
    /// The videos' specific shares `ψ_s` it was fitted with (zeros: one
    /// vector per video).
    pub item_specific: Vec<f32>,
    /// `users × dim`: each user's shared taste `p_u`.
    pub shared: Vec<f32>,
    /// `users × n_surfaces × dim`: each user's vector on each surface `w_us`
    /// (`a_s p_u` where the user had no data on the surface).
    pub surface: Vec<f32>,
    /// `items × dim`: each video's shared vector `q_i`.
    pub items: Vec<f32>,
    /// `items × n_surfaces × dim`: each video's vector on each surface
    /// `z_is`, what a user's vector there is scored against (`q_i` itself
    /// with one vector per video). Empty in a starting point means "from
    /// `items`".
    pub surface_items: Vec<f32>,
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

    /// Item `i`'s shared vector.
    pub fn item(&self, i: usize) -> &[f32] {
        &self.items[i * self.dim..(i + 1) * self.dim]
    }

    /// Item `i`'s vector on surface `s`: what `surface_user(u, s)` is
    /// scored against.
    pub fn surface_item(&self, i: usize, s: usize) -> &[f32] {
        let at = (i * self.n_surfaces + s) * self.dim;
        &self.surface_items[at..at + self.dim]
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

/// A side's vectors per surface (`rows × ns × dim`): `surface` itself, or,
/// where it is empty (one vector per row: ψ = 0 everywhere), each row of
/// `shared` (`rows × dim`) repeated on every surface.
pub fn surface_vectors<'a>(
    shared: &[f32],
    surface: &'a [f32],
    dim: usize,
    ns: usize,
) -> std::borrow::Cow<'a, [f32]> {
    if surface.is_empty() {
        std::borrow::Cow::Owned(on_every_surface(shared, dim, ns))
    } else {
        std::borrow::Cow::Borrowed(surface)
    }
}

/// Each row of `x` (`rows × dim`) repeated on `ns` surfaces: the
/// per-surface layout of a side with one vector per row.
pub(crate) fn on_every_surface(x: &[f32], dim: usize, ns: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len() * ns);
    for r in x.chunks_exact(dim.max(1)) {
        for _ in 0..ns {
            out.extend_from_slice(r);
        }
    }
    out
}

/// `a_s = √(1 − φ_s)`, the weight of the shared taste on each surface.
fn shared_weights(specific: &[f32]) -> Vec<f32> {
    specific
        .iter()
        .map(|&f| (1.0 - f).max(0.0).sqrt())
        .collect()
}

/// The Gram matrix of the surface-`s` rows of `x` (`rows × ns × f`), of the
/// rows whose bit `s` is set in `mask` (every row without one).
fn surface_gram(x: &[f32], f: usize, ns: usize, s: usize, mask: Option<&[u8]>) -> Vec<f32> {
    let rows: Vec<f32> = x
        .chunks_exact(ns * f)
        .enumerate()
        .filter(|(r, _)| mask.is_none_or(|m| m[*r] & (1 << s) != 0))
        .flat_map(|(_, r)| r[s * f..(s + 1) * f].iter().copied())
        .collect();
    gram(&rows, f)
}

/// The user half-sweep: every user's shared and surface vectors given the
/// videos' surface vectors `z` (rows without data stay zero in `surface`).
#[allow(clippy::too_many_arguments)]
fn user_step(
    isa: Isa,
    data: &SurfaceData,
    conf: &Csr,
    z: &[f32],
    shares: &[Shares],
    p: &ValidTrainParams,
    steps: usize,
    only: Option<&[bool]>,
    shared: &mut [f32],
    surface: &mut [f32],
) {
    let f = p.factors;
    let ns = data.n_surfaces;
    let grams: Vec<Vec<f32>> = (0..ns)
        .map(|s| surface_gram(z, f, ns, s, Some(&data.item_surfaces)))
        .collect();
    let st = SideStep {
        conf,
        other: Other { x: z, ns, f },
        grams: &grams,
        shares,
        p,
        n_surfaces: ns,
        steps,
        only,
        shown: None,
    };
    side_step(isa, &st, shared, surface);
}

/// The confidences of the training data from both sides; the videos' two
/// layouts are built when first asked for (a fit with one vector per video
/// never needs the per-surface one, choosing the shares never the other).
struct Sides {
    /// Row `u · ns + s`: user `u` on surface `s`, columns items.
    users: Csr,
    n_items: usize,
    n_surfaces: usize,
    items_t: std::sync::OnceLock<Csr>,
    items: std::sync::OnceLock<Csr>,
}

impl Sides {
    fn new(data: &SurfaceData, p: &ValidTrainParams) -> Sides {
        Sides {
            users: confidences(data, p),
            n_items: data.items.len(),
            n_surfaces: data.n_surfaces,
            items_t: std::sync::OnceLock::new(),
            items: std::sync::OnceLock::new(),
        }
    }

    /// Items × user rows (the transpose of `users`).
    fn items_t(&self) -> &Csr {
        self.items_t.get_or_init(|| self.users.transpose())
    }

    /// Row `i · ns + s`: item `i` on surface `s`, columns users.
    fn items(&self) -> &Csr {
        self.items.get_or_init(|| {
            let ns = self.n_surfaces;
            let (mut rows, mut cols, mut vals) = (Vec::new(), Vec::new(), Vec::new());
            for r in 0..self.users.n_rows() {
                let (c, v) = self.users.row(r);
                for (&i, &x) in c.iter().zip(v) {
                    rows.push((i as usize * ns + r % ns) as u32);
                    cols.push((r / ns) as u32);
                    vals.push(x);
                }
            }
            let n_users = self.users.n_rows() / ns;
            Csr::from_triplets(self.n_items * ns, n_users, &rows, &cols, &vals)
        })
    }
}

/// The item half-sweep. With one vector per video (every `ψ_s = 0`) over
/// every video, iALS's exact item step, each item's Gram term summing the
/// user rows of the surfaces it was shown on; else (or for the videos
/// `only` marks, the others kept) the users' joint problem with the sides
/// swapped. `z` is then refreshed from `items` (and the own parts).
#[allow(clippy::too_many_arguments)]
fn item_step(
    isa: Isa,
    data: &SurfaceData,
    sides: &Sides,
    surface: &[f32],
    shares: &[Shares],
    p: &ValidTrainParams,
    steps: usize,
    only: Option<&[bool]>,
    items: &mut [f32],
    z: &mut [f32],
) {
    let f = p.factors;
    let ns = data.n_surfaces;
    // Per surface, the Gram of its rows (zeros for users without data there).
    let per_surface: Vec<Vec<f32>> = (0..ns)
        .map(|s| surface_gram(surface, f, ns, s, None))
        .collect();
    let one_vector = matches!(shares, [one] if one.specific.iter().all(|&x| x <= 0.0));
    if only.is_some() || !one_vector {
        let st = SideStep {
            conf: sides.items(),
            other: Other { x: surface, ns, f },
            grams: &per_surface,
            shares,
            p,
            n_surfaces: ns,
            steps,
            only,
            shown: Some(&data.item_surfaces),
        };
        side_step(isa, &st, items, z);
        return;
    }
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
    solve_side_grams(isa, items, surface, sides.items_t(), f, p, &grams);
    z.copy_from_slice(&on_every_surface(items, f, ns));
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

/// The penalty `Σ_s λ_s/φ_s |x_s − a_s p|²` of one row's own parts, plus
/// `λ |p|²` (rows of `conf` at `r · ns + s`; `shown`: which surfaces have a
/// part, else those with positives).
fn row_penalty(
    conf: &Csr,
    r: usize,
    pu: &[f32],
    wu: &[f32],
    specific: &[f32],
    shown: Option<u8>,
    p: &ValidTrainParams,
) -> f64 {
    let ns = specific.len();
    let f = pu.len();
    let a = shared_weights(specific);
    let mut total = 0;
    let mut t = 0f64;
    let mut any = false;
    for s in 0..ns {
        let n = conf.row_len(r * ns + s);
        let part = shown.map_or(n > 0, |m| m & (1 << s) != 0);
        if !part {
            continue;
        }
        any = true;
        total += n;
        if specific[s] > 0.0 {
            let reg = row_reg(p.reg, p.reg_exponent, n) as f64 / specific[s] as f64;
            let d2: f64 = wu[s * f..(s + 1) * f]
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
    if any {
        t += row_reg(p.reg, p.reg_exponent, total) as f64 * dot(pu, pu) as f64;
    }
    t
}

/// The objective (see the module docs) divided by the number of observed pairs.
fn objective(data: &SurfaceData, sides: &Sides, fac: &SurfaceFactors, p: &ValidTrainParams) -> f64 {
    let f = fac.dim;
    let ns = data.n_surfaces;
    let conf = &sides.users;
    let grams: Vec<Vec<f32>> = (0..ns)
        .map(|s| surface_gram(&fac.surface_items, f, ns, s, Some(&data.item_surfaces)))
        .collect();
    let total: f64 = (0..data.users.len())
        .into_par_iter()
        .map(|u| {
            let mut t = 0f64;
            let mut gx = vec![0f32; f];
            for (s, g) in grams.iter().enumerate() {
                let (items, c) = conf.row(u * ns + s);
                if items.is_empty() {
                    continue;
                }
                let w = fac.surface_user(u, s);
                crate::linalg::symv(g, w, &mut gx);
                t += dot(w, &gx) as f64;
                for (&i, &ci) in items.iter().zip(c) {
                    let yhat = dot(w, fac.surface_item(i as usize, s)) as f64;
                    t += ci as f64 * (1.0 - yhat) * (1.0 - yhat) - yhat * yhat;
                }
            }
            let wu = &fac.surface[u * ns * f..(u + 1) * ns * f];
            t + row_penalty(conf, u, fac.shared_user(u), wu, &fac.specific, None, p)
        })
        .collect::<Vec<f64>>()
        .into_iter()
        .sum();
    let item_reg: f64 = if fac.item_specific.iter().any(|&x| x > 0.0) {
        (0..data.items.len())
            .map(|i| {
                let zi = &fac.surface_items[i * ns * f..(i + 1) * ns * f];
                let m = Some(data.item_surfaces[i]);
                row_penalty(sides.items(), i, fac.item(i), zi, &fac.item_specific, m, p)
            })
            .sum()
    } else {
        let counts = crate::eval::item_counts(&data.matrix);
        (0..data.items.len())
            .map(|i| {
                let q = fac.item(i);
                row_reg(p.reg, p.reg_exponent, counts[i] as usize) as f64 * dot(q, q) as f64
            })
            .sum()
    };
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
        item_specific: s.item_specific.clone(),
        shared,
        surface,
        items: init_factors(ni, f, p.init_scale, p.seed, 1),
        surface_items: Vec::new(),
        item_bias: vec![0.0; ni],
    };
    train_surface_ials_from(data, p, s, start, ctl)
}

/// Continues training from `start` (a warm start: yesterday's model with
/// rows added for new users and items; its surface rows are read as
/// `w_us` and `z_is`, whatever shares it was fitted with; without surface
/// rows for the items, `z_is = q_i`) for `p.epochs` sweeps.
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
    if !start.surface_items.is_empty() {
        check_lengths(&[(
            "starting item surface vectors",
            ni * ns * f,
            start.surface_items.len(),
        )])?;
    }
    let sides = Sides::new(data, p);
    let isa = Isa::detect();
    let item_specific = s.item_specific.clone();
    tracing::info!(
        users = nu,
        items = ni,
        surfaces = ns,
        nnz = sides.users.nnz(),
        factors = f,
        item_specific = ?s.item_specific,
        "training per-surface iALS"
    );
    let surface_items = if start.surface_items.is_empty() {
        on_every_surface(&start.items, f, ns)
    } else {
        start.surface_items
    };
    let mut fac = SurfaceFactors {
        specific: s.specific.clone(),
        item_specific: item_specific.clone(),
        item_bias: vec![0.0; ni],
        surface_items,
        ..start
    };
    clear_missing(data, f, &mut fac.surface);
    let steps = user_steps(p);
    let user_shares = [Shares::new(&s.specific)];
    let item_shares = [Shares::new(&item_specific)];
    for epoch in 1..=p.epochs {
        let _span = tracing::info_span!("surface_ials_epoch", epoch).entered();
        let t = std::time::Instant::now();
        if ctl.stopped() {
            return Err(Error::Stopped);
        }
        user_step(
            isa,
            data,
            &sides.users,
            &fac.surface_items,
            &user_shares,
            p,
            steps,
            None,
            &mut fac.shared,
            &mut fac.surface,
        );
        if ctl.stopped() {
            return Err(Error::Stopped);
        }
        item_step(
            isa,
            data,
            &sides,
            &fac.surface,
            &item_shares,
            p,
            steps,
            None,
            &mut fac.items,
            &mut fac.surface_items,
        );
        let seconds = t.elapsed().as_secs_f64();
        if let Some(cb) = ctl.on_epoch.as_deref_mut() {
            let report = EpochReport {
                epoch,
                loss: objective(data, &sides, &fac, p),
                seconds,
            };
            tracing::info!(epoch, loss = report.loss, seconds, "epoch done");
            if !cb(&report, &fac.to_factors()) {
                break;
            }
        }
    }
    fill_missing(
        data,
        f,
        &user_shares[0].a,
        &fac.shared.clone(),
        &mut fac.surface,
    );
    Ok(fac)
}

/// CG steps of a joint row problem: its unknowns are up to `1 + surfaces`
/// blocks, so one more than a plain row's.
fn user_steps(p: &ValidTrainParams) -> usize {
    p.cg_steps + 1
}

/// The users' shared and surface vectors with the videos' surface vectors
/// `items` (`items × surfaces × dim`, see [`SurfaceFactors::surface_items`])
/// fixed (a fold-in of every user at once): `steps` preconditioned CG
/// iterations per user from `start` (its `shared` and `surface` rows; zeros
/// without). Rows without data get `a_s p_u`.
pub fn solve_surface_users(
    data: &SurfaceData,
    items: &[f32],
    p: &ValidTrainParams,
    s: &ValidSurfaceParams,
    start: Option<(&[f32], &[f32])>,
    steps: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut solved = solve_some_users(
        data,
        items,
        p,
        std::slice::from_ref(&s.specific),
        start,
        steps,
        None,
    )?;
    Ok(solved.remove(0))
}

/// [`solve_surface_users`] for each set of shares of `specifics`, for the
/// users `only` marks (the others keep their starting vectors): one pass
/// over the users solves every set (a user's rows and videos read once).
fn solve_some_users(
    data: &SurfaceData,
    items: &[f32],
    p: &ValidTrainParams,
    specifics: &[Vec<f32>],
    start: Option<(&[f32], &[f32])>,
    steps: usize,
    only: Option<&[bool]>,
) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
    let f = p.factors;
    let (nu, ns) = (data.users.len(), data.n_surfaces);
    check_lengths(&[(
        "item surface vectors",
        data.items.len() * ns * f,
        items.len(),
    )])?;
    for specific in specifics {
        check_lengths(&[("specific shares", ns, specific.len())])?;
    }
    let (shared, mut surface) = match start {
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
    let k = specifics.len();
    let (mut shared, mut surface) = (repeat_rows(&shared, f, k), repeat_rows(&surface, ns * f, k));
    let shares: Vec<Shares> = specifics.iter().map(|s| Shares::new(s)).collect();
    let conf = confidences(data, p);
    user_step(
        Isa::detect(),
        data,
        &conf,
        items,
        &shares,
        p,
        steps.max(1),
        only,
        &mut shared,
        &mut surface,
    );
    Ok(shares
        .iter()
        .enumerate()
        .map(|(j, share)| {
            let shared = slot_rows(&shared, f, k, j);
            let mut surface = slot_rows(&surface, ns * f, k, j);
            fill_missing(data, f, &share.a, &shared, &mut surface);
            (shared, surface)
        })
        .collect())
}

/// Each row of `x` (rows of `width`) `k` times in a row: the layout of a
/// half-sweep over `k` share sets, every set starting from `x`.
fn repeat_rows(x: &[f32], width: usize, k: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len() * k);
    for row in x.chunks_exact(width) {
        for _ in 0..k {
            out.extend_from_slice(row);
        }
    }
    out
}

/// Slot `j` of each row of `x` laid out by [`repeat_rows`].
fn slot_rows(x: &[f32], width: usize, k: usize, j: usize) -> Vec<f32> {
    x.chunks_exact(k * width)
        .flat_map(|row| &row[j * width..(j + 1) * width])
        .copied()
        .collect()
}

#[cfg(test)]
mod tests;
