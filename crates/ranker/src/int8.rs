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

use crate::isa::{Isa, Level};
use crate::scan::{lanes, offer_bits, reaches, PANEL};
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

/// Runs `block(j0, b)` over `n` queries in blocks of `b` queries: `M` while
/// as many remain, then 4, 2 and 1 (a kernel's block scores all its `b`
/// queries, so a short block must not be padded: one query per IVF list is
/// the common case).
#[cfg(target_arch = "x86_64")]
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
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn block_of<'q, const B: usize>(qs: &[&'q Query], j0: usize) -> [&'q Query; B] {
    std::array::from_fn(|r| qs[j0 + r])
}

/// A SIMD module's entry point: every query of `qs` against items `lo..hi`,
/// `M` queries at a time through the module's `block`, under its features.
#[cfg(target_arch = "x86_64")]
macro_rules! int8_scan {
    ($features:literal, $doc:literal) => {
        /// # Safety
        #[doc = $doc]
        #[target_feature(enable = $features)]
        pub(super) unsafe fn scan(
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

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{block256, query_blocks, Dot256, Int8Table, Query, Sink};
    use crate::scan::PANEL;

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
#[cfg(target_arch = "x86_64")]
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
#[cfg(target_arch = "x86_64")]
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
#[cfg(target_arch = "x86_64")]
mod vnni256 {
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
#[cfg(target_arch = "x86_64")]
mod vnni512 {
    use std::arch::x86_64::*;

    use super::{block_of, query_blocks, Int8Table, Query, Sink};
    use crate::scan::{lanes, PANEL};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::test_floats as floats;

    #[test]
    fn every_kernel_returns_the_reference_candidates_for_dims_0_to_67() {
        let n = 77;
        for f in (0usize..=67).chain([100, 128]) {
            let items = floats(f as u64 + 1, n * f);
            let bias = floats(f as u64 + 2, n);
            let queries: Vec<Vec<f32>> = (0..9).map(|j| floats(f as u64 * 13 + j, f)).collect();
            let qs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
            let ex_list: Vec<u32> = (0..n as u32).step_by(5).collect();
            let ks: Vec<usize> = (0..9)
                .map(|j| [1, 5, 10, 77, 100, 0, 3, 20, 40][j])
                .collect();
            let ex: Vec<&[u32]> = (0..9)
                .map(|j| if j % 3 == 0 { &ex_list[..] } else { &[][..] })
                .collect();
            for (bias, kernel) in [None, Some(&bias[..])]
                .into_iter()
                .flat_map(|b| Kernel::available().into_iter().map(move |k| (b, k)))
            {
                let fast = Int8Table::new(f, &items, bias).with_kernel(kernel);
                let reference = fast.clone().generic();
                let all: Vec<u32> = (0..fast.len() as u32).collect();
                // Batches of 1..=9 queries exercise every micro-tile height.
                for m in 1..=9 {
                    let got = fast.top_k_batch(&qs[..m], &ks[..m], &ex[..m]);
                    let want = reference.top_k_batch(&qs[..m], &ks[..m], &ex[..m]);
                    assert_eq!(got, want, "dim {f}, {m} queries, {kernel:?}");
                }
                for q in &qs {
                    let s = reference.scores_of(q, &all);
                    for r in fast.top_k_batch(&[q], &[n], &[&[]]).remove(0) {
                        assert_eq!(r.score.to_bits(), s[r.item as usize].to_bits(), "dim {f}");
                    }
                }
            }
        }
    }

    #[test]
    fn approximate_scores_are_close_and_rescoring_recovers_the_exact_top_k() {
        let (n, f) = (20_000usize, 64usize);
        let items = floats(5, n * f);
        let t = ItemTable::new(f, &items, None);
        let q8 = Int8Table::new(f, &items, None);
        assert!(q8.bytes() * 3 < items.len() * 4, "not smaller than f32");
        let queries: Vec<Vec<f32>> = (0..50).map(|j| floats(100 + j, f)).collect();
        let qs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
        let all: Vec<u32> = (0..n as u32).collect();
        // Quantization error within a few percent of |q|·|x|.
        let approx = q8.scores_of(qs[0], &all);
        let exact = t.scores_of(qs[0], &all);
        let qn = qs[0].iter().map(|x| x * x).sum::<f32>().sqrt();
        for i in 0..n {
            let xn = items[i * f..(i + 1) * f]
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt();
            assert!((approx[i] - exact[i]).abs() <= 0.03 * qn * xn, "item {i}");
        }
        let k = vec![100; qs.len()];
        let ex: Vec<&[u32]> = vec![&[]; qs.len()];
        let got = q8.search(&t, &qs, &k, &ex, 4);
        let want = t.top_k_batch(&qs, &k, &ex);
        let hits: usize = got
            .iter()
            .zip(&want)
            .map(|(g, w)| g.iter().filter(|s| w.contains(s)).count())
            .sum();
        let recall = hits as f64 / (100.0 * qs.len() as f64);
        assert!(recall >= 0.99, "recall@100 {recall}");
        // Without oversampling the quantized order alone loses items.
        let bare = q8.search(&t, &qs, &k, &ex, 1);
        let bare_hits: usize = bare
            .iter()
            .zip(&want)
            .map(|(g, w)| g.iter().filter(|s| w.contains(s)).count())
            .sum();
        assert!(bare_hits <= hits);
    }

    #[test]
    fn codes_at_full_scale_do_not_saturate() {
        // Every code at ±63 in both the items and the queries: the largest
        // pair sums the kernel adds in i16. Saturation anywhere would change
        // a score from the scalar reference's exact integers.
        let (n, f) = (64usize, 72usize);
        let items: Vec<f32> = (0..n * f)
            .map(|j| if (j / f + j % f) % 5 == 0 { -2.0 } else { 2.0 })
            .collect();
        let queries: Vec<Vec<f32>> = [1.0f32, -1.0]
            .iter()
            .map(|&sign| {
                (0..f)
                    .map(|d| if d % 7 == 0 { -sign } else { sign })
                    .collect()
            })
            .collect();
        let qs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
        let reference = Int8Table::new(f, &items, None).generic();
        let all: Vec<u32> = (0..n as u32).collect();
        for (q, kernel) in qs
            .iter()
            .flat_map(|q| Kernel::available().into_iter().map(move |k| (q, k)))
        {
            let fast = reference.clone().with_kernel(kernel);
            let want = reference.scores_of(q, &all);
            // Every value is exactly ±scale·63, so the reference is the
            // true dot product up to the float rounding of the scales.
            for (i, w) in want.iter().enumerate() {
                let dot: f32 = q
                    .iter()
                    .zip(&items[i * f..(i + 1) * f])
                    .map(|(a, b)| a * b)
                    .sum();
                assert!(
                    (w - dot).abs() <= 1e-4 * dot.abs().max(1.0),
                    "item {i}: {w} vs {dot}"
                );
            }
            let got = fast.top_k_batch(&[q], &[n], &[&[]]).remove(0);
            assert_eq!(got.len(), n);
            for r in got {
                assert_eq!(r.score.to_bits(), want[r.item as usize].to_bits());
            }
        }
    }

    #[test]
    fn zero_vectors_and_empty_tables_score_without_nan() {
        let items = vec![0f32; 4 * 8];
        let t = Int8Table::new(8, &items, None);
        let r = t.top_k_batch(&[&[0.0; 8]], &[2], &[&[]]);
        assert_eq!(r[0].len(), 2);
        assert!(r[0].iter().all(|s| s.score == 0.0));
        let empty = Int8Table::new(8, &[], None);
        assert!(empty.is_empty());
        assert!(empty.top_k_batch(&[&[1.0; 8]], &[5], &[&[]])[0].is_empty());
    }
}
