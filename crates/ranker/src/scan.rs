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

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::{excluded, floors_at, lanes, offer_bits, reaches, Tile, PANEL};
    use crate::top::TopK;

    /// Score of one row with scalar FMAs in dimension order (bit-identical to a
    /// lane of the vector kernels).
    ///
    /// # Safety
    /// The CPU must support FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn score_fma(q: &[f32], x: &[f32]) -> f32 {
        debug_assert_eq!(q.len(), x.len());
        let mut s = 0f32;
        for (a, b) in q.iter().zip(x) {
            s = a.mul_add(*b, s);
        }
        s
    }

    /// Scores of 8 rows at once, each the same dimension-order FMA chain as
    /// [`score_fma`] (so bit-identical to it), the 8 chains interleaved so
    /// that their FMAs overlap instead of waiting on one another: a lone
    /// chain runs at one FMA per FMA latency (measured: 24% of an IVF
    /// search's time in rescoring 164 rows per query).
    ///
    /// # Safety
    /// The CPU must support FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn score8_fma(q: &[f32], rows: [&[f32]; 8]) -> [f32; 8] {
        let mut s = [0f32; 8];
        for r in rows {
            debug_assert_eq!(r.len(), q.len());
        }
        for (d, &a) in q.iter().enumerate() {
            for (s, r) in s.iter_mut().zip(rows) {
                *s = a.mul_add(r[d], *s);
            }
        }
        s
    }

    /// Offers the lanes of `s` (items `base..base+16`, only those in `valid`)
    /// that are not below `floor` to `top`, skipping excluded items; returns
    /// the new floor.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn offer(
        s: [__m256; 2],
        floor: f32,
        valid: u32,
        base: usize,
        exclude: &[u32],
        top: &mut TopK,
    ) -> f32 {
        let fv = _mm256_set1_ps(floor);
        // Not-less-than (unordered true): a NaN is offered, as in a scalar
        // `if s < floor { skip }`.
        let c0 = _mm256_cmp_ps::<_CMP_NLT_UQ>(s[0], fv);
        let c1 = _mm256_cmp_ps::<_CMP_NLT_UQ>(s[1], fv);
        // Most panels have no lane that reaches the floor: one test.
        let any = _mm256_or_ps(c0, c1);
        if _mm256_testz_ps(any, any) == 1 {
            return floor;
        }
        let m0 = _mm256_movemask_ps(c0) as u32;
        let m1 = _mm256_movemask_ps(c1) as u32;
        let bits = (m0 | (m1 << 8)) & valid;
        if bits == 0 {
            return floor;
        }
        let mut buf = [0f32; PANEL];
        // SAFETY: `buf` holds sixteen floats.
        unsafe {
            _mm256_storeu_ps(buf.as_mut_ptr(), s[0]);
            _mm256_storeu_ps(buf.as_mut_ptr().add(8), s[1]);
        }
        offer_bits(bits, &buf, base, exclude, top)
    }

    /// Adds the biases at `bias` (sixteen floats), when present, to the
    /// scores and offers them (see [`offer`]); returns the new floor.
    ///
    /// # Safety
    /// Sixteen floats must be readable at `bias` when it is `Some`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn offer_panel(
        mut s: [__m256; 2],
        bias: Option<*const f32>,
        floor: f32,
        valid: u32,
        base: usize,
        exclude: &[u32],
        top: &mut TopK,
    ) -> f32 {
        if let Some(b) = bias {
            // SAFETY: the caller guarantees sixteen readable floats.
            unsafe {
                s[0] = _mm256_add_ps(s[0], _mm256_loadu_ps(b));
                s[1] = _mm256_add_ps(s[1], _mm256_loadu_ps(b.add(8)));
            }
        }
        offer(s, floor, valid, base, exclude, top)
    }

    /// The eight horizontal sums of `a[0..8]`, in that order.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn reduce8(a: &[__m256; 8]) -> __m256 {
        let h01 = _mm256_hadd_ps(a[0], a[1]);
        let h23 = _mm256_hadd_ps(a[2], a[3]);
        let h45 = _mm256_hadd_ps(a[4], a[5]);
        let h67 = _mm256_hadd_ps(a[6], a[7]);
        // Low halves hold dimensions 0..4 of rows 0..4 (4..8), high halves
        // dimensions 4..8.
        let h0123 = _mm256_hadd_ps(h01, h23);
        let h4567 = _mm256_hadd_ps(h45, h67);
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(h0123, h4567),
            _mm256_permute2f128_ps::<0x31>(h0123, h4567),
        )
    }

    /// Scans row-major items `lo..hi` against one query into `top`: fast
    /// scores filter, exact scores decide (see the module documentation).
    ///
    /// Rows go eight at a time: one accumulator per row sums eight dimension
    /// lanes (tail dimensions through a masked load), the eight sums are
    /// reduced into one register, the bias added, and `slack` added before
    /// one comparison with the current floor; only the rows that reach it are
    /// scored exactly ([`score_fma`]) and offered. Per row that is one load
    /// and one FMA per eight dimensions, so the scan is bound by memory.
    ///
    /// `slack` must bound `|fast − exact|` for every row of the scan, each
    /// side with its bias added ([`crate::ItemTable`] derives it from
    /// the query's norm and the table's largest norm and bias); then an item
    /// whose `fast + slack` is below the floor cannot enter. An infinite or
    /// NaN slack scores every row exactly.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn scan(
        q: &[f32],
        items: &[f32],
        bias: Option<&[f32]>,
        lo: usize,
        hi: usize,
        exclude: &[u32],
        top: &mut TopK,
        slack: f32,
    ) {
        let f = q.len();
        assert!(items.len() >= hi * f, "item table shorter than the scan");
        if let Some(b) = bias {
            assert!(b.len() >= hi, "bias shorter than the scan");
        }
        let full = f / 8;
        let rem = f % 8;
        // The query zero-padded to whole registers; the tail dimensions of a
        // row are read with a masked load (masked lanes read as zero and
        // never fault), and 0·0 adds nothing.
        let mut qp = vec![0f32; f.div_ceil(8) * 8];
        qp[..f].copy_from_slice(q);
        let mask = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(rem as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        let slack = _mm256_set1_ps(slack);
        let mut floor = top.floor();
        let mut i = lo;
        while i < hi {
            let rows = (hi - i).min(8);
            // Rows past the end of a short block repeat the last row.
            // SAFETY: every row i + min(j, rows − 1) < hi is inside `items`.
            let p: [*const f32; 8] =
                std::array::from_fn(|j| unsafe { items.as_ptr().add((i + j.min(rows - 1)) * f) });
            let mut acc = [_mm256_setzero_ps(); 8];
            for c in 0..full {
                // SAFETY: dimensions c·8..c·8+8 ≤ f of rows inside `items`.
                unsafe {
                    let qv = _mm256_loadu_ps(qp.as_ptr().add(c * 8));
                    for r in 0..8 {
                        acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(p[r].add(c * 8)), qv, acc[r]);
                    }
                }
            }
            if rem > 0 {
                // SAFETY: the unmasked lanes are dimensions full·8..f of rows
                // inside `items`; `qp` holds whole registers.
                unsafe {
                    let qv = _mm256_loadu_ps(qp.as_ptr().add(full * 8));
                    for r in 0..8 {
                        let x = _mm256_maskload_ps(p[r].add(full * 8), mask);
                        acc[r] = _mm256_fmadd_ps(x, qv, acc[r]);
                    }
                }
            }
            let mut fast = reduce8(&acc);
            if let Some(b) = bias {
                let mut pad = [0f32; 8];
                pad[..rows].copy_from_slice(&b[i..i + rows]);
                // SAFETY: `pad` holds eight floats.
                fast = _mm256_add_ps(fast, unsafe { _mm256_loadu_ps(pad.as_ptr()) });
            }
            // Not-less-than, unordered true: a NaN score or slack is scored.
            let reach =
                _mm256_cmp_ps::<_CMP_NLT_UQ>(_mm256_add_ps(fast, slack), _mm256_set1_ps(floor));
            let mut bits = _mm256_movemask_ps(reach) as u32 & ((1u32 << rows) - 1);
            while bits != 0 {
                let j = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let r = i + j;
                let mut exact = score_fma(q, &items[r * f..(r + 1) * f]);
                if let Some(b) = bias {
                    exact += b[r];
                }
                if reaches(exact, floor) && !excluded(exclude, r) {
                    top.push(r as u32, exact);
                    floor = top.floor();
                }
            }
            i += rows;
        }
    }

    /// The 6×16 (or M×16) micro-kernel: scores of `M` queries against one
    /// packed panel.
    ///
    /// # Safety
    /// `16 f` floats must be readable at `panel` and `f` at each query.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn micro<const M: usize>(
        qs: &[*const f32; M],
        panel: *const f32,
        f: usize,
    ) -> [[__m256; 2]; M] {
        let mut acc = [[_mm256_setzero_ps(); 2]; M];
        for d in 0..f {
            // SAFETY: d < f, within the panel and the queries.
            unsafe {
                let x0 = _mm256_loadu_ps(panel.add(d * PANEL));
                let x1 = _mm256_loadu_ps(panel.add(d * PANEL + 8));
                for m in 0..M {
                    let b = _mm256_broadcast_ss(&*qs[m].add(d));
                    acc[m][0] = _mm256_fmadd_ps(b, x0, acc[m][0]);
                    acc[m][1] = _mm256_fmadd_ps(b, x1, acc[m][1]);
                }
            }
        }
        acc
    }

    simd_batch!("avx2,fma", 6, [1 2 3 4 5]);
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

