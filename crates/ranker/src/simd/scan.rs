//! Scoring kernels for exact retrieval.
//!
//! Every kernel defines a score the same way: one fused multiply-add per
//! dimension, in dimension order, starting from zero (`s = q[d]·x[d] + s`,
//! rounded once per step), then `+ bias` when the table has one. The scalar
//! reference ([`score_ref`]) is exactly that chain, and a SIMD kernel that
//! puts items in its vector lanes performs exactly that chain in each lane:
//! scores are bit-identical whether an item is scored alone, in a batch
//! micro-tile, by the scalar reference or by any vector width, on any number
//! of threads.
//!
//! Two AVX2 shapes:
//! - a batch: items packed into panels of sixteen (dimension-major inside a
//!   panel) and scored against six queries at a time by a 6×16 register-
//!   blocked micro-kernel (twelve accumulators), sgemm's shape with the top-K
//!   threshold test fused in, so most scores never leave the registers;
//! - one query, where the catalogue is read once and memory is the limit:
//!   row-major items, eight rows at a time, are filtered with a fast kernel
//!   that sums eight dimension lanes per row (a different rounding), plus a
//!   slack that bounds how far a fast score can be from the exact one for
//!   any item of the table (from the query's norm and the table's largest
//!   item norm and bias); only the rows whose fast score plus slack reaches
//!   the current top-K threshold are scored exactly and offered. The result
//!   is the exact top-K of the exact scores.
//!
//! `avx512` has the batch shape with sixteen items per register and twelve
//! queries per micro-tile (the single query, bound by memory, keeps AVX2);
//! `portable` has both shapes in plain Rust written to vectorise (NEON on
//! aarch64), used where neither AVX2 nor AVX-512 is available.

use crate::top::TopK;

/// One query's scan of row-major items: `q` against rows of `items` (with
/// their `bias`), through a fast filter `slack` wide (see
/// [`super::avx2::scan`] for what `slack` must bound).
#[derive(Clone, Copy)]
pub(crate) struct RowScan<'a> {
    pub q: &'a [f32],
    pub items: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub slack: f32,
}

/// The reference score: `q·x` as a chain of fused multiply-adds in dimension
/// order. (Fast where the target has FMA, as on aarch64 or inside an x86-64
/// `fma` function; elsewhere `mul_add` is a correct but slower library call.)
#[inline]
pub(crate) fn score_ref(q: &[f32], x: &[f32]) -> f32 {
    debug_assert_eq!(q.len(), x.len());
    let mut s = 0f32;
    for (a, b) in q.iter().zip(x) {
        s = a.mul_add(*b, s);
    }
    s
}

/// Items per packed panel (two AVX2 registers, one AVX-512 register).
pub(crate) const PANEL: usize = 16;

/// Whether a score is not below the floor; a NaN is not below it (as the
/// vector kernels' unordered not-less-than comparison), so it is offered and
/// `TopK` orders it.
#[inline]
#[allow(clippy::neg_cmp_op_on_partial_ord)]
pub(crate) fn reaches(s: f32, floor: f32) -> bool {
    !(s < floor)
}

/// Whether item `i` is in the sorted exclusion list.
#[inline]
pub(crate) fn excluded(exclude: &[u32], i: usize) -> bool {
    !exclude.is_empty() && exclude.binary_search(&(i as u32)).is_ok()
}

/// The mask of a panel's lanes that hold items when `left` items remain.
#[inline]
pub(crate) fn lanes(left: usize) -> u32 {
    if left >= PANEL {
        0xFFFF
    } else {
        (1u32 << left) - 1
    }
}

/// Runs `block::<M>` over a batch's `n` queries `M` at a time, then
/// `block::<r>` on the `r` left (an arm for each listed `r`); `args` is the
/// call's argument list, in which `j` (named by the caller) is the offset of
/// the first query.
macro_rules! query_blocks {
    ($block:ident, $n:expr, $m:literal, [$($r:literal)*], $j:ident, $args:tt) => {{
        let n = $n;
        let mut $j = 0;
        while $j + $m <= n {
            $block::<$m> $args;
            $j += $m;
        }
        match n - $j {
            $($r => $block::<$r> $args,)*
            _ => {}
        }
    }};
}

