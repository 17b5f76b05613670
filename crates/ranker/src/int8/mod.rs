//! An 8-bit quantized copy of the item table for candidate retrieval: a
//! quarter of the bytes of f32, scored with integer multiply-adds; candidates
//! are rescored exactly in f32 by the caller (see [`Int8Table::search`]).
//!
//! Scheme (symmetric, per vector):
//! - item `i`: scale `s_i = max_d |x_id| / 63`, codes `c_id = round(x_id / s_i)`
//!   in `[-63, 63]`;
//! - query: scale `t = max_d |q_d| / 63`, codes `e_d = round(q_d / t)` in
//!   `[-63, 63]`, stored offset by 64 as unsigned bytes (`1..=127`);
//! - approximate score `(Σ_d (e_d + 64)·c_id − 64·Σ_d c_id) · (t·s_i) + b_i`,
//!   the integer part exact, then three f32 roundings in that order, the same
//!   in every kernel (so results do not depend on the kernel or thread count).
//!
//! Items are stored in panels of sixteen, dimensions in groups of four: a
//! panel's group holds 16 × 4 bytes, item by item, so one 256-bit register
//! holds eight items' four codes and one 512-bit register all sixteen. Where
//! the CPU has an 8-bit dot product (AVX-512 VNNI or AVX-VNNI), `vpdpbusd`
//! adds a group's four u8 × i8 products into each item's i32 lane in one
//! instruction. Plain AVX2 has none, so `vpmaddubsw` multiplies u8 × i8 and
//! adds adjacent pairs into i16, saturating; the code ranges are chosen so that
//! the pair sums of two groups can be added in i16 without saturating
//! (`2 · 2 · 127 · 63 = 32004 < 2¹⁵`) before one `vpmaddwd` widens them to
//! i32: three multiply instructions per eight dimensions of eight items. The
//! kernel is chosen at run time ([`Kernel`]); all of them compute the same
//! integers and the same float steps, so the same scores bit for bit.

use rayon::prelude::*;

use crate::simd::{lanes, offer_bits, reaches, PANEL};
use crate::simd::{Isa, Level};
use crate::top::TopK;
use crate::topk::{batched_top_k, check_batch, ItemTable, Scored};

/// Largest item code.
const ITEM_MAX: f32 = 63.0;
/// Largest query code.
const QUERY_MAX: f32 = 63.0;
/// Query codes are stored as `e + OFFSET`, in `1..=2·QUERY_MAX + 1`.
const OFFSET: i32 = QUERY_MAX as i32 + 1;
// Two groups' pair sums, four products in all, fit in an i16.
const _: () = assert!(4 * (2 * OFFSET - 1) * ITEM_MAX as i32 <= i16::MAX as i32);

/// The item table in 8-bit codes with per-item scales.
#[derive(Debug, Clone)]
pub struct Int8Table {
    dim: usize,
    n: usize,
    /// Groups of four dimensions (the last zero-padded).
    groups: usize,
    /// `panels × groups × 16 × 4` codes.
    codes: Vec<i8>,
    /// Per item (padded to whole panels with zeros): scale, `OFFSET·Σ_d c_id`
    /// (the query offset's share of the integer sum) and bias.
    scale: Vec<f32>,
    offset_sum: Vec<i32>,
    bias: Option<Vec<f32>>,
    kernel: Kernel,
}

/// The integer dot-product kernel a table scans with: a token only this
/// module can make (its field is private), and it makes one other than the
/// portable kernel only where run-time detection found its features
/// ([`Kernel::best`], [`Kernel::available`]) — what every `unsafe` call of a
/// kernel below rests on. Code elsewhere in the crate can hold and pass
/// kernels, not conjure one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kernel(Kind);

