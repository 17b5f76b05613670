//! The x86 kernels of the int8 table: a block of queries against a range of
//! panels, per instruction set (see the parent module for the scheme).

use super::{Int8Table, Query, Sink};
use crate::simd::{lanes, PANEL};

/// Runs `block(j0, b)` over `n` queries in blocks of `b` queries: `M` while
/// as many remain, then 4, 2 and 1 (a kernel's block scores all its `b`
/// queries, so a short block must not be padded: one query per IVF list is
/// the common case).
#[inline(always)]
fn query_blocks<const M: usize>(n: usize, mut block: impl FnMut(usize, usize)) {
    let mut j = 0;
    while j < n {
        let b = match n - j {
            r if r >= M => M,
            r if r >= 4 => 4,
            r if r >= 2 => 2,
            _ => 1,
        };
        block(j, b);
        j += b;
    }
}

/// Queries `j0..j0+B` of `qs`.
#[inline(always)]
fn block_of<'q, const B: usize>(qs: &[&'q Query], j0: usize) -> [&'q Query; B] {
    std::array::from_fn(|r| qs[j0 + r])
}

/// A SIMD module's entry point: every query of `qs` against items `lo..hi`,
/// `M` queries at a time through the module's `block`, under its features.
macro_rules! int8_scan {
    ($features:literal, $doc:literal) => {
        /// # Safety
        #[doc = $doc]
        #[target_feature(enable = $features)]
        pub(in crate::int8) unsafe fn scan(
            t: &Int8Table,
            qs: &[&Query],
            lo: usize,
            hi: usize,
            floors: &mut [f32],
            sink: &mut impl Sink,
        ) {
            query_blocks::<M>(qs.len(), |j0, b| match b {
                1 => block::<1>(t, qs, j0, lo, hi, floors, sink),
                2 => block::<2>(t, qs, j0, lo, hi, floors, sink),
                4 => block::<4>(t, qs, j0, lo, hi, floors, sink),
                _ => block::<M>(t, qs, j0, lo, hi, floors, sink),
            });
        }
    };
    // A 256-bit module: its `scan` and a `block` that is [`block256`] with
    // the module's dot-product step, compiled under its features.
    ($features:literal, $doc:literal, $dot:ty) => {
        int8_scan!($features, $doc);

        /// Queries `j0..j0+B` against items `lo..hi`.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        fn block<const B: usize>(
            t: &Int8Table,
            qs: &[&Query],
            j0: usize,
            lo: usize,
            hi: usize,
            floors: &mut [f32],
            sink: &mut impl Sink,
        ) {
            // SAFETY: this function runs only where detection found its
            // features, which include the dot-product step's.
            unsafe { block256::<B, $dot>(t, qs, j0, lo, hi, floors, sink) }
        }
    };
}

pub(super) mod avx2 {
    use std::arch::x86_64::*;

    use super::{block256, query_blocks, Dot256, Int8Table, Query, Sink};
    use crate::simd::PANEL;

    /// Queries per micro-tile: 4 × 16 items = eight i32 accumulators.
    const M: usize = 4;

