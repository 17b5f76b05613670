//! The instruction set a kernel runs on, as a token only run-time detection
//! can make.
//!
//! Every `unsafe` call of a `#[target_feature]` kernel in this crate rests on
//! one fact: the [`Isa`] it dispatches on names features this CPU has. `Isa`'s
//! field is private to this module, and the only ways to get one are
//! [`Isa::detect`], [`Isa::available`] and [`Isa::GENERIC`] (portable code,
//! valid everywhere), so the fact holds by construction, not by convention.

/// An instruction set this CPU was found to run (or the portable one).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Isa(Level);

/// What kernels dispatch on: read with [`Isa::level`]. Matching on a `Level`
/// cannot make an [`Isa`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// Portable code (SSE2 on x86-64, NEON on aarch64 by default).
    Generic,
    /// x86-64 with AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// x86-64 with AVX-512F as well: batch retrieval scores sixteen items
    /// per register; everything else runs the AVX2 code.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl std::fmt::Debug for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Isa {
    /// The portable kernels: valid on every CPU, and the reference the
    /// vector kernels are tested against.
    pub const GENERIC: Isa = Isa(Level::Generic);

    /// The best instruction set this CPU runs.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return Isa(Level::Avx512);
                }
                return Isa(Level::Avx2);
            }
        }
        Isa::GENERIC
    }

    /// Every instruction set this CPU runs, portable first (tests run each).
    pub fn available() -> Vec<Isa> {
        let best = Isa::detect().0;
        let all = [
            Level::Generic,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2,
            #[cfg(target_arch = "x86_64")]
            Level::Avx512,
        ];
        let best_rank = all.iter().position(|&l| l == best).unwrap_or(0);
        all.into_iter().take(best_rank + 1).map(Isa).collect()
    }

    /// Its name (`Generic`, `Avx2`, `Avx512`), as benchmarks report it.
    pub fn name(self) -> &'static str {
        match self.0 {
            Level::Generic => "Generic",
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => "Avx2",
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => "Avx512",
        }
    }

    /// What to dispatch on.
    pub(crate) fn level(self) -> Level {
        self.0
    }

    /// The f16 table's kernels: AVX2 and FMA with F16C where `self` has AVX2
    /// and this CPU has F16C, the portable ones otherwise.
    pub(crate) fn with_f16c(self) -> Isa {
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 | Level::Avx512 if std::arch::is_x86_feature_detected!("f16c") => {
                Isa(Level::Avx2)
            }
            _ => Isa::GENERIC,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_starts_portable_and_ends_at_the_detected_best() {
        let all = Isa::available();
        assert_eq!(all[0], Isa::GENERIC);
        assert_eq!(all.last().copied(), Some(Isa::detect()));
        assert_eq!(format!("{:?}", Isa::GENERIC), "Generic");
    }
}
