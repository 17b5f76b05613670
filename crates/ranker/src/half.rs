//! A half-precision (IEEE f16) copy of the item table for retrieval: half the
//! bytes to stream per query, so a bandwidth-bound scan runs about twice as
//! fast. Candidates found on it are rescored exactly in f32 (see
//! `Ranker::with_retrieval` with `Retrieval::Half`).

use crate::isa::{Isa, Level};
use crate::topk::{batched_top_k, check_batch, Scored, TopK};

/// f32 → f16 bits, rounding to nearest even; overflow to ±inf, NaN kept.
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x007f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        // Subnormal: shift the mantissa with its implicit bit in.
        let m = man | 0x0080_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let mid = 1 << (shift - 1);
        let round = (rem > mid || (rem == mid && half & 1 == 1)) as u32;
        return sign | (half + round) as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let round = (rem > 0x1000 || (rem == 0x1000 && half & 1 == 1)) as u32;
    // A carry out of the mantissa correctly bumps the exponent (to inf at most).
    sign | (half + round) as u16
}

/// f16 bits → f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut m = m;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// The item table in f16, row-major, with the f32 biases.
#[derive(Debug, Clone)]
pub struct HalfTable {
    dim: usize,
    data: Vec<u16>,
    bias: Option<Vec<f32>>,
    isa: Isa,
}

impl HalfTable {
    /// Converts an f32 table.
    pub fn new(dim: usize, factors: &[f32], bias: Option<&[f32]>) -> HalfTable {
        let isa = Isa::detect().with_f16c();
        HalfTable {
            dim,
            data: factors.iter().map(|&x| f32_to_f16(x)).collect(),
            bias: bias.map(<[f32]>::to_vec),
            isa,
        }
    }

    /// Forces the portable kernel (tests).
    pub fn generic(mut self) -> HalfTable {
        self.isa = Isa::GENERIC;
        self
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether the table holds no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn dots(&self, q: &[f32], lo: usize, hi: usize, out: &mut [f32]) {
        match self.isa.level() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an `Isa` at this level exists only if run-time detection
            // found its features on this CPU (the field is private to isa.rs).
            Level::Avx2 => unsafe { dots_f16c(q, &self.data, lo, hi, out) },
            _ => {
                let f = self.dim;
                for i in lo..hi {
                    let row = &self.data[i * f..(i + 1) * f];
                    out[i - lo] = q.iter().zip(row).map(|(a, &h)| a * f16_to_f32(h)).sum();
                }
            }
        }
    }

    fn scan(&self, q: &[f32], lo: usize, hi: usize, exclude: &[u32], top: &mut TopK) {
        assert_eq!(q.len(), self.dim, "query dimension");
        const BLOCK: usize = 256;
        let mut buf = [0f32; BLOCK];
        let mut ex = exclude.partition_point(|&e| (e as usize) < lo);
        let mut floor = top.floor();
        let mut b = lo;
        while b < hi {
            let e = (b + BLOCK).min(hi);
            self.dots(q, b, e, &mut buf);
            for i in b..e {
                if ex < exclude.len() && exclude[ex] as usize == i {
                    ex += 1;
                    continue;
                }
                let mut s = buf[i - b];
                if let Some(bias) = &self.bias {
                    s += bias[i];
                }
                // Most scores lose to the current k-th best: skip them before
                // the (tie-breaking) comparison inside `push`.
                if s < floor {
                    continue;
                }
                top.push(i as u32, s);
                floor = top.floor();
            }
            b = e;
        }
    }

    /// Top-`k[j]` by f16 scores for each query, tiles shared across the batch
    /// and the catalogue split across threads (as `ItemTable::top_k_batch`).
    pub fn top_k_batch(
        &self,
        queries: &[&[f32]],
        k: &[usize],
        exclude: &[&[u32]],
    ) -> Vec<Vec<Scored>> {
        check_batch(self.dim, queries, k, exclude);
        let tile = (16_384 / self.dim.max(1)).max(16);
        batched_top_k(self.len(), tile, k, |lo, hi, tops, _: &mut ()| {
            for (j, q) in queries.iter().enumerate() {
                self.scan(q, lo, hi, exclude[j], &mut tops[j]);
            }
        })
    }
}

/// The four horizontal sums of `a0..a3` as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn reduce4(
    a0: std::arch::x86_64::__m256,
    a1: std::arch::x86_64::__m256,
    a2: std::arch::x86_64::__m256,
    a3: std::arch::x86_64::__m256,
) -> [f32; 4] {
    use std::arch::x86_64::*;
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
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dots_f16c(q: &[f32], data: &[u16], lo: usize, hi: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_round_trips_and_rounds_to_nearest_even() {
        for x in [
            0.0f32,
            -0.0,
            1.0,
            -2.5,
            0.1,
            65504.0,
            6.1035156e-5,
            5.9604645e-8,
            1e-9,
        ] {
            let h = f32_to_f16(x);
            let back = f16_to_f32(h);
            let tol = (x.abs() * 1e-3).max(6e-8);
            assert!((back - x).abs() <= tol, "{x} -> {h:#x} -> {back}");
        }
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(65520.0), 0x7c00, "overflow is infinity");
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        // Every f16 value converts back to itself.
        for h in 0u16..=0xffff {
            let x = f16_to_f32(h);
            if !x.is_nan() {
                assert_eq!(f32_to_f16(x), h, "{h:#x}");
            }
        }
    }

    #[test]
    fn kernels_agree_with_the_portable_scan() {
        for f in [1usize, 7, 8, 13, 64, 67] {
            let n = 301;
            let mut s = f as u64;
            let mut next = || {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f64 / (1u64 << 31) as f64 - 1.0) as f32
            };
            let items: Vec<f32> = (0..n * f).map(|_| next()).collect();
            let q: Vec<f32> = (0..f).map(|_| next()).collect();
            let t = HalfTable::new(f, &items, None);
            let g = t.clone().generic();
            let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
            t.dots(&q, 0, n, &mut a);
            g.dots(&q, 0, n, &mut b);
            for i in 0..n {
                assert!(
                    (a[i] - b[i]).abs() <= 1e-5 * (1.0 + b[i].abs()),
                    "dim {f} item {i}"
                );
            }
        }
    }
}