    /// The lanes of `w` (sixteen scores) not below `floor`, among `valid`
    /// (a NaN counts as reaching, as the scalar `!(s < floor)`).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn reaching(w: [__m256; 2], floor: f32, valid: u32) -> u32 {
        let fv = _mm256_set1_ps(floor);
        let c0 = _mm256_cmp_ps::<_CMP_NLT_UQ>(w[0], fv);
        let c1 = _mm256_cmp_ps::<_CMP_NLT_UQ>(w[1], fv);
        let m0 = _mm256_movemask_ps(c0) as u32;
        let m1 = _mm256_movemask_ps(c1) as u32;
        (m0 | (m1 << 8)) & valid
    }

    /// Converts a panel's integer sums for one query into scores (see the
    /// module documentation) and offers the lanes that reach its floor.
    ///
    /// # Safety
    /// The table's scales, sums and biases hold sixteen values from `first`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn finish_panel(
        t: &Int8Table,
        acc: [__m256i; 2],
        q: &Query,
        first: usize,
        valid: u32,
        r: usize,
        floors: &mut [f32],
        sink: &mut impl Sink,
    ) {
        // SAFETY: the caller guarantees sixteen values from `first`.
        let (s0, s1, c0, c1) = unsafe {
            (
                _mm256_loadu_ps(t.scale.as_ptr().add(first)),
                _mm256_loadu_ps(t.scale.as_ptr().add(first + 8)),
                _mm256_loadu_si256(t.offset_sum.as_ptr().add(first) as *const __m256i),
                _mm256_loadu_si256(t.offset_sum.as_ptr().add(first + 8) as *const __m256i),
            )
        };
        let ts = _mm256_set1_ps(q.scale);
        let v0 = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[0], c0));
        let v1 = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[1], c1));
        let mut w0 = _mm256_mul_ps(v0, _mm256_mul_ps(ts, s0));
        let mut w1 = _mm256_mul_ps(v1, _mm256_mul_ps(ts, s1));
        if let Some(b) = &t.bias {
            // SAFETY: the biases are padded to whole panels too.
            unsafe {
                w0 = _mm256_add_ps(w0, _mm256_loadu_ps(b.as_ptr().add(first)));
                w1 = _mm256_add_ps(w1, _mm256_loadu_ps(b.as_ptr().add(first + 8)));
            }
        }
        let bits = reaching([w0, w1], floors[r], valid);
        if bits != 0 {
            let mut buf = [0f32; PANEL];
            // SAFETY: `buf` holds sixteen floats.
            unsafe {
                _mm256_storeu_ps(buf.as_mut_ptr(), w0);
                _mm256_storeu_ps(buf.as_mut_ptr().add(8), w1);
            }
            floors[r] = sink.offer(r, first, bits, &buf);
        }
    }

    int8_scan!("avx2,fma", "The CPU must support AVX2.", MaddPairs);

    /// Plain AVX2's step: `vpmaddubsw` (u8 × i8, adjacent pairs into i16)
    /// widened by `vpmaddwd`; two groups' pair sums are added in i16 first
    /// (never saturating, see the module documentation), so one widening
    /// serves both.
    struct MaddPairs;

    impl Dot256 for MaddPairs {
        #[inline(always)]
        unsafe fn one(acc: &mut [__m256i; 2], a: __m256i, x: [__m256i; 2]) {
            // SAFETY: the caller's guarantee (AVX2).
            unsafe {
                let ones = _mm256_set1_epi16(1);
                for (acc, x) in acc.iter_mut().zip(x) {
                    let pairs = _mm256_maddubs_epi16(a, x);
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(pairs, ones));
                }
            }
        }

        #[inline(always)]
        unsafe fn two(
            acc: &mut [__m256i; 2],
            a: __m256i,
            x: [__m256i; 2],
            b: __m256i,
            y: [__m256i; 2],
        ) {
            // SAFETY: the caller's guarantee (AVX2).
            unsafe {
                let ones = _mm256_set1_epi16(1);
                for ((acc, x), y) in acc.iter_mut().zip(x).zip(y) {
                    let pairs =
                        _mm256_add_epi16(_mm256_maddubs_epi16(a, x), _mm256_maddubs_epi16(b, y));
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(pairs, ones));
                }
            }
        }
    }
}

/// How a 256-bit kernel adds a group's four u8 × i8 products to each of
/// eight items' i32 lanes (a panel's sixteen items in two registers): the
/// one thing the AVX2 and AVX-VNNI kernels do differently.
trait Dot256 {
    /// Adds query codes `a` (a group's four bytes in every lane) times the
    /// panel's codes `x` to `acc`.
    ///
    /// # Safety
    /// The CPU has the implementing kernel's features.
    unsafe fn one(
        acc: &mut [std::arch::x86_64::__m256i; 2],
        a: std::arch::x86_64::__m256i,
        x: [std::arch::x86_64::__m256i; 2],
    );

    /// Two consecutive groups: `a` with `x`, then `b` with `y`.
    ///
    /// # Safety
    /// As [`Dot256::one`].
    #[inline(always)]
    unsafe fn two(
        acc: &mut [std::arch::x86_64::__m256i; 2],
        a: std::arch::x86_64::__m256i,
        x: [std::arch::x86_64::__m256i; 2],
        b: std::arch::x86_64::__m256i,
        y: [std::arch::x86_64::__m256i; 2],
    ) {
        // SAFETY: the caller's guarantee.
        unsafe {
            Self::one(acc, a, x);
            Self::one(acc, b, y);
        }
    }
}

/// The 256-bit kernels' block, generic over their dot-product step: queries
/// `j0..j0+B` against items `lo..hi`, groups taken in pairs (an odd last
/// one alone), each panel's sums finished by [`avx2::finish_panel`].
///
/// # Safety
/// The CPU has AVX2 and FMA and `D`'s features; inlined into a caller
/// compiled with them.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block256<const B: usize, D: Dot256>(
    t: &Int8Table,
    qs: &[&Query],
    j0: usize,
    lo: usize,
    hi: usize,
    floors: &mut [f32],
    sink: &mut impl Sink,
) {
    use std::arch::x86_64::*;
    let g = t.groups;
    let q: [&Query; B] = block_of(qs, j0);
    for p in lo / PANEL..hi.div_ceil(PANEL) {
        let base = t.panel_base(p);
        // SAFETY: the caller's features; groups of panel p lie inside
        // `codes` (asserted), a query holds 4·groups bytes, and the scales,
        // sums and biases cover panel p.
        unsafe {
            let mut acc = [[_mm256_setzero_si256(); 2]; B];
            // Group `gi` of this panel: its two 32-byte halves.
            let x = |gi: usize| {
                let at = t.codes.as_ptr().add(base + gi * PANEL * 4) as *const __m256i;
                [_mm256_loadu_si256(at), _mm256_loadu_si256(at.add(1))]
            };
            // Query `r`'s four codes of group `gi` in every lane.
            let qb = |r: usize, gi: usize| {
                _mm256_set1_epi32((q[r].bytes.as_ptr().add(gi * 4) as *const i32).read_unaligned())
            };
            let mut gi = 0;
            while gi + 2 <= g {
                let (x0, x1) = (x(gi), x(gi + 1));
                for (r, acc) in acc.iter_mut().enumerate() {
                    D::two(acc, qb(r, gi), x0, qb(r, gi + 1), x1);
                }
                gi += 2;
            }
            if gi < g {
                let x0 = x(gi);
                for (r, acc) in acc.iter_mut().enumerate() {
                    D::one(acc, qb(r, gi), x0);
                }
            }
            let first = p * PANEL;
            let valid = lanes(hi - first);
            for r in 0..B {
                avx2::finish_panel(t, acc[r], q[r], first, valid, j0 + r, floors, sink);
            }
        }
    }
}