/// Portable kernels: plain Rust shaped so that the compiler vectorises them
/// for whatever the target has (NEON on aarch64, SSE2 on baseline x86-64),
/// with the same definitions as the AVX2 ones: the batch micro-kernel puts
/// items in lanes, each lane one `mul_add` chain in dimension order (the
/// reference score); the single-query scan filters with a fast sum and the
/// same slack, then scores survivors with [`score_ref`].
pub(crate) mod portable {
    use super::{excluded, floors_at, lanes, offer_bits, reaches, score_ref, Tile, PANEL};
    use crate::top::TopK;

    /// A fast score: eight partial sums of plain products (any order is
    /// covered by the slack), reduced pairwise, tail dimensions in order.
    fn fast_dot(q: &[f32], x: &[f32]) -> f32 {
        let mut acc = [0f32; 8];
        let (qc, xc) = (q.chunks_exact(8), x.chunks_exact(8));
        let (qt, xt) = (qc.remainder(), xc.remainder());
        for (a, b) in qc.zip(xc) {
            for l in 0..8 {
                acc[l] += a[l] * b[l];
            }
        }
        let mut s =
            ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for (a, b) in qt.iter().zip(xt) {
            s += a * b;
        }
        s
    }

    /// Scans row-major items `lo..hi` against one query into `top`: rows
    /// whose fast score plus `slack` is below the floor are skipped, the rest
    /// scored exactly (see [`super::avx2::scan`] for what `slack` must bound).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn scan(
        q: &[f32],
        items: &[f32],
        bias: Option<&[f32]>,
        lo: usize,
        hi: usize,
        exclude: &[u32],
        top: &mut TopK,
        slack: f32,
    ) {
        let f = q.len();
        let mut floor = top.floor();
        for i in lo..hi {
            let row = &items[i * f..(i + 1) * f];
            let b = bias.map_or(0.0, |b| b[i]);
            let mut fast = fast_dot(q, row);
            if bias.is_some() {
                fast += b;
            }
            // A NaN (score or slack) is not below the floor: scored exactly.
            if fast + slack < floor {
                continue;
            }
            let mut exact = score_ref(q, row);
            if bias.is_some() {
                exact += b;
            }
            if reaches(exact, floor) && !excluded(exclude, i) {
                top.push(i as u32, exact);
                floor = top.floor();
            }
        }
    }

    /// Scores of `R` queries against one packed panel: lane `l` of row `m`
    /// is the reference chain of query `m` and item `l`.
    #[inline]
    fn micro<const R: usize>(qs: &[&[f32]; R], panel: &[f32], f: usize) -> [[f32; PANEL]; R] {
        let mut acc = [[0f32; PANEL]; R];
        for d in 0..f {
            let x: &[f32; PANEL] = panel[d * PANEL..(d + 1) * PANEL]
                .try_into()
                .expect("a panel row holds PANEL floats");
            for m in 0..R {
                let b = qs[m][d];
                for l in 0..PANEL {
                    acc[m][l] = b.mul_add(x[l], acc[m][l]);
                }
            }
        }
        acc
    }

    /// Queries `j0..j0+R` against a packed tile of `count` items from `base`.
    fn block<const R: usize>(t: &Tile<'_>, tops: &mut [TopK], j0: usize) {
        let Tile {
            exclude,
            packed,
            pbias,
            base,
            count,
            f,
            ..
        } = *t;
        let qs = t.queries_at::<R>(j0);
        let mut floors = floors_at::<R>(tops, j0);
        for p in 0..t.panels() {
            let acc = micro::<R>(&qs, &packed[p * PANEL * f..(p + 1) * PANEL * f], f);
            let valid = lanes(count - p * PANEL);
            for m in 0..R {
                let mut s = acc[m];
                if let Some(b) = pbias {
                    for l in 0..PANEL {
                        s[l] += b[p * PANEL + l];
                    }
                }
                let mut bits = 0u32;
                for (l, &x) in s.iter().enumerate() {
                    bits |= u32::from(reaches(x, floors[m])) << l;
                }
                bits &= valid;
                if bits != 0 {
                    floors[m] = offer_bits(
                        bits,
                        &s,
                        base + p * PANEL,
                        exclude[j0 + m],
                        &mut tops[j0 + m],
                    );
                }
            }
        }
    }

    /// Every query of the batch against one packed tile, four at a time.
    pub(crate) fn batch_tile(t: &Tile<'_>, tops: &mut [TopK]) {
        query_blocks!(
            block,
            t.queries.len(),
            4,
            [1 2 3],
            j,
            (t, tops, j)
        );
    }
}

