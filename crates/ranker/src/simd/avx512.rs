//! AVX-512F: the batch micro-kernel with sixteen items per register (one
//! packed panel) and twelve queries per tile. Lane `l` of a register is the
//! same FMA chain as in the AVX2 kernel and the reference, so scores are
//! bit-identical. (The single-query scan is bound by memory and keeps the
//! AVX2 kernel.)

use std::arch::x86_64::*;

use super::scan::{floors_at, lanes, offer_bits, Tile, PANEL};
use crate::top::TopK;

/// Scores of `R` queries against one packed panel.
///
/// # Safety
/// `16 f` floats must be readable at `panel` and `f` at each query.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn micro<const R: usize>(qs: &[*const f32; R], panel: *const f32, f: usize) -> [__m512; R] {
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
