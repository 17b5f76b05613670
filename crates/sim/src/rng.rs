//! A small, fast, seedable random number generator and the distributions the
//! simulator needs.
//!
//! Every random process in the simulator draws from its own stream derived from
//! `(seed, purpose, entity, day)` with [`Rng::stream`], so results do not depend on
//! how work is split across threads.

/// SplitMix64 step: used to derive stream seeds and to hash ids (the
/// assignment crate's, so arms and streams share one definition).
pub use reelkit_assign::splitmix64;

/// xoshiro256++ (Blackman & Vigna): 256 bits of state, period 2^256 − 1.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
    spare_normal: Option<f64>,
}

impl Rng {
    /// A generator seeded from one `u64` (expanded with SplitMix64).
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut s = [0u64; 4];
        for slot in &mut s {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            *slot = splitmix64(z);
        }
        if s == [0; 4] {
            s[0] = 1;
        }
        Rng {
            s,
            spare_normal: None,
        }
    }

    /// An independent stream for `(seed, tags...)`: the same tags always give the
    /// same stream, different tags give unrelated streams.
    pub fn stream(seed: u64, tags: &[u64]) -> Rng {
        let mut h = splitmix64(seed ^ 0x005E_ED0F_4EE1_u64);
        for &t in tags {
            h = splitmix64(h ^ splitmix64(t.wrapping_add(0xA076_1D64_78BD_642F)));
        }
        Rng::new(h)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    #[inline]
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `[0, n)` (Lemire's multiply-shift; `n > 0`).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// `true` with probability `p`.
    #[inline]
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Standard normal (Marsaglia's polar method, spare value kept).
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        loop {
            let u = 2.0 * self.f64() - 1.0;
            let v = 2.0 * self.f64() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let m = (-2.0 * s.ln() / s).sqrt();
                self.spare_normal = Some(v * m);
                return u * m;
            }
        }
    }

    /// Log-normal with the given median and log-scale `sigma`.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Poisson with mean `lambda` (inversion for small means, normal approximation
    /// above 30; the simulator's means are small).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda > 30.0 {
            let x = lambda + lambda.sqrt() * self.normal();
            return x.round().max(0.0) as u64;
        }
        let limit = (-lambda).exp();
        let mut k = 0u64;
        let mut p = self.f64();
        while p > limit {
            k += 1;
            p *= self.f64();
        }
        k
    }

    /// Gamma(shape, 1) by Marsaglia & Tsang.
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let u = self.f64().max(f64::MIN_POSITIVE);
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.f64();
            if u < 1.0 - 0.0331 * x * x * x * x || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
                return d * v;
            }
        }
    }

    /// A draw from Dirichlet(alpha) written into `out`.
    pub fn dirichlet(&mut self, alpha: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.extend(alpha.iter().map(|&a| self.gamma(a)));
        let total: f64 = out.iter().sum();
        if total > 0.0 {
            out.iter_mut().for_each(|x| *x /= total);
        } else {
            let n = out.len() as f64;
            out.iter_mut().for_each(|x| *x = 1.0 / n);
        }
    }
}

/// Sampling from a fixed discrete distribution by binary search over the
/// cumulative weights.
#[derive(Debug, Clone)]
pub struct Discrete {
    cumulative: Vec<f64>,
}

impl Discrete {
    /// From non-negative weights with a positive sum.
    pub fn new(weights: impl IntoIterator<Item = f64>) -> Discrete {
        let mut acc = 0.0;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                acc += w.max(0.0);
                acc
            })
            .collect();
        Discrete { cumulative }
    }

    /// Zipf weights `1 / (rank + 1)^exponent` over `n` ranks.
    pub fn zipf(n: usize, exponent: f64) -> Discrete {
        Discrete::new((0..n).map(|r| 1.0 / ((r + 1) as f64).powf(exponent)))
    }

    /// An index drawn with probability proportional to its weight.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let total = *self.cumulative.last().unwrap_or(&0.0);
        let x = rng.f64() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
        (m, v)
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::stream(7, &[1, 2]).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::stream(7, &[1, 2]).next_u64(),
            Rng::stream(7, &[2, 1]).next_u64()
        );
        assert_ne!(
            Rng::stream(7, &[1, 2]).next_u64(),
            Rng::stream(8, &[1, 2]).next_u64()
        );
    }

    #[test]
    fn distributions_have_the_right_moments() {
        let mut rng = Rng::new(1);
        let n = 200_000;
        let u: Vec<f64> = (0..n).map(|_| rng.f64()).collect();
        let (m, v) = mean_var(&u);
        assert!(
            (m - 0.5).abs() < 0.005 && (v - 1.0 / 12.0).abs() < 0.002,
            "{m} {v}"
        );
        let z: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let (m, v) = mean_var(&z);
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.02, "{m} {v}");
        for lambda in [0.3, 2.5, 12.0] {
            let p: Vec<f64> = (0..n).map(|_| rng.poisson(lambda) as f64).collect();
            let (m, v) = mean_var(&p);
            assert!(
                (m / lambda - 1.0).abs() < 0.02 && (v / lambda - 1.0).abs() < 0.04,
                "{lambda}: {m} {v}"
            );
        }
        for shape in [0.5, 3.0] {
            let g: Vec<f64> = (0..n).map(|_| rng.gamma(shape)).collect();
            let (m, v) = mean_var(&g);
            assert!(
                (m / shape - 1.0).abs() < 0.02 && (v / shape - 1.0).abs() < 0.05,
                "{shape}: {m} {v}"
            );
        }
        let below: Vec<f64> = (0..n).map(|_| rng.below(10) as f64).collect();
        assert!(below.iter().all(|&x| (0.0..10.0).contains(&x)));
        let (m, _) = mean_var(&below);
        assert!((m - 4.5).abs() < 0.03, "{m}");
    }

    #[test]
    fn discrete_follows_weights() {
        let mut rng = Rng::new(3);
        let d = Discrete::new([1.0, 0.0, 3.0]);
        let mut counts = [0usize; 3];
        for _ in 0..40_000 {
            counts[d.sample(&mut rng)] += 1;
        }
        assert_eq!(counts[1], 0);
        let share = counts[2] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "{share}");
    }
}
