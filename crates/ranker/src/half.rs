//! A half-precision (IEEE f16) copy of the item table for retrieval: half the
//! bytes to stream per query, so a bandwidth-bound scan runs about twice as
//! fast. Candidates found on it are rescored exactly in f32 (see
//! `Ranker::with_retrieval` with `Retrieval::Half`).

use crate::simd::f16::f32_to_f16;
use crate::simd::{self, F16};
use crate::topk::{batched_top_k, check_batch, Scored, TopK};

/// The item table in f16, row-major, with the f32 biases.
#[derive(Debug, Clone)]
pub struct HalfTable {
    dim: usize,
    data: Vec<u16>,
    bias: Option<Vec<f32>>,
    kernel: F16,
}

impl HalfTable {
    /// Converts an f32 table.
    pub fn new(dim: usize, factors: &[f32], bias: Option<&[f32]>) -> HalfTable {
        HalfTable {
            dim,
            data: factors.iter().map(|&x| f32_to_f16(x)).collect(),
            bias: bias.map(<[f32]>::to_vec),
            kernel: F16::detect(),
        }
    }

    /// Forces the portable kernel (tests).
    pub fn generic(mut self) -> HalfTable {
        self.kernel = F16::GENERIC;
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

    fn scan(&self, q: &[f32], lo: usize, hi: usize, exclude: &[u32], top: &mut TopK) {
        assert_eq!(q.len(), self.dim, "query dimension");
        const BLOCK: usize = 256;
        let mut buf = [0f32; BLOCK];
        let mut ex = exclude.partition_point(|&e| (e as usize) < lo);
        let mut floor = top.floor();
        let mut b = lo;
        while b < hi {
            let e = (b + BLOCK).min(hi);
            simd::f16_dots(self.kernel, q, &self.data, b, e, &mut buf);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::f16::f16_to_f32;

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
            crate::simd::f16_dots(t.kernel, &q, &t.data, 0, n, &mut a);
            crate::simd::f16_dots(g.kernel, &q, &g.data, 0, n, &mut b);
            for i in 0..n {
                assert!(
                    (a[i] - b[i]).abs() <= 1e-5 * (1.0 + b[i].abs()),
                    "dim {f} item {i}"
                );
            }
        }
    }
}