/// A SIMD module's batch driver: `block::<M>` scores queries `j0..j0+M`
/// against every panel of a tile with the module's `micro` kernel and hands
/// each query's accumulators to the module's `offer_panel` (bias, floor test,
/// offer); `batch_tile` runs it over the batch `$m` queries at a time. Each
/// SIMD module supplies
/// `unsafe fn micro<const M: usize>(&[*const f32; M], *const f32, usize) -> [Acc; M]`
/// and `unsafe fn offer_panel(Acc, Option<*const f32>, f32, u32, usize, &[u32], &mut TopK) -> f32`
/// under the same target features.
macro_rules! simd_batch {
    ($features:literal, $m:literal, [$($r:literal)*]) => {
        /// Queries `j0..j0+M` against a packed tile of `count` items from
        /// item `base`.
        #[target_feature(enable = $features)]
        fn block<const M: usize>(t: &Tile<'_>, tops: &mut [TopK], j0: usize) {
            let qs = t.queries_at::<M>(j0).map(<[f32]>::as_ptr);
            let mut floors = floors_at::<M>(tops, j0);
            let (packed, f) = (t.packed, t.f);
            for p in 0..t.panels() {
                // SAFETY: panel p is within `packed` (asserted by `panels`),
                // the queries hold f floats (asserted by `queries_at`).
                let acc = unsafe { micro::<M>(&qs, packed.as_ptr().add(p * PANEL * f), f) };
                let valid = lanes(t.count - p * PANEL);
                // SAFETY: the packed biases hold sixteen per panel (asserted).
                let bias = t.pbias.map(|b| unsafe { b.as_ptr().add(p * PANEL) });
                for m in 0..M {
                    // SAFETY: `bias`, when present, points at sixteen floats.
                    floors[m] = unsafe {
                        offer_panel(
                            acc[m],
                            bias,
                            floors[m],
                            valid,
                            t.base + p * PANEL,
                            t.exclude[j0 + m],
                            &mut tops[j0 + m],
                        )
                    };
                }
            }
        }

        /// Every query of the batch against one packed tile.
        ///
        /// # Safety
        /// The CPU must support the module's target features.
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn batch_tile(t: &Tile<'_>, tops: &mut [TopK]) {
            query_blocks!(block, t.queries.len(), $m, [$($r)*], j, (t, tops, j));
        }
    };
}

/// A packed tile of items (`count` from item `base`, packed by [`pack`], `f`
/// floats each, with their packed biases) and the batch of queries, with
/// their sorted exclusions, that a batch kernel scores against it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tile<'a> {
    pub queries: &'a [&'a [f32]],
    pub exclude: &'a [&'a [u32]],
    pub packed: &'a [f32],
    pub pbias: Option<&'a [f32]>,
    pub base: usize,
    pub count: usize,
    pub f: usize,
}

impl Tile<'_> {
    /// The tile's panels, after checking that the packed items (and biases)
    /// hold them all.
    pub(crate) fn panels(&self) -> usize {
        let panels = self.count.div_ceil(PANEL);
        assert!(
            self.packed.len() >= panels * PANEL * self.f,
            "packed tile too short"
        );
        if let Some(b) = self.pbias {
            assert!(b.len() >= panels * PANEL, "packed biases too short");
        }
        panels
    }

    /// Queries `j0..j0+R`, each checked to hold `f` floats.
    pub(crate) fn queries_at<const R: usize>(&self, j0: usize) -> [&[f32]; R] {
        std::array::from_fn(|m| {
            let q = self.queries[j0 + m];
            assert_eq!(q.len(), self.f, "query dimension");
            q
        })
    }
}

/// The current floors of top-Ks `j0..j0+R`.
pub(crate) fn floors_at<const R: usize>(tops: &[TopK], j0: usize) -> [f32; R] {
    std::array::from_fn(|m| tops[j0 + m].floor())
}

/// Packs items `lo..hi` of a row-major table (`f` floats each) into panels of
/// [`PANEL`] items, dimension-major within a panel (`out[p·f·16 + d·16 + l]`
/// is dimension `d` of item `lo + 16p + l`), the last panel zero-padded; and
/// their biases likewise (`bias_out[16p + l]`).
pub(crate) fn pack(
    items: &[f32],
    bias: Option<&[f32]>,
    f: usize,
    lo: usize,
    hi: usize,
    out: &mut Vec<f32>,
    bias_out: &mut Vec<f32>,
) {
    let panels = (hi - lo).div_ceil(PANEL);
    out.clear();
    out.resize(panels * PANEL * f, 0.0);
    bias_out.clear();
    bias_out.resize(panels * PANEL, 0.0);
    for p in 0..panels {
        let dst = &mut out[p * PANEL * f..(p + 1) * PANEL * f];
        for l in 0..PANEL.min(hi - lo - p * PANEL) {
            let i = lo + p * PANEL + l;
            let row = &items[i * f..(i + 1) * f];
            for (d, &x) in row.iter().enumerate() {
                dst[d * PANEL + l] = x;
            }
            if let Some(b) = bias {
                bias_out[p * PANEL + l] = b[i];
            }
        }
    }
}

/// Offers items `base + l` for the set bits `l` of `bits` (their scores in
/// `buf`) to `top`, skipping excluded ones; returns the new floor.
#[inline]
pub(crate) fn offer_bits(
    mut bits: u32,
    buf: &[f32; PANEL],
    base: usize,
    exclude: &[u32],
    top: &mut TopK,
) -> f32 {
    while bits != 0 {
        let l = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        if !excluded(exclude, base + l) {
            top.push((base + l) as u32, buf[l]);
        }
    }
    top.floor()
}