/// Which kernel (private: see [`Kernel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Portable Rust (the reference).
    Generic,
    /// AVX2: `vpmaddubsw` pairs widened by `vpmaddwd`.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-VNNI (256-bit `vpdpbusd`): one instruction per four dimensions
    /// of eight items.
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    /// AVX-512 VNNI: one `vpdpbusd` per four dimensions of sixteen items.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl Kernel {
    /// Every kernel this CPU runs, portable first, best last.
    pub(crate) fn available() -> Vec<Kernel> {
        #[allow(unused_mut)]
        let mut all = vec![Kernel(Kind::Generic)];
        #[cfg(target_arch = "x86_64")]
        {
            if Isa::detect().level() != Level::Generic {
                all.push(Kernel(Kind::Avx2));
                if std::arch::is_x86_feature_detected!("avxvnni") {
                    all.push(Kernel(Kind::AvxVnni));
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
                {
                    all.push(Kernel(Kind::Avx512Vnni));
                }
            }
        }
        all
    }

    /// The fastest kernel this CPU runs.
    pub(crate) fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| Kernel::available().pop().unwrap_or(Kernel(Kind::Generic)))
    }

    /// Its name, as benchmarks report it.
    pub(crate) fn name(self) -> &'static str {
        match self.0 {
            Kind::Generic => "generic",
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Kind::AvxVnni => "avx-vnni",
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512Vnni => "avx512-vnni",
        }
    }
}

/// A quantized query: codes offset by `OFFSET`, and the scale.
pub(crate) struct Query {
    bytes: Vec<u8>,
    scale: f32,
}

/// Where a scan's candidates go: for query `r` of the scan, the panel's first
/// item, the lanes (bit `l` for item `first + l`) whose score is not below
/// `r`'s floor, and the panel's sixteen scores; returns `r`'s new floor.
pub(crate) trait Sink {
    fn offer(&mut self, r: usize, first: usize, bits: u32, scores: &[f32; PANEL]) -> f32;
}

/// The flat table's sink: item `i` is candidate `i`, exclusions skipped.
struct Flat<'a, 'b> {
    tops: &'a mut [TopK],
    exclude: &'a [&'b [u32]],
}

impl Sink for Flat<'_, '_> {
    #[inline]
    fn offer(&mut self, r: usize, first: usize, bits: u32, scores: &[f32; PANEL]) -> f32 {
        offer_bits(bits, scores, first, self.exclude[r], &mut self.tops[r])
    }
}

pub(crate) fn quantize_query(q: &[f32], groups: usize) -> Query {
    let m = q.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if m > 0.0 && m.is_finite() {
        m / QUERY_MAX
    } else {
        1.0
    };
    let mut bytes = vec![OFFSET as u8; groups * 4];
    for (b, &x) in bytes.iter_mut().zip(q) {
        let e = (x / scale).round().clamp(-QUERY_MAX, QUERY_MAX);
        *b = (e as i32 + OFFSET) as u8;
    }
    Query { bytes, scale }
}

impl Int8Table {
    /// Quantizes an f32 table (`n × dim`, row-major) and its biases.
    pub fn new(dim: usize, factors: &[f32], bias: Option<&[f32]>) -> Int8Table {
        let mut t = Int8Table::empty(dim, bias.is_some());
        let n = factors.len().checked_div(dim).unwrap_or(0);
        t.reserve(n);
        for i in 0..n {
            t.push(&factors[i * dim..(i + 1) * dim], bias.map_or(0.0, |b| b[i]));
        }
        t
    }

    /// An empty table of `dim` dimensions, with biases or without.
    pub(crate) fn empty(dim: usize, with_bias: bool) -> Int8Table {
        Int8Table {
            dim,
            n: 0,
            groups: dim.div_ceil(4),
            codes: Vec::new(),
            scale: Vec::new(),
            offset_sum: Vec::new(),
            bias: with_bias.then(Vec::new),
            kernel: Kernel::best(),
        }
    }

    /// Room for `more` items.
    pub(crate) fn reserve(&mut self, more: usize) {
        let panels = (self.n + more).div_ceil(PANEL);
        let want = panels * PANEL;
        self.codes
            .reserve((want * self.groups * 4).saturating_sub(self.codes.len()));
        self.scale.reserve(want.saturating_sub(self.scale.len()));
        self.offset_sum
            .reserve(want.saturating_sub(self.offset_sum.len()));
        if let Some(b) = &mut self.bias {
            b.reserve(want.saturating_sub(b.len()));
        }
    }

