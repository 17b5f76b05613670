//! AVX2 and FMA kernels: the f32 batch micro-kernel (6×16) and the
//! single-query filtered scan (see [`super::scan`] for the shapes), and the
//! f16 dot products with F16C.

use std::arch::x86_64::*;

use super::f16::f16_to_f32;
use super::scan::{excluded, floors_at, lanes, offer_bits, reaches, RowScan, Tile, PANEL};
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
/// chain runs at one FMA per FMA latency, and an IVF search rescores a
/// hundred or more rows per query.
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
pub(crate) unsafe fn scan(s: &RowScan<'_>, lo: usize, hi: usize, exclude: &[u32], top: &mut TopK) {
    let RowScan {
        q,
        items,
        bias,
        slack,
    } = *s;
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
        let reach = _mm256_cmp_ps::<_CMP_NLT_UQ>(_mm256_add_ps(fast, slack), _mm256_set1_ps(floor));
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

/// The four horizontal sums of `a0..a3` as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn reduce4(a0: __m256, a1: __m256, a2: __m256, a3: __m256) -> [f32; 4] {
    let s = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    let r = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    let mut t = [0f32; 4];
    // SAFETY: `t` holds exactly four floats.
    unsafe { _mm_storeu_ps(t.as_mut_ptr(), r) };
    t
}

/// f16 rows converted with F16C, four at a time with independent FMA chains.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; rows `lo..hi` of `q.len()` halves
/// must lie inside `data` (asserted), and `out` must hold `hi - lo` floats.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dots_f16c(q: &[f32], data: &[u16], lo: usize, hi: usize, out: &mut [f32]) {
    let f = q.len();
    let chunks = f / 8;
    let n = hi - lo;
    assert!(out.len() >= n && data.len() >= hi * f);
    let qp = q.as_ptr();
    let tail = |row: usize, acc: f32| -> f32 {
        let mut s = acc;
        for d in chunks * 8..f {
            s += q[d] * f16_to_f32(data[row * f + d]);
        }
        s
    };
    // SAFETY (loads below): rows `lo..hi` of `f` halves lie inside `data`
    // (asserted), and `q` holds `chunks * 8 <= f` floats.
    // SAFETY: callers pass pointers to 8 halves inside `data` (see above).
    let load = |p: *const u16| unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) };
    let mut i = 0;
    while i + 4 <= n {
        let row = lo + i;
        // SAFETY: `row < hi`, and rows `lo..hi` lie inside `data`.
        let p = unsafe { data.as_ptr().add(row * f) };
        let (mut a0, mut a1, mut a2, mut a3) = (
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
        );
        for c in 0..chunks {
            // SAFETY: `c * 8 + 8 <= chunks * 8 <= f` floats of `q`.
            let qv = unsafe { _mm256_loadu_ps(qp.add(c * 8)) };
            // SAFETY: rows `row..row + 4` are inside `data` (`i + 4 <= n`);
            // each load reads 8 halves at `c * 8 < f` of one of them.
            unsafe {
                a0 = _mm256_fmadd_ps(load(p.add(c * 8)), qv, a0);
                a1 = _mm256_fmadd_ps(load(p.add(f + c * 8)), qv, a1);
                a2 = _mm256_fmadd_ps(load(p.add(2 * f + c * 8)), qv, a2);
                a3 = _mm256_fmadd_ps(load(p.add(3 * f + c * 8)), qv, a3);
            }
        }
        let t = reduce4(a0, a1, a2, a3);
        for j in 0..4 {
            out[i + j] = tail(row + j, t[j]);
        }
        i += 4;
    }
    while i < n {
        let row = lo + i;
        // SAFETY: `row < hi`, and rows `lo..hi` lie inside `data`.
        let p = unsafe { data.as_ptr().add(row * f) };
        let mut a0 = _mm256_setzero_ps();
        for c in 0..chunks {
            // SAFETY: 8 halves of row `row` and 8 floats of `q` at `c * 8 < f`.
            unsafe {
                a0 = _mm256_fmadd_ps(load(p.add(c * 8)), _mm256_loadu_ps(qp.add(c * 8)), a0);
            }
        }
        out[i] = tail(row, reduce4(a0, a0, a0, a0)[0]);
        i += 1;
    }
}