/// AVX-512F: the batch micro-kernel with sixteen items per register (one
/// packed panel) and twelve queries per tile. Lane `l` of a register is the
/// same FMA chain as in the AVX2 kernel and the reference, so scores are
/// bit-identical. (The single-query scan is bound by memory and keeps the
/// AVX2 kernel.)
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    use super::{floors_at, lanes, offer_bits, Tile, PANEL};
    use crate::top::TopK;

    /// Scores of `R` queries against one packed panel.
    ///
    /// # Safety
    /// `16 f` floats must be readable at `panel` and `f` at each query.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn micro<const R: usize>(
        qs: &[*const f32; R],
        panel: *const f32,
        f: usize,
    ) -> [__m512; R] {
        let mut acc = [_mm512_setzero_ps(); R];
        for d in 0..f {
            // SAFETY: d < f, within the panel and the queries.
            unsafe {
                let x = _mm512_loadu_ps(panel.add(d * PANEL));
                for m in 0..R {
                    acc[m] = _mm512_fmadd_ps(_mm512_set1_ps(*qs[m].add(d)), x, acc[m]);
                }
            }
        }
        acc
    }

    /// Adds the biases at `bias` (sixteen floats), when present, to the
    /// scores and offers the lanes in `valid` that are not below `floor`;
    /// returns the new floor.
    ///
    /// # Safety
    /// Sixteen floats must be readable at `bias` when it is `Some`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn offer_panel(
        mut s: __m512,
        bias: Option<*const f32>,
        floor: f32,
        valid: u32,
        base: usize,
        exclude: &[u32],
        top: &mut TopK,
    ) -> f32 {
        if let Some(b) = bias {
            // SAFETY: the caller guarantees sixteen readable floats.
            s = _mm512_add_ps(s, unsafe { _mm512_loadu_ps(b) });
        }
        // Not-less-than, unordered true: a NaN is offered.
        let bits = u32::from(_mm512_cmp_ps_mask::<_CMP_NLT_UQ>(s, _mm512_set1_ps(floor))) & valid;
        if bits == 0 {
            return floor;
        }
        let mut buf = [0f32; PANEL];
        // SAFETY: `buf` holds sixteen floats.
        unsafe { _mm512_storeu_ps(buf.as_mut_ptr(), s) };
        offer_bits(bits, &buf, base, exclude, top)
    }

    simd_batch!("avx512f,avx2,fma", 12, [1 2 3 4 5 6 7 8 9 10 11]);
}