    /// Appends one item (its bias is ignored by a table without biases).
    pub(crate) fn push(&mut self, row: &[f32], bias: f32) {
        debug_assert_eq!(row.len(), self.dim);
        let i = self.n;
        if i.is_multiple_of(PANEL) {
            // A new zeroed panel: codes, scales, sums and biases.
            let len = self.codes.len() + self.groups * PANEL * 4;
            self.codes.resize(len, 0);
            self.scale.resize(i + PANEL, 0.0);
            self.offset_sum.resize(i + PANEL, 0);
            if let Some(b) = &mut self.bias {
                b.resize(i + PANEL, 0.0);
            }
        }
        let m = row.iter().fold(0f32, |m, x| m.max(x.abs()));
        let s = if m > 0.0 && m.is_finite() {
            m / ITEM_MAX
        } else {
            1.0
        };
        self.scale[i] = s;
        let (p, l) = (i / PANEL, i % PANEL);
        let mut sum = 0i32;
        for (d, &x) in row.iter().enumerate() {
            let c = (x / s).round().clamp(-ITEM_MAX, ITEM_MAX) as i8;
            self.codes[((p * self.groups + d / 4) * PANEL + l) * 4 + d % 4] = c;
            sum += OFFSET * c as i32;
        }
        self.offset_sum[i] = sum;
        if let Some(b) = &mut self.bias {
            b[i] = bias;
        }
        self.n += 1;
    }

    /// Forces the portable kernel (tests).
    pub fn generic(self) -> Int8Table {
        self.with_kernel(Kernel(Kind::Generic))
    }

    /// Uses `kernel` (one of [`Kernel::available`]).
    pub(crate) fn with_kernel(mut self, kernel: Kernel) -> Int8Table {
        self.kernel = kernel;
        self
    }

    /// The kernel it scans with, by name (`generic`, `avx2`, `avx-vnni`,
    /// `avx512-vnni`).
    pub fn kernel_name(&self) -> &'static str {
        self.kernel.name()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Groups of four dimensions a quantized query holds.
    pub(crate) fn groups(&self) -> usize {
        self.groups
    }

    /// Asks the CPU to start loading the whole table into cache (a hint, for
    /// a small table about to be scanned: an IVF list while the one before it
    /// is scanned).
    pub(crate) fn prefetch(&self) {
        prefetch_slice(&self.codes);
        prefetch_slice(&self.scale);
        prefetch_slice(&self.offset_sum);
        if let Some(b) = &self.bias {
            prefetch_slice(b);
        }
    }

    /// Bytes of codes, scales and sums (what a scan reads).
    pub fn bytes(&self) -> usize {
        self.codes.len() + 8 * self.scale.len()
    }

    /// Where panel `p`'s codes start; panics unless its codes, scales, sums
    /// and biases are all inside the table (what the kernels' unchecked
    /// loads rely on).
    #[inline]
    fn panel_base(&self, p: usize) -> usize {
        let base = p * self.groups * PANEL * 4;
        assert!(
            self.codes.len() >= base + self.groups * PANEL * 4
                && self.scale.len() >= (p + 1) * PANEL,
            "code table too short"
        );
        base
    }

    /// The approximate score of item `i` (the scalar reference).
    fn score_ref(&self, q: &Query, i: usize) -> f32 {
        let (p, l) = (i / PANEL, i % PANEL);
        let mut acc = 0i32;
        for g in 0..self.groups {
            let base = ((p * self.groups + g) * PANEL + l) * 4;
            for j in 0..4 {
                acc += q.bytes[g * 4 + j] as i32 * self.codes[base + j] as i32;
            }
        }
        let v = (acc - self.offset_sum[i]) as f32;
        let s = v * (q.scale * self.scale[i]);
        match &self.bias {
            Some(b) => s + b[i],
            None => s,
        }
    }

    /// Approximate scores of the given items (as the scans compute them).
    pub fn scores_of(&self, q: &[f32], items: &[u32]) -> Vec<f32> {
        assert_eq!(q.len(), self.dim, "query dimension");
        let qq = quantize_query(q, self.groups);
        items
            .iter()
            .map(|&i| self.score_ref(&qq, i as usize))
            .collect()
    }

