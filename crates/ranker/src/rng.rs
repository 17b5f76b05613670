//! A tiny seeded generator (SplitMix64) for initialisation and sampling: the
//! ranker keeps no dependency on the simulator.

/// SplitMix64: 64-bit state, good enough for initial factors and SGD sampling.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    /// A stream for `(seed, a, b)`.
    pub(crate) fn new(seed: u64, a: u64, b: u64) -> SplitMix {
        let mut s = SplitMix(seed ^ 0xD1B5_4A32_D192_ED03);
        let x = s.next_u64() ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut s = SplitMix(x);
        let y = s.next_u64() ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        SplitMix(y)
    }

    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`.
    #[inline]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[-0.5, 0.5)`.
    #[inline]
    pub(crate) fn centred(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

/// Uniform floats in [-1, 1) from a seeded LCG: test data for the kernels.
#[cfg(test)]
pub(crate) fn test_floats(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64 - 1.0) as f32
        })
        .collect()
}
