//! Every SIMD kernel of the crate, and the token that makes calling one sound.
//!
//! Every `unsafe` call of a `#[target_feature]` kernel in this crate rests on
//! one fact: the token it dispatches on names features this CPU has. [`Isa`]'s
//! field is private to this module, and the only ways to get one are
//! [`Isa::detect`], [`Isa::available`] and [`Isa::GENERIC`] (portable code,
//! valid everywhere), so the fact holds by construction, not by convention.
//! The f16 table's kernel has its own token ([`F16`]: AVX2 and FMA *and*
//! F16C), made the same way; the int8 kernels have theirs (`int8::Kernel`,
//! in `int8/`, with their quantisation).
//!
//! Look here for: the token, the f32 scoring kernels (`portable`, `avx2`,
//! `avx512`, one file per level, their shared shapes in `scan`), the f16 dot
//! kernels, and the one dispatch per operation: [`scan_rows`],
//! [`exact_scores`], [`batch_tile`], [`f16_dots`], and [`multiversion!`] for
//! code that is the same at every level but compiled with each level's
//! features (the ALS loss, the Gram matrix, the conjugate-gradient solves).
//! Not here: what the kernels are for (`topk`, `half`, `int8`, `linalg`).

#[macro_use]
pub(crate) mod scan;

pub(crate) mod f16;
mod portable;

#[cfg(target_arch = "x86_64")]
mod avx2;

#[cfg(target_arch = "x86_64")]
mod avx512;

pub(crate) use scan::{lanes, offer_bits, pack, reaches, score_ref, RowScan, Tile, PANEL};

use crate::top::TopK;

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
}

/// The f16 table's dot-product kernel: F16C conversions with AVX2 and FMA,
/// or the portable one. Like [`Isa`], only detection makes the vector one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct F16(bool);

impl F16 {
    /// The portable kernel.
    pub(crate) const GENERIC: F16 = F16(false);

    /// F16C with AVX2 and FMA where this CPU has all three.
    pub(crate) fn detect() -> F16 {
        #[cfg(target_arch = "x86_64")]
        {
            F16(std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c"))
        }
        #[cfg(not(target_arch = "x86_64"))]
        F16::GENERIC
    }
}

/// Defines `fn NAME(isa: Isa, args…)`: `portable` on [`Isa::GENERIC`], and
/// `vector` compiled with AVX2's features (the first literal) or AVX-512's
/// (the second) on those levels — the same source, so the same arithmetic
/// in wider registers. The one `match` on the token for code that has no
/// hand-written kernel.
macro_rules! multiversion {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;
        portable: $portable:expr,
        vector: $vector:expr,
        features: $avx2:literal, $avx512:literal $(,)?
    ) => {
        $(#[$meta])*
        #[inline]
        $vis fn $name(isa: $crate::simd::Isa, $($arg: $ty),*) $(-> $ret)? {
            /// `vector` compiled for AVX2.
            ///
            /// # Safety
            /// The CPU must have the features enabled here.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = $avx2)]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                ($vector)($($arg),*)
            }

            /// `vector` compiled for AVX-512.
            ///
            /// # Safety
            /// The CPU must have the features enabled here.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = $avx512)]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                ($vector)($($arg),*)
            }

            match isa.level() {
                $crate::simd::Level::Generic => ($portable)($($arg),*),
                #[cfg(target_arch = "x86_64")]
                // SAFETY: an `Isa` at this level exists only if run-time
                // detection found its features on this CPU (the token's
                // field is private to `simd`).
                $crate::simd::Level::Avx2 => unsafe { avx2($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                $crate::simd::Level::Avx512 => unsafe { avx512($($arg),*) },
            }
        }
    };
}
pub(crate) use multiversion;

/// Scans rows `lo..hi` of `s` into `top`: a fast filter, then exact
/// scores for the survivors. (AVX-512 runs the AVX2 scan: one query is
/// bound by memory.)
pub(crate) fn scan_rows(
    isa: Isa,
    s: &RowScan<'_>,
    lo: usize,
    hi: usize,
    exclude: &[u32],
    top: &mut TopK,
) {
    match isa.level() {
        Level::Generic => portable::scan(s, lo, hi, exclude, top),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa` at this level exists only if run-time detection
        // found its features on this CPU (the field is private to this module).
        Level::Avx2 | Level::Avx512 => unsafe { avx2::scan(s, lo, hi, exclude, top) },
    }
}

/// Appends to `out` the exact scores (no bias) of the rows `row(i)` of
/// `items`, each bit-identical to the reference chain: eight interleaved
/// chains at a time where the CPU has FMA.
pub(crate) fn exact_scores<'a>(
    isa: Isa,
    q: &[f32],
    items: &[u32],
    row: impl Fn(u32) -> &'a [f32],
    out: &mut Vec<f32>,
) {
    let start = out.len();
    #[cfg(target_arch = "x86_64")]
    if isa.level() != Level::Generic {
        for g in items.chunks_exact(8) {
            let rows = std::array::from_fn(|r| row(g[r]));
            // SAFETY: an `Isa` above Generic exists only if run-time
            // detection found AVX2 and FMA on this CPU.
            out.extend(unsafe { avx2::score8_fma(q, rows) });
        }
    }
    for &i in &items[out.len() - start..] {
        out.push(match isa.level() {
            Level::Generic => score_ref(q, row(i)),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Level::Avx2 | Level::Avx512 => unsafe { avx2::score_fma(q, row(i)) },
        });
    }
}

/// Every query of a batch against one packed tile.
pub(crate) fn batch_tile(isa: Isa, t: &Tile<'_>, tops: &mut [TopK]) {
    match isa.level() {
        Level::Generic => portable::batch_tile(t, tops),
        // SAFETY: an `Isa` at this level exists only if run-time detection
        // found its features on this CPU (the field is private to this module).
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { avx2::batch_tile(t, tops) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; `Avx512` only if AVX-512F was detected.
        Level::Avx512 => unsafe { avx512::batch_tile(t, tops) },
    }
}

/// `out[i - lo] = q · row i` of the row-major f16 `data`, rows `lo..hi`.
pub(crate) fn f16_dots(
    kernel: F16,
    q: &[f32],
    data: &[u16],
    lo: usize,
    hi: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if kernel.0 {
        // SAFETY: an `F16(true)` exists only if run-time detection found
        // AVX2, FMA and F16C on this CPU (the field is private to this module).
        return unsafe { avx2::dots_f16c(q, data, lo, hi, out) };
    }
    let _ = kernel;
    portable::f16_dots(q, data, lo, hi, out)
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
