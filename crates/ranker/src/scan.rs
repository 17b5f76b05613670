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
//!   row-major items are filtered with a fast kernel that sums eight dimension
//!   lanes at a time (a different rounding) together with `Σ|q_d·x_d|`, which
//!   bounds how far its score can be from the exact one; only the items whose
//!   bound reaches the current top-K threshold are scored exactly and offered.
//!   The result is the exact top-K of the exact scores.

use crate::topk::TopK;

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

    use super::{excluded, reaches, PANEL};
    use crate::topk::TopK;

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

    /// Fast scores of rows `lo..hi` (row-major, `f = q.len()` floats each)
    /// into `s`, with `Σ|q_d|·|x_d|` into `p`: four rows at a time, eight
    /// dimension lanes per register, lanes reduced pairwise, tail dimensions
    /// added in order. `qa` is `|q|`.
    ///
    /// # Safety
    /// Rows `lo..hi` must be inside `items`; `s` and `p` hold `hi - lo`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dots_with_bound(
        q: &[f32],
        qa: &[f32],
        items: &[f32],
        lo: usize,
        hi: usize,
        s: &mut [f32],
        p: &mut [f32],
    ) {
        let f = q.len();
        let chunks = f / 8;
        let n = hi - lo;
        debug_assert!(s.len() >= n && p.len() >= n && items.len() >= hi * f);
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
        let (qp, qap) = (q.as_ptr(), qa.as_ptr());
        let tail = |row: usize, s0: f32, p0: f32| -> (f32, f32) {
            let (mut s, mut p) = (s0, p0);
            for d in chunks * 8..f {
                let x = items[row * f + d];
                s = q[d].mul_add(x, s);
                p = qa[d].mul_add(x.abs(), p);
            }
            (s, p)
        };
        let mut i = 0;
        while i < n {
            let rows = (n - i).min(4);
            // Rows past the end of a short block repeat the last row.
            let row = |j: usize| lo + i + j.min(rows - 1);
            // SAFETY: every row(j) < hi is inside `items`.
            let ptr = |j: usize| unsafe { items.as_ptr().add(row(j) * f) };
            let (p0, p1, p2, p3) = (ptr(0), ptr(1), ptr(2), ptr(3));
            if PREFETCH_ROWS > 0 && lo + i + 4 + PREFETCH_ROWS <= items.len() / f.max(1) {
                // SAFETY: the prefetched rows are inside `items`; prefetching
                // has no architectural effect.
                let ahead = unsafe { items.as_ptr().add((lo + i + PREFETCH_ROWS) * f) };
                for line in (0..4 * f).step_by(16) {
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.add(line) as *const i8) };
                }
            }
            let z = _mm256_setzero_ps();
            let (mut s0, mut s1, mut s2, mut s3) = (z, z, z, z);
            let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
            for c in 0..chunks {
                // SAFETY: dimensions c·8..c·8+8 ≤ f of rows inside `items`.
                unsafe {
                    let qv = _mm256_loadu_ps(qp.add(c * 8));
                    let qav = _mm256_loadu_ps(qap.add(c * 8));
                    let x0 = _mm256_loadu_ps(p0.add(c * 8));
                    let x1 = _mm256_loadu_ps(p1.add(c * 8));
                    let x2 = _mm256_loadu_ps(p2.add(c * 8));
                    let x3 = _mm256_loadu_ps(p3.add(c * 8));
                    s0 = _mm256_fmadd_ps(x0, qv, s0);
                    s1 = _mm256_fmadd_ps(x1, qv, s1);
                    s2 = _mm256_fmadd_ps(x2, qv, s2);
                    s3 = _mm256_fmadd_ps(x3, qv, s3);
                    a0 = _mm256_fmadd_ps(_mm256_and_ps(x0, abs), qav, a0);
                    a1 = _mm256_fmadd_ps(_mm256_and_ps(x1, abs), qav, a1);
                    a2 = _mm256_fmadd_ps(_mm256_and_ps(x2, abs), qav, a2);
                    a3 = _mm256_fmadd_ps(_mm256_and_ps(x3, abs), qav, a3);
                }
            }
            let sv = reduce4(s0, s1, s2, s3);
            let av = reduce4(a0, a1, a2, a3);
            for j in 0..rows {
                let (sj, pj) = tail(row(j), sv[j], av[j]);
                s[i + j] = sj;
                p[i + j] = pj;
            }
            i += rows;
        }
    }

    const PREFETCH_ROWS: usize = 64;

    /// The four horizontal sums of `a0..a3`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn reduce4(a0: __m256, a1: __m256, a2: __m256, a3: __m256) -> [f32; 4] {
        let s = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        let r = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
        let mut t = [0f32; 4];
        // SAFETY: `t` holds exactly four floats.
        unsafe { _mm_storeu_ps(t.as_mut_ptr(), r) };
        t
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
        let m0 = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NLT_UQ>(s[0], fv)) as u32;
        let m1 = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NLT_UQ>(s[1], fv)) as u32;
        let mut bits = (m0 | (m1 << 8)) & valid;
        if bits == 0 {
            return floor;
        }
        let mut buf = [0f32; PANEL];
        // SAFETY: `buf` holds sixteen floats.
        unsafe {
            _mm256_storeu_ps(buf.as_mut_ptr(), s[0]);
            _mm256_storeu_ps(buf.as_mut_ptr().add(8), s[1]);
        }
        while bits != 0 {
            let l = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if !excluded(exclude, base + l) {
                top.push((base + l) as u32, buf[l]);
            }
        }
        top.floor()
    }

    /// Adds the biases at `b` (sixteen floats) to the scores.
    ///
    /// # Safety
    /// Sixteen floats must be readable at `b`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn add_bias(s: [__m256; 2], b: *const f32) -> [__m256; 2] {
        // SAFETY: the caller guarantees sixteen readable floats.
        unsafe {
            [
                _mm256_add_ps(s[0], _mm256_loadu_ps(b)),
                _mm256_add_ps(s[1], _mm256_loadu_ps(b.add(8))),
            ]
        }
    }

    /// Scans row-major items `lo..hi` against one query into `top`: fast
    /// scores filter, exact scores decide (see the module documentation).
    ///
    /// Why the filter is safe: the exact chain and the fast sum are two
    /// floating-point evaluations of the same real dot product, each within
    /// `γ_f·Σ|q_d·x_d|` of it (γ_f = f·u/(1 − f·u), u = 2⁻²⁴, for any order
    /// of summation), so they differ by at most `2γ_f·Σ|q_d·x_d|`; the computed
    /// `Σ|q_d|·|x_d|` is within a factor `1 ± γ_f` of the true one, and adding
    /// a bias rounds each side once more. The slack used, `4f·u·P + 4u·|s| +
    /// f·2⁻¹²⁶` (the last term for underflow), exceeds all of that, so an item
    /// whose fast score plus slack is below the threshold cannot enter.
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
    ) {
        const BLOCK: usize = 256;
        let f = q.len();
        assert!(items.len() >= hi * f, "item table shorter than the scan");
        if let Some(b) = bias {
            assert!(b.len() >= hi, "bias shorter than the scan");
        }
        let qa: Vec<f32> = q.iter().map(|x| x.abs()).collect();
        let u = f32::EPSILON / 2.0;
        let rel = 4.0 * f as f32 * u;
        let tiny = f as f32 * f32::MIN_POSITIVE;
        let (mut s, mut p) = ([0f32; BLOCK], [0f32; BLOCK]);
        let mut floor = top.floor();
        let mut b = lo;
        while b < hi {
            let e = (b + BLOCK).min(hi);
            // SAFETY: rows b..e ≤ hi are inside `items` (asserted above).
            unsafe { dots_with_bound(q, &qa, items, b, e, &mut s, &mut p) };
            for i in b..e {
                let mut fast = s[i - b];
                if let Some(bias) = bias {
                    fast += bias[i];
                }
                let slack = rel * p[i - b] + 4.0 * u * fast.abs() + tiny;
                // A NaN (score or slack) is not below the floor: scored exactly.
                if fast + slack < floor {
                    continue;
                }
                let mut exact = score_fma(q, &items[i * f..(i + 1) * f]);
                if let Some(bias) = bias {
                    exact += bias[i];
                }
                if reaches(exact, floor) && !excluded(exclude, i) {
                    top.push(i as u32, exact);
                    floor = top.floor();
                }
            }
            b = e;
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

    /// Queries `j0..j0+M` against a packed tile of `count` items starting at
    /// item `base`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    fn block<const M: usize>(
        queries: &[&[f32]],
        exclude: &[&[u32]],
        tops: &mut [TopK],
        j0: usize,
        packed: &[f32],
        pbias: Option<&[f32]>,
        base: usize,
        count: usize,
        f: usize,
    ) {
        let qs: [*const f32; M] = std::array::from_fn(|m| {
            assert_eq!(queries[j0 + m].len(), f, "query dimension");
            queries[j0 + m].as_ptr()
        });
        let mut floors: [f32; M] = std::array::from_fn(|m| tops[j0 + m].floor());
        let panels = count.div_ceil(PANEL);
        assert!(packed.len() >= panels * PANEL * f, "packed tile too short");
        for p in 0..panels {
            // SAFETY: panel p is within `packed` (asserted), queries hold f floats.
            let acc = unsafe { micro::<M>(&qs, packed.as_ptr().add(p * PANEL * f), f) };
            let left = count - p * PANEL;
            let valid = if left >= PANEL {
                0xFFFF
            } else {
                (1u32 << left) - 1
            };
            for m in 0..M {
                let mut s = acc[m];
                if let Some(b) = pbias {
                    // SAFETY: the packed biases hold 16 per panel.
                    s = unsafe { add_bias(s, b.as_ptr().add(p * PANEL)) };
                }
                floors[m] = offer(
                    s,
                    floors[m],
                    valid,
                    base + p * PANEL,
                    exclude[j0 + m],
                    &mut tops[j0 + m],
                );
            }
        }
    }

    /// Every query of the batch against one packed tile, six at a time.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn batch_tile(
        queries: &[&[f32]],
        exclude: &[&[u32]],
        tops: &mut [TopK],
        packed: &[f32],
        pbias: Option<&[f32]>,
        base: usize,
        count: usize,
        f: usize,
    ) {
        let n = queries.len();
        let mut j = 0;
        while j + 6 <= n {
            block::<6>(queries, exclude, tops, j, packed, pbias, base, count, f);
            j += 6;
        }
        match n - j {
            0 => {}
            1 => block::<1>(queries, exclude, tops, j, packed, pbias, base, count, f),
            2 => block::<2>(queries, exclude, tops, j, packed, pbias, base, count, f),
            3 => block::<3>(queries, exclude, tops, j, packed, pbias, base, count, f),
            4 => block::<4>(queries, exclude, tops, j, packed, pbias, base, count, f),
            _ => block::<5>(queries, exclude, tops, j, packed, pbias, base, count, f),
        }
    }
}

/// Scans items `lo..hi` (row-major) against one query with the reference
/// arithmetic.
pub(crate) fn scan_ref(
    q: &[f32],
    items: &[f32],
    bias: Option<&[f32]>,
    lo: usize,
    hi: usize,
    exclude: &[u32],
    top: &mut TopK,
) {
    let f = q.len();
    let mut floor = top.floor();
    for i in lo..hi {
        let mut s = score_ref(q, &items[i * f..(i + 1) * f]);
        if let Some(b) = bias {
            s += b[i];
        }
        if reaches(s, floor) && !excluded(exclude, i) {
            top.push(i as u32, s);
            floor = top.floor();
        }
    }
}