    /// Scores items `lo..hi` (`lo` a multiple of sixteen) against every
    /// query of `qs` and hands the lanes not below `floors[r]` to `sink`
    /// (which returns the new floor). Every kernel computes the same scores
    /// bit for bit (the integer sums are exact, the float steps the same).
    pub(crate) fn scan(
        &self,
        qs: &[&Query],
        lo: usize,
        hi: usize,
        floors: &mut [f32],
        sink: &mut impl Sink,
    ) {
        debug_assert_eq!(lo % PANEL, 0);
        debug_assert!(hi <= self.n && floors.len() == qs.len());
        if lo >= hi {
            return;
        }
        match self.kernel.0 {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a `Kernel` other than the portable one exists only where
            // run-time detection found its features (`Kernel::available`; no
            // code outside this module can make one).
            Kind::Avx2 => unsafe { avx2::scan(self, qs, lo, hi, floors, sink) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kind::AvxVnni => unsafe { vnni256::scan(self, qs, lo, hi, floors, sink) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kind::Avx512Vnni => unsafe { vnni512::scan(self, qs, lo, hi, floors, sink) },
            Kind::Generic => {
                let mut buf = [0f32; PANEL];
                for first in (lo..hi).step_by(PANEL) {
                    let valid = lanes(hi - first);
                    for (r, q) in qs.iter().enumerate() {
                        let mut bits = 0u32;
                        for (l, b) in buf.iter_mut().enumerate() {
                            if valid & (1 << l) != 0 {
                                *b = self.score_ref(q, first + l);
                                if reaches(*b, floors[r]) {
                                    bits |= 1 << l;
                                }
                            }
                        }
                        if bits != 0 {
                            floors[r] = sink.offer(r, first, bits, &buf);
                        }
                    }
                }
            }
        }
    }

    /// Top-`k[j]` by approximate score for each query, excluding the sorted
    /// `exclude[j]`; the catalogue split across threads.
    pub fn top_k_batch(
        &self,
        queries: &[&[f32]],
        k: &[usize],
        exclude: &[&[u32]],
    ) -> Vec<Vec<Scored>> {
        check_batch(self.dim, queries, k, exclude);
        let qq: Vec<Query> = queries
            .iter()
            .map(|q| quantize_query(q, self.groups))
            .collect();
        let qs: Vec<&Query> = qq.iter().collect();
        // Tiles of whole panels, about 32 KiB of codes.
        let tile = ((32_768 / (self.groups * 4).max(1)) / PANEL * PANEL).max(PANEL);
        batched_top_k(self.n, tile, k, |lo, hi, tops, _: &mut ()| {
            let mut floors: Vec<f32> = tops.iter().map(TopK::floor).collect();
            self.scan(&qs, lo, hi, &mut floors, &mut Flat { tops, exclude });
        })
    }

    /// Exact top-`k` per query: `oversample·k + 64` candidates by approximate
    /// score, rescored exactly on `exact` (the f32 table this one was built
    /// from), so the scores returned are exact and only an item the
    /// quantization pushed out of the candidate pool can be missed.
    pub fn search(
        &self,
        exact: &ItemTable<'_>,
        queries: &[&[f32]],
        k: &[usize],
        exclude: &[&[u32]],
        oversample: usize,
    ) -> Vec<Vec<Scored>> {
        assert_eq!(
            exact.len(),
            self.n,
            "the exact table differs from the quantized one"
        );
        let pools: Vec<usize> = k
            .iter()
            .map(|&k| k.saturating_mul(oversample).saturating_add(64).min(self.n))
            .collect();
        // Rescoring reads scattered rows of the f32 table: in parallel.
        self.top_k_batch(queries, &pools, exclude)
            .into_par_iter()
            .zip(queries.par_iter().zip(k))
            .map(|(c, (q, &k))| exact.rescore(q, k, &c))
            .collect()
    }
}

/// Prefetches every cache line of `s` (a hint; never faults).
pub(crate) fn prefetch_slice<T>(s: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let (p, len) = (s.as_ptr() as *const i8, std::mem::size_of_val(s));
        for off in (0..len).step_by(64) {
            // SAFETY: a prefetch is a hint that never faults; the address is
            // inside `s` anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.add(off))
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = s;
}

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
use x86::{avx2, vnni256, vnni512};

#[cfg(test)]
mod tests;