/// AVX-VNNI: `vpdpbusd` on 256-bit registers multiplies the four u8 query
/// codes of a group by an item's four i8 codes and adds the four products
/// to the item's i32 lane in one instruction (no i16 step, no saturation:
/// the sums are the reference's exact integers).
pub(super) mod vnni256 {
    use std::arch::x86_64::*;

    use super::{block256, query_blocks, Dot256, Int8Table, Query, Sink};

    /// Queries per micro-tile: 6 × 2 accumulators.
    const M: usize = 6;

    int8_scan!(
        "avx2,fma,avxvnni",
        "The CPU must support AVX2 and AVX-VNNI.",
        Dpbusd
    );

    /// One `vpdpbusd` per register.
    struct Dpbusd;

    impl Dot256 for Dpbusd {
        #[inline(always)]
        unsafe fn one(acc: &mut [__m256i; 2], a: __m256i, x: [__m256i; 2]) {
            // SAFETY: the caller's guarantee (AVX2 and AVX-VNNI).
            unsafe {
                for (acc, x) in acc.iter_mut().zip(x) {
                    *acc = _mm256_dpbusd_avx_epi32(*acc, a, x);
                }
            }
        }
    }
}

/// AVX-512 VNNI: a panel's group (sixteen items × four codes) is one 512-bit
/// register, scored against a query's broadcast group by one `vpdpbusd`.
pub(super) mod vnni512 {
    use std::arch::x86_64::*;

    use super::{block_of, query_blocks, Int8Table, Query, Sink};
    use crate::simd::{lanes, PANEL};

    /// Queries per micro-tile: eight accumulators.
    const M: usize = 8;

    int8_scan!(
        "avx512f,avx512bw,avx512vnni",
        "The CPU must support AVX-512 F, BW and VNNI."
    );

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    fn block<const B: usize>(
        t: &Int8Table,
        qs: &[&Query],
        j0: usize,
        lo: usize,
        hi: usize,
        floors: &mut [f32],
        sink: &mut impl Sink,
    ) {
        let g = t.groups;
        let q: [&Query; B] = block_of(qs, j0);
        for p in lo / PANEL..hi.div_ceil(PANEL) {
            let base = t.panel_base(p);
            let mut acc = [_mm512_setzero_si512(); B];
            for gi in 0..g {
                // SAFETY: group gi of panel p lies inside `codes` (asserted).
                let x = unsafe {
                    _mm512_loadu_si512(t.codes.as_ptr().add(base + gi * PANEL * 4) as *const _)
                };
                for (r, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: a query holds 4·groups bytes.
                    let a = unsafe {
                        _mm512_set1_epi32(
                            (q[r].bytes.as_ptr().add(gi * 4) as *const i32).read_unaligned(),
                        )
                    };
                    *acc = _mm512_dpbusd_epi32(*acc, a, x);
                }
            }
            let first = p * PANEL;
            let valid = lanes(hi - first);
            // SAFETY: scales, sums and biases cover panel p (asserted).
            let (s, c) = unsafe {
                (
                    _mm512_loadu_ps(t.scale.as_ptr().add(first)),
                    _mm512_loadu_si512(t.offset_sum.as_ptr().add(first) as *const _),
                )
            };
            // SAFETY: the biases are padded to whole panels too.
            let bias = t
                .bias
                .as_ref()
                .map(|b| unsafe { _mm512_loadu_ps(b.as_ptr().add(first)) });
            for r in 0..B {
                let ts = _mm512_set1_ps(q[r].scale);
                let v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r], c));
                let mut w = _mm512_mul_ps(v, _mm512_mul_ps(ts, s));
                if let Some(b) = bias {
                    w = _mm512_add_ps(w, b);
                }
                let j = j0 + r;
                let hit = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(w, _mm512_set1_ps(floors[j]));
                let bits = hit as u32 & valid;
                if bits != 0 {
                    let mut buf = [0f32; PANEL];
                    // SAFETY: `buf` holds sixteen floats.
                    unsafe { _mm512_storeu_ps(buf.as_mut_ptr(), w) };
                    floors[j] = sink.offer(j, first, bits, &buf);
                }
            }
        }
    }
}
