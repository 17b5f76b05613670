//! An inverted-file index for maximum-inner-product retrieval over catalogues
//! too large to scan: items are grouped into lists around k-means centroids,
//! a query scans only the lists whose centroids score best for it, in 8-bit
//! codes ([`Int8Table`]), and the best candidates are rescored exactly in f32.
//!
//! **Maximum inner product, not distance.** A score is `q·x + b`, with item
//! vectors of any norm and a bias. The lists are built on the augmented items
//! `x̃ = [x, b, √(R² − |x|² − b²)]` (`R` the largest `|[x, b]|` of the table),
//! which all have norm `R`, so for the augmented query `q̃ = [q, 1, 0]`
//! `q̃·x̃ = q·x + b` is the score and the item nearest `q̃` in Euclidean
//! distance is the item of highest score (Bachrach et al. 2014): k-means in
//! that space groups items a query ranks together.
//!
//! **Which lists a query probes.** Two points on that sphere stand for the
//! query, and a list is ranked by the distance of its centroid from one of
//! them (a product with the centroids, in 8-bit codes then exactly for the
//! best): the *pole* `R q̃/|q̃|`, nearest to
//! which lie the items of highest score — the exact reduction, right for
//! items of any norm but hard for centroids, which average items lying off
//! the pole (a centroid is shorter than `R`, and by how much depends on its
//! list's spread); and the *typical point* `[ρ q̃/|q̃|, √(R² − ρ²)]`, the
//! query as an item of the mean norm `ρ` would lie, where the items a query
//! ranks first usually are, so that lists are ranked by the same rule that
//! assigned items to them. [`IvfIndex::tune_nprobe`] measures which order
//! — the typical point's, the pole's, or both in turns — reaches the target
//! recall with the fewest lists for a plain query (no filter, no exclusions,
//! the tuned `k`); every other query, which must reach deeper, takes the
//! pole's order, whose lists cover every depth (the typical point's miss the
//! items far from it: with a 20% filter it needed 15× the pole's time). Measured on 10M clustered vectors
//! (k = 100): one list by the typical point finds 0.998 of the top 100, one
//! by the pole 0.962; on 2M vectors of norms spread 4× with biases and
//! queries of a third the norm, the typical point 0.970 at one list but 0.974
//! at eight (it misses the long items), the pole 0.914 and 0.986, both in
//! turns 0.971 and 0.983. (Ranking lists by `q̃·c̃`, as FAISS's inner-product
//! quantizer does, gave 0.59 at one list on the 10M set.)
//!
//! **Filters inside the scan.** A query's exclusions (sorted item indices) and
//! an [`IvfFilter`] (an allowed set, e.g. a surface) are applied to each
//! candidate before it enters the top-K. A filter keeping a share `s` of the
//! catalogue puts the query's `k`-th admissible item near rank `k/s` of the
//! unfiltered order, and exclusions push it deeper by the number of excluded
//! items that score above it; the probe scans as many lists as that depth
//! needs. [`IvfIndex::tune_nprobe`] measures how many lists reach the target
//! recall for the whole top `k`, `2k`, … `16k`, and for the `k` deepest items
//! of each (two depth tables); a query plans for depth `k/s` by the first, and
//! one with exclusions then counts (exactly) the excluded items above its
//! `k`-th candidate and, if they push it down, scans a second, deeper round by
//! the second table. The lists taken must also hold as many
//! admissible items as `nprobe` lists hold on average (a filter that is not
//! spread evenly over the lists).
//!
//! **Fresh items** ([`IvfIndex::add`]) go to the list of their nearest
//! centroid without retraining; [`IvfIndex::rebalance`] splits lists grown far
//! beyond the mean.
//!
//! Determinism: k-means is seeded, its assignments are exact top-1 searches
//! (ties by lower index) and its sums are taken in item order; a query's
//! candidates are its best by approximate score (ties by item index), whatever
//! the order lists are scanned in or the thread count.

#[path = "ivf_file.rs"]
mod file;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::int8::{prefetch_slice, quantize_query, Int8Table, Query, Sink};
use crate::rng::SplitMix;
use crate::scan::PANEL;
use crate::top::{Scored, TopK};
use crate::topk::{ItemTable, TableBound};

/// Candidates kept beyond `oversample·k` for exact rescoring, for the 8-bit
/// codes' error at the `k`-th place. Measured against 64: no recall lost at
/// 32 (2M clustered at 1 and 4 probes, 1M Gaussian at 2,000 of 4,000 lists),
/// 0.0002–0.0004 lost at 16; 7% more queries/s at 32 (fewer random rows of
/// the f32 table to read).
const POOL_MARGIN: usize = 32;

/// Lists ranked by the 8-bit probe tables beyond `1.5 ×` those wanted, then
/// rescored exactly (see [`IvfIndex::rank_points`]).
const PROBE_MARGIN: usize = 16;

/// The order a query takes lists in, from its two probe points (see the
/// module documentation); chosen by [`IvfIndex::tune_nprobe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Order {
    /// The typical point's best list, then the pole's, in turns (untuned).
    Both,
    /// By the typical point alone.
    Typical,
    /// By the pole alone.
    Pole,
}

/// How an index is built.
#[derive(Debug, Clone)]
pub struct IvfParams {
    /// Lists; `None`: `4·√n` (FAISS's guideline for IVF), at least 1 and at
    /// most `n / 16`.
    pub nlist: Option<usize>,
    /// Lists a query scans (before widening for filters).
    pub nprobe: usize,
    /// Candidates kept per wanted result before exact rescoring
    /// (`oversample·k + 32`). 1 by default: the lists probed, not the 8-bit
    /// codes, limit recall (2 gave the same recall at 1M, 12% slower).
    pub oversample: usize,
    /// k-means training points per list (the sample is `nlist × this`, at most `n`).
    pub sample_per_list: usize,
    /// Lloyd iterations.
    pub iterations: usize,
    /// Seed of the sample and of empty-cluster splits.
    pub seed: u64,
}

impl Default for IvfParams {
    fn default() -> IvfParams {
        IvfParams {
            nlist: None,
            nprobe: 32,
            oversample: 1,
            sample_per_list: 64,
            iterations: 10,
            seed: 7,
        }
    }
}

/// One inverted list: its items' codes and their indices in the catalogue.
#[derive(Debug, Clone)]
struct List {
    codes: Int8Table,
    ids: Vec<u32>,
}

/// An inverted-file index over an item table (see the module documentation).
#[derive(Debug, Clone)]
pub struct IvfIndex {
    dim: usize,
    /// Augmented centroids, `nlist × (dim + 2)`, for assigning items.
    centroids: Vec<f32>,
    /// `−|c̃|²/2` per centroid: nearest centroid = highest `x̃·c̃ − |c̃|²/2`.
    half_norms: Vec<f32>,
    /// Probe table, `nlist × (dim + 3)`: each augmented centroid `c̃` and
    /// `−|c̃|²`. Against a probe point `p` written as `[p, 1/2]` a row scores
    /// `p·c̃ − |c̃|²/2`, which ranks lists by the Euclidean distance of their
    /// centroids from `p`; the pole is written scaled by `|q̃|/R` (as
    /// `[q̃, 0, |q̃|/2R]`: the same order, no division).
    probe: Vec<f32>,
    /// The probe table's bound, computed once (a pass per query would cost
    /// more than the probe).
    probe_bound: TableBound,
    /// The probe table in 8-bit codes for each kind of probe point (typical,
    /// pole), which ranks lists first (see [`IvfIndex::rank_points`]).
    probe8: Vec<Int8Table>,
    lists: Vec<List>,
    /// The list of every item.
    item_list: Vec<u32>,
    with_bias: bool,
    /// Items of the table the index was built from; added items follow.
    base: usize,
    /// Rows and biases of added items.
    fresh: Vec<f32>,
    fresh_bias: Vec<f32>,
    /// `R²`: the squared norm every augmented item is lifted to.
    radius2: f64,
    /// `ρ²`: the mean squared norm of the built items (`[x, b]`).
    typical2: f64,
    /// How lists are ordered for a plain query (no filter, no exclusions,
    /// `k` at most `plain_k`); every other query takes the pole's order, with
    /// the depth tables.
    order: Order,
    /// The `k` [`IvfIndex::tune_nprobe`] tuned `order` and `nprobe` for (0:
    /// untuned, every query takes the pole's order).
    plain_k: usize,
    nprobe: usize,
    /// From [`IvfIndex::tune_nprobe`]: lists needed for the target recall of
    /// the top `depth` items, for doubling depths (empty: `nprobe` for every
    /// depth, widened in proportion).
    depths: Vec<(usize, usize)>,
    /// The same for the `k` deepest of the top `depth` (what a query needs
    /// when its exclusions removed the items above them).
    bands: Vec<(usize, usize)>,
    oversample: usize,
    seed: u64,
    /// XXH3 of the table the index was built from (an index file is loaded
    /// only against that table).
    table_hash: u64,
    /// The longest list when the index was built: [`IvfIndex::add`] splits
    /// a list grown past twice this.
    longest_built: usize,
}

/// One query of a search: its vector, how many results, the sorted item
/// indices it must not return, and an optional allowed set.
#[derive(Debug, Clone, Copy)]
pub struct IvfQuery<'a> {
    /// The user embedding.
    pub vector: &'a [f32],
    /// Results wanted.
    pub k: usize,
    /// Item indices never returned, sorted ascending.
    pub exclude: &'a [u32],
    /// Only items this filter allows are returned.
    pub filter: Option<&'a IvfFilter>,
}

/// An allowed set of items, prepared for an index (its per-list counts drive
/// how far a filtered probe widens). Items added to the index after the filter
/// was made are not allowed by it.
#[derive(Debug, Clone)]
pub struct IvfFilter {
    bits: Vec<u64>,
    per_list: Vec<u32>,
    allowed: usize,
}

impl IvfFilter {
    /// Whether item `i` is allowed.
    #[inline]
    pub fn allows(&self, i: u32) -> bool {
        let i = i as usize;
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    /// Items allowed.
    pub fn allowed(&self) -> usize {
        self.allowed
    }
}

/// A list's candidates go into its queries' top-Ks as item indices, skipping
/// excluded and filtered-out items.
struct ListSink<'a, 'b> {
    ids: &'a [u32],
    /// The chunk's query of each scanned query `r`.
    who: &'a [usize],
    tops: &'a mut [TopK],
    queries: &'a [IvfQuery<'b>],
}

impl Sink for ListSink<'_, '_> {
    #[inline]
    fn offer(&mut self, r: usize, first: usize, mut bits: u32, scores: &[f32; PANEL]) -> f32 {
        let j = self.who[r];
        let q = &self.queries[j];
        let top = &mut self.tops[j];
        while bits != 0 {
            let l = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let id = self.ids[first + l];
            if q.exclude.binary_search(&id).is_err() && q.filter.is_none_or(|f| f.allows(id)) {
                top.push(id, scores[l]);
            }
        }
        top.floor()
    }
}

/// A query's probe in progress: the centroid order, how far it has been
/// taken, the admissible items in the lists taken, and its exclusions' lists.
struct Probe {
    ranked: Vec<Scored>,
    at: usize,
    seen: usize,
    lists: Vec<u32>,
    /// The list of each excluded (and filter-allowed) item, sorted.
    excluded: Vec<u32>,
}

/// Asks the CPU to start loading the rows of `items` (scattered in a table
/// far larger than the caches) before they are scored, so their misses
/// overlap instead of following each other.
fn prefetch_rows(table: &[f32], dim: usize, items: &[u32]) {
    for &i in items {
        let row = i as usize * dim;
        if let Some(r) = table.get(row..row + dim) {
            prefetch_slice(r);
        }
    }
}

/// The lists of two rankings in turns, first `a`'s best, then `b`'s, then
/// `a`'s second…, each list once.
fn merge_probes(a: Vec<Scored>, b: Vec<Scored>, nlist: usize) -> Vec<Scored> {
    let short = a.len() + b.len() <= 64;
    let mut seen = if short {
        Vec::new()
    } else {
        vec![false; nlist]
    };
    let mut out: Vec<Scored> = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    loop {
        let (x, y) = (a.next(), b.next());
        if x.is_none() && y.is_none() {
            return out;
        }
        for s in [x, y].into_iter().flatten() {
            let new = if short {
                !out.iter().any(|o| o.item == s.item)
            } else {
                seen.get_mut(s.item as usize)
                    .is_some_and(|slot| !std::mem::replace(slot, true))
            };
            if new {
                out.push(s);
            }
        }
    }
}

/// Lifts row `x` with bias `b` to `[x, b, √(R² − |x|² − b²)]` into `out`.
fn augment(x: &[f32], b: f32, radius2: f64, out: &mut [f32]) {
    let d = x.len();
    out[..d].copy_from_slice(x);
    out[d] = b;
    let n2: f64 = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() + b as f64 * b as f64;
    out[d + 1] = (radius2 - n2).max(0.0).sqrt() as f32;
}

/// Nearest centroid (highest `x̃·c̃ − |c̃|²/2`, ties by lower index) of each
/// augmented row, in parallel chunks (results independent of the threads).
fn assign(centroids: &ItemTable<'_>, rows: &[f32], d2: usize) -> Vec<u32> {
    rows.par_chunks(256 * d2)
        .flat_map_iter(|chunk| {
            let qs: Vec<&[f32]> = chunk.chunks_exact(d2).collect();
            let ks = vec![1; qs.len()];
            let ex: Vec<&[u32]> = vec![&[]; qs.len()];
            centroids
                .top_k_batch(&qs, &ks, &ex)
                .into_iter()
                .map(|t| t.first().map_or(0, |s| s.item))
                .collect::<Vec<u32>>()
        })
        .collect()
}

impl IvfIndex {
    /// Builds an index over `table` (its rows and biases): seeded k-means on
    /// a sample of the augmented items, then every item into its nearest
    /// list.
    pub fn build(table: &ItemTable<'_>, params: &IvfParams) -> Result<IvfIndex> {
        let (n, dim) = (table.len(), table.dim());
        if n == 0 || dim == 0 {
            return Err(Error::InvalidInput(
                "an IVF index needs a non-empty item table".into(),
            ));
        }
        for (field, v) in [
            ("nprobe", params.nprobe),
            ("iterations", params.iterations),
            ("sample_per_list", params.sample_per_list),
            ("oversample", params.oversample),
            ("nlist", params.nlist.unwrap_or(1)),
        ] {
            if v == 0 {
                return Err(Error::InvalidParam {
                    field,
                    allowed: "1 or more",
                    got: "0".into(),
                });
            }
        }
        let nlist = params
            .nlist
            .unwrap_or_else(|| (4.0 * (n as f64).sqrt()).round() as usize)
            .min(n / 16)
            .max(1);
        let (x, bias) = (table.factors(), table.bias());
        let b = |i: usize| bias.map_or(0.0, |b| b[i]);
        // `R²`, the largest squared norm, and `ρ²`, the mean one (summed in
        // item order in chunks: the same whatever the thread count).
        let norm2 = |i: usize| {
            let r = &x[i * dim..(i + 1) * dim];
            r.iter().map(|&v| v as f64 * v as f64).sum::<f64>() + (b(i) as f64).powi(2)
        };
        let (radius2, total2) = (0..n.div_ceil(4096))
            .into_par_iter()
            .map(|c| {
                (c * 4096..((c + 1) * 4096).min(n))
                    .map(norm2)
                    .fold((0f64, 0f64), |(m, s), v| (m.max(v), s + v))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .fold((0f64, 0f64), |(m, s), (cm, cs)| (m.max(cm), s + cs));
        let typical2 = total2 / n as f64;
        let d2 = dim + 2;

        // The training sample: a seeded partial shuffle, kept in item order.
        let s = (nlist * params.sample_per_list).min(n);
        let mut rng = SplitMix::new(params.seed, 0x1f, 0);
        let mut sample: Vec<u32> = if s == n {
            (0..n as u32).collect()
        } else {
            let mut idx: Vec<u32> = (0..n as u32).collect();
            for i in 0..s {
                let j = i + rng.below((n - i) as u64) as usize;
                idx.swap(i, j);
            }
            idx.truncate(s);
            idx
        };
        // The first nlist sample points (random items) start the centroids.
        let mut centroids = vec![0f32; nlist * d2];
        for (c, &i) in sample.iter().take(nlist).enumerate() {
            let i = i as usize;
            augment(
                &x[i * dim..(i + 1) * dim],
                b(i),
                radius2,
                &mut centroids[c * d2..(c + 1) * d2],
            );
        }
        sample.sort_unstable();
        let mut rows = vec![0f32; s * d2];
        rows.par_chunks_mut(d2)
            .zip(sample.par_iter())
            .for_each(|(out, &i)| {
                let i = i as usize;
                augment(&x[i * dim..(i + 1) * dim], b(i), radius2, out);
            });

        for _ in 0..params.iterations {
            let half = half_norms(&centroids, d2);
            let table = ItemTable::new(d2, &centroids, Some(&half));
            let owner = assign(&table, &rows, d2);
            let mut sums = vec![0f64; nlist * d2];
            let mut counts = vec![0usize; nlist];
            for (row, &c) in rows.chunks_exact(d2).zip(&owner) {
                let c = c as usize;
                counts[c] += 1;
                for (s, &v) in sums[c * d2..(c + 1) * d2].iter_mut().zip(row) {
                    *s += v as f64;
                }
            }
            for c in 0..nlist {
                if counts[c] > 0 {
                    for d in 0..d2 {
                        centroids[c * d2 + d] = (sums[c * d2 + d] / counts[c] as f64) as f32;
                    }
                }
            }
            // An empty list takes half of a large one: a copy of its centroid,
            // the two pushed apart (as FAISS does).
            for c in 0..nlist {
                if counts[c] > 0 {
                    continue;
                }
                let big = pick_large(&counts, &mut rng);
                let (lo, hi) = if c < big { (c, big) } else { (big, c) };
                let (a, rest) = centroids.split_at_mut(hi * d2);
                let (src, dst) = if c < big {
                    (&mut rest[..d2], &mut a[lo * d2..(lo + 1) * d2])
                } else {
                    (&mut a[lo * d2..(lo + 1) * d2], &mut rest[..d2])
                };
                for d in 0..d2 {
                    let v = src[d];
                    let e = 1.0 / 1024.0 * if d % 2 == 0 { 1.0 } else { -1.0 };
                    dst[d] = v * (1.0 + e);
                    src[d] = v * (1.0 - e);
                }
                counts[c] = counts[big] / 2;
                counts[big] -= counts[c];
            }
        }

        let mut index =
            IvfIndex::from_centroids(dim, centroids, bias.is_some(), (radius2, typical2), params);
        // Every item to its nearest list, in chunks (the augmented rows of the
        // whole table would double its memory).
        const CHUNK: usize = 1 << 16;
        let ctable = ItemTable::new(d2, &index.centroids, Some(&index.half_norms));
        let mut item_list = Vec::with_capacity(n);
        let mut buf = vec![0f32; CHUNK.min(n) * d2];
        for lo in (0..n).step_by(CHUNK) {
            let hi = (lo + CHUNK).min(n);
            buf[..(hi - lo) * d2]
                .par_chunks_mut(d2)
                .enumerate()
                .for_each(|(r, out)| {
                    let i = lo + r;
                    augment(&x[i * dim..(i + 1) * dim], b(i), radius2, out);
                });
            item_list.extend(assign(&ctable, &buf[..(hi - lo) * d2], d2));
        }
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); nlist];
        for (i, &l) in item_list.iter().enumerate() {
            members[l as usize].push(i as u32);
        }
        index.lists = members
            .into_par_iter()
            .map(|ids| {
                let mut codes = Int8Table::empty(dim, bias.is_some());
                codes.reserve(ids.len());
                for &i in &ids {
                    let i = i as usize;
                    codes.push(&x[i * dim..(i + 1) * dim], b(i));
                }
                List { codes, ids }
            })
            .collect();
        index.item_list = item_list;
        index.base = n;
        index.table_hash = file::table_hash(table);
        index.longest_built = index.lists.iter().map(|l| l.ids.len()).max().unwrap_or(0);
        Ok(index)
    }

    fn from_centroids(
        dim: usize,
        centroids: Vec<f32>,
        with_bias: bool,
        (radius2, typical2): (f64, f64),
        params: &IvfParams,
    ) -> IvfIndex {
        let mut index = IvfIndex {
            dim,
            probe_bound: TableBound::of(0, &[], None),
            probe8: Vec::new(),
            half_norms: Vec::new(),
            centroids,
            probe: Vec::new(),
            lists: Vec::new(),
            item_list: Vec::new(),
            with_bias,
            base: 0,
            fresh: Vec::new(),
            fresh_bias: Vec::new(),
            radius2,
            typical2,
            order: Order::Pole,
            plain_k: 0,
            nprobe: params.nprobe.max(1),
            depths: Vec::new(),
            bands: Vec::new(),
            oversample: params.oversample.max(1),
            seed: params.seed,
            table_hash: 0,
            longest_built: 0,
        };
        index.derive_probe();
        index
    }

    /// The half norms, probe table and its bound, from the centroids (after
    /// they are set or split).
    fn derive_probe(&mut self) {
        let d2 = self.dim + 2;
        self.half_norms = half_norms(&self.centroids, d2);
        // `−|c̃|²` of each centroid.
        let pole: Vec<f32> = self.half_norms.iter().map(|h| 2.0 * h).collect();
        self.probe = Vec::with_capacity(pole.len() * (d2 + 1));
        for (c, &n) in self.centroids.chunks_exact(d2).zip(&pole) {
            self.probe.extend_from_slice(c);
            self.probe.push(n);
        }
        self.probe_bound = TableBound::of(d2 + 1, &self.probe, None);
        // A probe point's score divided by its last coordinate (positive for
        // both kinds) ranks the lists alike: `[x, b]·p/p_n` in codes, the rest
        // a per-list bias — the lift times `2√(R² − ρ²)` for the typical point
        // (whose lift coordinate is that over 2 ≡ p_n), nothing for the pole
        // (zero), and `−|c̃|²`. The lift and the norm, far larger than the
        // other coordinates, would otherwise take the codes' range.
        let w = self.code_width();
        let lift = 2.0 * (self.radius2 - self.typical2).max(0.0).sqrt() as f32;
        let rows: Vec<f32> = self
            .centroids
            .chunks_exact(d2)
            .flat_map(|c| c[..w].iter().copied())
            .collect();
        let typical: Vec<f32> = self
            .centroids
            .chunks_exact(d2)
            .zip(&pole)
            .map(|(c, n)| lift * c[d2 - 1] + n)
            .collect();
        self.probe8 = vec![
            Int8Table::new(w, &rows, Some(&typical)),
            Int8Table::new(w, &rows, Some(&pole)),
        ];
    }

    /// Coordinates of a centroid the 8-bit probe tables code: the item part,
    /// and the bias where items have one.
    fn code_width(&self) -> usize {
        self.dim + usize::from(self.with_bias)
    }

    /// Number of lists.
    pub fn nlist(&self) -> usize {
        self.lists.len()
    }

    /// Items indexed (built and added).
    pub fn len(&self) -> usize {
        self.item_list.len()
    }

    /// Whether no item is indexed.
    pub fn is_empty(&self) -> bool {
        self.item_list.is_empty()
    }

    /// Lists a query scans before widening for filters.
    pub fn nprobe(&self) -> usize {
        self.nprobe
    }

    /// Sets the lists a query scans (at least 1, at most all), for every
    /// depth (forgetting a tuned depth table).
    pub fn set_nprobe(&mut self, nprobe: usize) {
        self.nprobe = nprobe.clamp(1, self.nlist().max(1));
        self.depths.clear();
        self.bands.clear();
    }

    /// Lists to scan for a query whose `k`-th admissible item is expected at
    /// rank `depth` of the unfiltered order: from the tuned depth table
    /// (interpolated in log depth, extrapolated in proportion past its end),
    /// or `nprobe` scaled by `depth / k` without one.
    fn lists_for(&self, table: &[(usize, usize)], depth: f64, k: usize) -> usize {
        let n = match (table.first(), table.last()) {
            (Some(&(d0, p0)), Some(&(dl, pl))) => {
                if depth <= d0 as f64 {
                    p0 as f64
                } else if depth >= dl as f64 {
                    pl as f64 * depth / dl as f64
                } else {
                    let w = table.windows(2).find(|w| depth <= w[1].0 as f64);
                    match w {
                        Some(w) => {
                            let ((a, pa), (b, pb)) = (w[0], w[1]);
                            let t = (depth.ln() - (a as f64).ln())
                                / ((b as f64).ln() - (a as f64).ln());
                            pa as f64 + t * (pb as f64 - pa as f64)
                        }
                        None => pl as f64,
                    }
                }
            }
            _ => self.nprobe as f64 * (depth / k.max(1) as f64).max(1.0),
        };
        (n.ceil() as usize).clamp(1, self.nlist().max(1))
    }

    /// The share of the catalogue `q`'s filter allows.
    fn share(&self, q: &IvfQuery<'_>) -> f64 {
        q.filter
            .map_or(1.0, |f| f.allowed as f64 / self.len().max(1) as f64)
            .max(1e-6)
    }

    /// How a query orders the lists it probes: `"typical"`, `"pole"` or
    /// `"both"` (see the module documentation; chosen by
    /// [`IvfIndex::tune_nprobe`], `"both"` before).
    pub fn probe_order(&self) -> &'static str {
        match self.order {
            Order::Both => "both",
            Order::Typical => "typical",
            Order::Pole => "pole",
        }
    }

    /// The int8 kernel the lists are scanned with.
    pub fn kernel_name(&self) -> &'static str {
        self.lists
            .first()
            .map_or("generic", |l| l.codes.kernel_name())
    }

    /// Bytes of the index proper: codes, scales, sums and biases of the lists,
    /// their item indices, every item's list, and the centroids (not the f32
    /// rows it rescores with, which belong to the model, nor added rows).
    pub fn bytes(&self) -> usize {
        let lists: usize = self
            .lists
            .iter()
            .map(|l| {
                l.codes.bytes()
                    + 4 * l.ids.len()
                    + if self.with_bias {
                        4 * l.ids.len().div_ceil(PANEL) * PANEL
                    } else {
                        0
                    }
            })
            .sum();
        lists
            + 4 * self.item_list.len()
            + 4 * (self.centroids.len() + self.probe.len() + self.nlist())
            + self
                .probe8
                .iter()
                .map(|t| t.bytes() + 4 * t.len())
                .sum::<usize>()
    }

    /// The longest list over the mean list length.
    pub fn imbalance(&self) -> f64 {
        let max = self.lists.iter().map(|l| l.ids.len()).max().unwrap_or(0);
        let mean = self.len() as f64 / self.nlist().max(1) as f64;
        if mean > 0.0 {
            max as f64 / mean
        } else {
            1.0
        }
    }

    /// An allowed set for this index: item `i` is allowed if `allow(i)`.
    pub fn filter(&self, allow: impl Fn(u32) -> bool + Sync) -> IvfFilter {
        let n = self.len();
        let bits: Vec<u64> = (0..n.div_ceil(64))
            .into_par_iter()
            .map(|w| {
                let mut word = 0u64;
                for b in 0..64 {
                    let i = w * 64 + b;
                    if i < n && allow(i as u32) {
                        word |= 1 << b;
                    }
                }
                word
            })
            .collect();
        let mut f = IvfFilter {
            bits,
            per_list: Vec::new(),
            allowed: 0,
        };
        f.per_list = self
            .lists
            .par_iter()
            .map(|l| l.ids.iter().filter(|&&i| f.allows(i)).count() as u32)
            .collect();
        f.allowed = f.per_list.iter().map(|&c| c as usize).sum();
        f
    }

    /// Adds items (rows `n × dim`, biases or none for zeros) to the lists of
    /// their nearest centroids, without retraining; returns the index of the
    /// first (they are numbered after every item indexed so far). The exact
    /// rows are kept for rescoring. A list that grows past twice the longest
    /// list of the built index is split at once ([`IvfIndex::rebalance`]'s
    /// split), so uploads piling onto one topic never make the queries that
    /// probe it scan more than that. `exact` is the table the index was
    /// built from.
    pub fn add(
        &mut self,
        exact: &ItemTable<'_>,
        rows: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<u32> {
        self.check_table(exact)?;
        let dim = self.dim;
        if !rows.len().is_multiple_of(dim) {
            return Err(Error::LengthMismatch {
                what: "added rows",
                expected: rows.len() / dim * dim,
                got: rows.len(),
            });
        }
        let n = rows.len() / dim;
        if let Some(b) = bias {
            if b.len() != n {
                return Err(Error::LengthMismatch {
                    what: "added biases",
                    expected: n,
                    got: b.len(),
                });
            }
        }
        if let Some(p) = rows.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotFinite {
                what: "added item factor",
                row: p / dim,
                value: rows[p],
            });
        }
        if let Some(p) = bias.and_then(|b| b.iter().position(|v| !v.is_finite())) {
            return Err(Error::NotFinite {
                what: "added item bias",
                row: p,
                value: bias.map_or(0.0, |b| b[p]),
            });
        }
        let first = self.len() as u32;
        let d2 = dim + 2;
        let b = |i: usize| bias.map_or(0.0, |b| b[i]);
        let mut aug = vec![0f32; n * d2];
        for i in 0..n {
            augment(
                &rows[i * dim..(i + 1) * dim],
                b(i),
                self.radius2,
                &mut aug[i * d2..(i + 1) * d2],
            );
        }
        let table = ItemTable::new(d2, &self.centroids, Some(&self.half_norms));
        let owner = assign(&table, &aug, d2);
        for (i, &l) in owner.iter().enumerate() {
            let id = self.len() as u32;
            let list = &mut self.lists[l as usize];
            list.codes.push(&rows[i * dim..(i + 1) * dim], b(i));
            list.ids.push(id);
            self.item_list.push(l);
        }
        self.fresh.extend_from_slice(rows);
        self.fresh_bias.extend((0..n).map(b));
        self.split_longer_than(exact, (2 * self.longest_built) as f64);
        Ok(first)
    }

    /// Splits every list longer than `factor` × the mean list length in
    /// halves (at the median of its members' projections on their principal
    /// direction), again until none is, so fresh items piling into a few
    /// lists do not slow every query that probes them; returns the splits
    /// made. `exact` is the table the index was built from.
    pub fn rebalance(&mut self, exact: &ItemTable<'_>, factor: f64) -> Result<usize> {
        self.check_table(exact)?;
        let limit = factor.max(1.0) * self.len() as f64 / self.nlist().max(1) as f64;
        Ok(self.split_longer_than(exact, limit))
    }

    /// Splits every list longer than `limit` items (and of two panels or
    /// more) in halves, again until none is; returns the splits made.
    fn split_longer_than(&mut self, exact: &ItemTable<'_>, limit: f64) -> usize {
        let d2 = self.dim + 2;
        let mut splits = 0;
        loop {
            let long: Vec<usize> = (0..self.nlist())
                .filter(|&l| {
                    let len = self.lists[l].ids.len();
                    len as f64 > limit && len >= 2 * PANEL
                })
                .collect();
            if long.is_empty() {
                break;
            }
            for l in long {
                let ids = self.lists[l].ids.clone();
                let mut aug = vec![0f32; ids.len() * d2];
                for (r, &i) in ids.iter().enumerate() {
                    let (row, b) = self.row(exact, i);
                    augment(row, b, self.radius2, &mut aug[r * d2..(r + 1) * d2]);
                }
                let side = halves(&aug, d2);
                let new = self.nlist() as u32;
                let mut parts = [
                    (
                        Int8Table::empty(self.dim, self.with_bias),
                        Vec::new(),
                        vec![0f64; d2],
                    ),
                    (
                        Int8Table::empty(self.dim, self.with_bias),
                        Vec::new(),
                        vec![0f64; d2],
                    ),
                ];
                for (r, (&i, &upper)) in ids.iter().zip(&side).enumerate() {
                    let (row, b) = self.row(exact, i);
                    let part = &mut parts[upper as usize];
                    part.0.push(row, b);
                    part.1.push(i);
                    for (s, &v) in part.2.iter_mut().zip(&aug[r * d2..(r + 1) * d2]) {
                        *s += v as f64;
                    }
                }
                let [(keep, keep_ids, keep_sum), (moved, moved_ids, moved_sum)] = parts;
                for &i in &moved_ids {
                    self.item_list[i as usize] = new;
                }
                let mean = |sum: &[f64], n: usize| -> Vec<f32> {
                    sum.iter().map(|&s| (s / n.max(1) as f64) as f32).collect()
                };
                self.centroids[l * d2..(l + 1) * d2]
                    .copy_from_slice(&mean(&keep_sum, keep_ids.len()));
                self.centroids.extend(mean(&moved_sum, moved_ids.len()));
                self.lists[l] = List {
                    codes: keep,
                    ids: keep_ids,
                };
                self.lists.push(List {
                    codes: moved,
                    ids: moved_ids,
                });
                splits += 1;
            }
        }
        if splits > 0 {
            self.derive_probe();
        }
        splits
    }

    /// Item `i`'s exact row and bias.
    fn row<'t>(&'t self, exact: &ItemTable<'t>, i: u32) -> (&'t [f32], f32) {
        let (i, d) = (i as usize, self.dim);
        if i < self.base {
            (
                &exact.factors()[i * d..(i + 1) * d],
                exact.bias().map_or(0.0, |b| b[i]),
            )
        } else {
            let j = i - self.base;
            (&self.fresh[j * d..(j + 1) * d], self.fresh_bias[j])
        }
    }

    fn check_table(&self, exact: &ItemTable<'_>) -> Result<()> {
        if exact.len() != self.base || exact.dim() != self.dim {
            return Err(Error::InvalidInput(format!(
                "the IVF index was built from {} items of dimension {}, this table has {} of dimension {}",
                self.base,
                self.dim,
                exact.len(),
                exact.dim()
            )));
        }
        Ok(())
    }

    /// Admissible items (allowed by `q`'s filter, not excluded) that `lists`
    /// lists hold on average: a probe that found fewer in its lists (its
    /// filter keeps less near the query than elsewhere, or its exclusions sit
    /// there) goes on until it has them.
    fn admissible_target(&self, lists: usize, q: &IvfQuery<'_>) -> usize {
        (lists as f64 * self.len() as f64 / self.nlist().max(1) as f64 * self.share(q)).ceil()
            as usize
    }

    /// Starts `q`'s probe: the lists it scans, best centroid first, as many as
    /// the depth table gives for depth `k / share` and holding at least
    /// [`IvfIndex::admissible_target`] admissible items. `ranked` is the
    /// centroid order computed so far (extended to every list when it runs
    /// out).
    fn plan(&self, q: &IvfQuery<'_>, ranked: Vec<Scored>) -> Probe {
        // Exclusions the filter would have admitted, by list.
        let mut excluded: Vec<u32> = q
            .exclude
            .iter()
            .filter(|&&i| q.filter.is_none_or(|f| f.allows(i)))
            .filter_map(|&i| self.item_list.get(i as usize).copied())
            .collect();
        excluded.sort_unstable();
        let mut probe = Probe {
            ranked,
            at: 0,
            seen: 0,
            lists: Vec::new(),
            excluded,
        };
        let lists = self.planned_lists(q);
        self.extend(&mut probe, q, lists, self.admissible_target(lists, q));
        probe
    }

    /// Lists `q`'s first round scans: the tuned `nprobe` for a plain query,
    /// otherwise as many as the depth of its `k`-th admissible item needs.
    fn planned_lists(&self, q: &IvfQuery<'_>) -> usize {
        if self.is_plain(q) {
            self.nprobe
        } else {
            self.lists_for(&self.depths, q.k as f64 / self.share(q), q.k)
        }
    }

    /// Whether `q` takes the tuned order (see [`IvfIndex::order`]).
    fn is_plain(&self, q: &IvfQuery<'_>) -> bool {
        q.filter.is_none() && q.exclude.is_empty() && q.k <= self.plain_k
    }

    /// The order `q` takes lists in.
    fn order_for(&self, q: &IvfQuery<'_>) -> Order {
        if self.is_plain(q) {
            self.order
        } else {
            Order::Pole
        }
    }

    /// Adds lists to `probe` until it has `lists` of them and `target`
    /// admissible items (or every list).
    fn extend(&self, probe: &mut Probe, q: &IvfQuery<'_>, lists: usize, target: usize) {
        let nlist = self.nlist();
        let excluded = &probe.excluded;
        let excluded_in =
            |l: u32| excluded.partition_point(|&x| x <= l) - excluded.partition_point(|&x| x < l);
        let admissible = |l: u32| {
            let all = match q.filter {
                Some(f) => f.per_list.get(l as usize).copied().unwrap_or(0) as usize,
                None => self.lists[l as usize].ids.len(),
            };
            all.saturating_sub(excluded_in(l))
        };
        while probe.lists.len() < nlist {
            if probe.lists.len() >= lists && probe.seen >= target {
                break;
            }
            if probe.at == probe.ranked.len() {
                // Every list, best first (rare: a very selective filter).
                probe.ranked = self.coarse(q, nlist);
                if probe.at >= probe.ranked.len() {
                    break;
                }
            }
            let l = probe.ranked[probe.at].item;
            probe.at += 1;
            probe.lists.push(l);
            probe.seen += admissible(l);
        }
    }

    /// The centroids as a table whose scores are the lists' expected scores.
    fn probe_table(&self) -> ItemTable<'_> {
        ItemTable::with_bound(self.dim + 3, &self.probe, None, self.probe_bound)
    }

    /// The probe points `order` ranks lists from, as probe-table queries
    /// (see [`IvfIndex::probe`]) with their kind (the index of their 8-bit
    /// table): the typical point `[ρ q̃/|q̃|, √(R² − ρ²), 1/2]` (0) and/or the
    /// pole `[q, 1, 0, |q̃|/2R]` (1), in that order.
    fn probe_points(&self, q: &[f32], order: Order) -> Vec<(usize, Vec<f32>)> {
        let n2: f64 = q.iter().map(|&v| v as f64 * v as f64).sum::<f64>() + 1.0;
        let typical = || {
            let s = (self.typical2 / n2).sqrt();
            let mut p: Vec<f32> = q.iter().map(|&v| (v as f64 * s) as f32).collect();
            p.extend([
                s as f32,
                (self.radius2 - self.typical2).max(0.0).sqrt() as f32,
                0.5,
            ]);
            p
        };
        let pole = || {
            let r = self.radius2.sqrt().max(f64::MIN_POSITIVE);
            let mut p = Vec::with_capacity(q.len() + 3);
            p.extend_from_slice(q);
            p.extend([1.0, 0.0, (n2.sqrt() / (2.0 * r)) as f32]);
            p
        };
        match order {
            Order::Typical => vec![(0, typical())],
            Order::Pole => vec![(1, pole())],
            Order::Both => vec![(0, typical()), (1, pole())],
        }
    }

    /// The `m` best lists for each probe point `(kind, point)` (see
    /// [`IvfIndex::probe_points`]), in the exact order of the f32 probe table: the
    /// best `m + m/2 + PROBE_MARGIN` by the 8-bit table of the point's kind
    /// (four times the multiply-adds per instruction: the probe was a third
    /// of a search at 10M items), rescored exactly — or, when that pool would
    /// be more than an eighth of the lists, the f32 product alone.
    fn rank_points(&self, points: &[(usize, Vec<f32>)], m: usize) -> Vec<Vec<Scored>> {
        let nlist = self.nlist();
        let (m, w, n) = (m.min(nlist), self.code_width(), self.dim + 2);
        let pool = (m + m / 2 + PROBE_MARGIN).min(nlist);
        let exact = self.probe_table();
        if pool.saturating_mul(8) > nlist {
            // A large share of the lists wanted (data without structure, a
            // selective filter): rescoring the pool would cost more than the
            // 8-bit pass saves (1M Gaussian at 256 of 4,000 lists: 12%).
            let refs: Vec<&[f32]> = points.iter().map(|p| &p.1[..]).collect();
            return match refs[..] {
                [one] => vec![exact.top_k(one, m, &[])],
                _ => exact.top_k_batch(&refs, &vec![m; refs.len()], &vec![&[][..]; refs.len()]),
            };
        }
        let mut out = vec![Vec::new(); points.len()];
        for (kind, codes) in self.probe8.iter().enumerate() {
            let at: Vec<usize> = (0..points.len()).filter(|&i| points[i].0 == kind).collect();
            if at.is_empty() {
                continue;
            }
            let scaled: Vec<Vec<f32>> = at
                .iter()
                .map(|&i| {
                    let p = &points[i].1;
                    let inv = if p[n] > 0.0 { 1.0 / p[n] } else { 1.0 };
                    p[..w].iter().map(|v| v * inv).collect()
                })
                .collect();
            let refs: Vec<&[f32]> = scaled.iter().map(Vec::as_slice).collect();
            let found =
                codes.top_k_batch(&refs, &vec![pool; refs.len()], &vec![&[][..]; refs.len()]);
            for (&i, c) in at.iter().zip(found) {
                out[i] = exact.rescore(&points[i].1, m, &c);
            }
        }
        out
    }

    /// A query's list ranking in `order` from the rankings of its probe
    /// points (taken from `found`, as [`IvfIndex::probe_points`] gave them).
    fn ranking(&self, order: Order, found: &mut impl Iterator<Item = Vec<Scored>>) -> Vec<Scored> {
        let first = found.next().unwrap_or_default();
        match order {
            Order::Both => merge_probes(first, found.next().unwrap_or_default(), self.nlist()),
            Order::Typical | Order::Pole => first,
        }
    }

    /// The `m` best lists for `q` in its [`Order`].
    fn coarse(&self, q: &IvfQuery<'_>, m: usize) -> Vec<Scored> {
        let order = self.order_for(q);
        let points = self.probe_points(q.vector, order);
        self.ranking(order, &mut self.rank_points(&points, m).into_iter())
    }

    /// How many lists to rank up front for `q`: `nprobe`, widened by the
    /// filter's selectivity, with room for exclusions.
    fn first_rank(&self, q: &IvfQuery<'_>) -> usize {
        let lists = self.planned_lists(q).max(self.nprobe);
        let want = (lists as f64 / self.share(q).sqrt() * 1.25).ceil() as usize + 4;
        want.min(self.nlist())
    }

    /// Exact top-`k` of every query (see the module documentation), the
    /// queries split across threads; the same result whatever the thread
    /// count or batch. `exact` is the table the index was built from.
    pub fn search(
        &self,
        exact: &ItemTable<'_>,
        queries: &[IvfQuery<'_>],
    ) -> Result<Vec<Vec<Scored>>> {
        self.check_table(exact)?;
        for (j, q) in queries.iter().enumerate() {
            if q.vector.len() != self.dim {
                return Err(Error::InvalidInput(format!(
                    "query {j} has {} dimensions, the index {}",
                    q.vector.len(),
                    self.dim
                )));
            }
        }
        const CHUNK: usize = 64;
        Ok(queries
            .par_chunks(CHUNK)
            .flat_map_iter(|chunk| self.search_chunk(exact, chunk))
            .collect())
    }

    /// One query on the calling thread.
    pub fn search_one(&self, exact: &ItemTable<'_>, q: &IvfQuery<'_>) -> Result<Vec<Scored>> {
        self.check_table(exact)?;
        if q.vector.len() != self.dim {
            return Err(Error::DimensionMismatch {
                expected: self.dim,
                got: q.vector.len(),
            });
        }
        Ok(self.search_chunk(exact, std::slice::from_ref(q)).remove(0))
    }

    /// A chunk of queries: plans, then each list scanned once for every
    /// query of the chunk that probes it; then, for a query with exclusions,
    /// a second round deeper by the share of its best candidates it excludes;
    /// then exact rescoring.
    fn search_chunk(&self, exact: &ItemTable<'_>, chunk: &[IvfQuery<'_>]) -> Vec<Vec<Scored>> {
        let groups = self
            .lists
            .first()
            .map_or(self.dim.div_ceil(4), |l| l.codes.groups());
        let qq: Vec<Query> = chunk
            .iter()
            .map(|q| quantize_query(q.vector, groups))
            .collect();
        let widest = chunk.iter().map(|q| self.first_rank(q)).max().unwrap_or(1);
        // The probe points of every query its order uses (for both: the
        // typical point, then the pole).
        let orders: Vec<Order> = chunk.iter().map(|q| self.order_for(q)).collect();
        let points: Vec<(usize, Vec<f32>)> = chunk
            .iter()
            .zip(&orders)
            .flat_map(|(q, &order)| self.probe_points(q.vector, order))
            .collect();
        let mut found = self.rank_points(&points, widest).into_iter();
        let ranked: Vec<Vec<Scored>> = orders
            .iter()
            .map(|&order| self.ranking(order, &mut found))
            .collect();
        let mut probes: Vec<Probe> = chunk
            .iter()
            .zip(ranked)
            .map(|(q, r)| self.plan(q, r))
            .collect();
        let mut tops: Vec<TopK> = chunk
            .iter()
            .map(|q| {
                TopK::new(
                    q.k.saturating_mul(self.oversample)
                        .saturating_add(POOL_MARGIN)
                        .min(self.len()),
                )
            })
            .collect();
        let pairs = |probes: &[Probe], from: &[usize]| -> Vec<(u32, u32)> {
            let mut p: Vec<(u32, u32)> = probes
                .iter()
                .zip(from)
                .enumerate()
                .flat_map(|(j, (pr, &f))| pr.lists[f..].iter().map(move |&l| (l, j as u32)))
                .collect();
            p.sort_unstable();
            p
        };
        self.scan_pairs(
            &pairs(&probes, &vec![0; chunk.len()]),
            chunk,
            &qq,
            &mut tops,
        );
        // Exclusions remove a query's best items: its k-th admissible item lies
        // deeper, by as many excluded items as score above it. Count those
        // (exactly, against the k-th candidate so far) and scan deeper in
        // proportion.
        let scanned: Vec<usize> = probes.iter().map(|p| p.lists.len()).collect();
        let mut deeper = false;
        for (j, q) in chunk.iter().enumerate() {
            if q.exclude.is_empty() || q.k == 0 {
                continue;
            }
            let Some(kth) = tops[j].kth(q.k) else {
                continue;
            };
            let allowed: Vec<u32> = q
                .exclude
                .iter()
                .copied()
                .filter(|&i| (i as usize) < self.len() && q.filter.is_none_or(|f| f.allows(i)))
                .collect();
            let above = self
                .exact_scored(exact, q, &allowed)
                .iter()
                .filter(|s| s.score >= kth)
                .count();
            if above > 0 {
                let lists = self.lists_for(&self.bands, (q.k + above) as f64 / self.share(q), q.k);
                self.extend(&mut probes[j], q, lists, self.admissible_target(lists, q));
                deeper |= probes[j].lists.len() > scanned[j];
            }
        }
        if deeper {
            self.scan_pairs(&pairs(&probes, &scanned), chunk, &qq, &mut tops);
        }
        tops.into_iter()
            .zip(chunk)
            .map(|(top, q)| self.rescore(exact, q, top.into_unsorted()))
            .collect()
    }

    /// Scans each list of `pairs` (list, query of the chunk; sorted) once for
    /// all its queries.
    fn scan_pairs(
        &self,
        pairs: &[(u32, u32)],
        chunk: &[IvfQuery<'_>],
        qq: &[Query],
        tops: &mut [TopK],
    ) {
        let mut at = 0;
        let mut who: Vec<usize> = Vec::new();
        let mut qs: Vec<&Query> = Vec::new();
        let mut floors: Vec<f32> = Vec::new();
        while at < pairs.len() {
            let l = pairs[at].0;
            who.clear();
            while at < pairs.len() && pairs[at].0 == l {
                who.push(pairs[at].1 as usize);
                at += 1;
            }
            qs.clear();
            qs.extend(who.iter().map(|&j| &qq[j]));
            floors.clear();
            floors.extend(who.iter().map(|&j| tops[j].floor()));
            // The next list's loads start while this one is scanned (lists
            // are scattered in memory: the hardware prefetcher cannot guess
            // the next one; +2.5% queries/s at 2M).
            if let Some(&(next, _)) = pairs.get(at) {
                self.lists[next as usize].codes.prefetch();
            }
            let list = &self.lists[l as usize];
            let mut sink = ListSink {
                ids: &list.ids,
                who: &who,
                tops,
                queries: chunk,
            };
            list.codes
                .scan(&qs, 0, list.ids.len(), &mut floors, &mut sink);
        }
    }

    /// Items (built or added) with their exact scores for `q`, in no
    /// particular order: built items are scored on `exact` (rows prefetched),
    /// added ones on their kept rows.
    fn exact_scored(&self, exact: &ItemTable<'_>, q: &IvfQuery<'_>, items: &[u32]) -> Vec<Scored> {
        let (old, new): (Vec<u32>, Vec<u32>) =
            items.iter().partition(|&&i| (i as usize) < self.base);
        prefetch_rows(exact.factors(), self.dim, &old);
        let mut scored: Vec<Scored> = old
            .iter()
            .zip(exact.scores_of(q.vector, &old))
            .map(|(&item, score)| Scored { item, score })
            .collect();
        if !new.is_empty() {
            let fresh = ItemTable::new(
                self.dim,
                &self.fresh,
                self.with_bias.then_some(&self.fresh_bias[..]),
            );
            let local: Vec<u32> = new.iter().map(|&i| i - self.base as u32).collect();
            scored.extend(
                new.iter()
                    .zip(fresh.scores_of(q.vector, &local))
                    .map(|(&item, score)| Scored { item, score }),
            );
        }
        scored
    }

    /// The exact top-`k` of the candidates.
    fn rescore(
        &self,
        exact: &ItemTable<'_>,
        q: &IvfQuery<'_>,
        candidates: Vec<Scored>,
    ) -> Vec<Scored> {
        let ids: Vec<u32> = candidates.iter().map(|c| c.item).collect();
        let mut top = TopK::new(q.k);
        for s in self.exact_scored(exact, q, &ids) {
            top.push(s.item, s.score);
        }
        top.into_sorted()
    }

    /// The smallest `nprobe` whose recall@`k` against the exact top-`k` of
    /// `sample` queries reaches `target` (all lists if none does) — the
    /// one-sided 95% lower confidence bound of the mean over the sample, not
    /// the sample's mean, so that queries outside the sample reach it too;
    /// sets it and returns it with that bound. Then the same for the
    /// whole top `2k`, `4k`, … (up to `16k`, at most an eighth of the
    /// catalogue), and for their `k` deepest items: a query whose filter
    /// spreads its admissible items over such a depth scans as many lists as
    /// the first table says, one whose exclusions pushed its items down to it
    /// as the second says.
    pub fn tune_nprobe(
        &mut self,
        exact: &ItemTable<'_>,
        sample: &[&[f32]],
        k: usize,
        target: f64,
    ) -> Result<(usize, f64)> {
        self.check_table(exact)?;
        if sample.is_empty() || k == 0 {
            return Err(Error::InvalidInput(
                "tuning nprobe needs sample queries and k ≥ 1".into(),
            ));
        }
        // The order that reaches the target with the fewest lists, and of
        // those the higher recall; both points only if strictly fewer lists
        // (they cost two probes).
        let mut best = (Order::Both, usize::MAX, 0.0);
        let mut pole_first = 1;
        // The sample's plain queries (no filter, k) take the order tried.
        self.plain_k = k;
        let truth = sample_truth(exact, sample, k);
        for order in [Order::Typical, Order::Pole, Order::Both] {
            self.order = order;
            let (n, r) = self.smallest_nprobe(exact, sample, &truth, k, target, 1)?;
            if order == Order::Pole {
                pole_first = n;
            }
            let better = n < best.1 || (n == best.1 && r > best.2 && order != Order::Both);
            if better {
                best = (order, n, r);
            }
        }
        // Deeper searches (filters, exclusions, a larger k) take the pole's
        // order, the exact reduction, whose lists cover every depth: its
        // tables, from its own first entry.
        let (depths, bands) = self.depth_tables(exact, sample, k, target, pole_first)?;
        let (order, first, recall_k) = best;
        (self.order, self.nprobe, self.depths, self.bands) = (order, first, depths, bands);
        Ok((first, recall_k))
    }

    /// The two depth tables (see [`IvfIndex::tune_nprobe`]) in the current
    /// order, `first` lists reaching the target at depth `k`.
    #[allow(clippy::type_complexity)]
    fn depth_tables(
        &mut self,
        exact: &ItemTable<'_>,
        sample: &[&[f32]],
        k: usize,
        target: f64,
        first: usize,
    ) -> Result<(Vec<(usize, usize)>, Vec<(usize, usize)>)> {
        let (mut depths, mut bands) = (vec![(k, first)], vec![(k, first)]);
        let mut d = 2 * k;
        // Deeper tables on half the sample: they cost more per query.
        let half = &sample[..sample.len().div_ceil(2)];
        while d <= 16 * k && d <= self.len() / 8 {
            let from = depths.last().map_or(1, |x| x.1);
            let truth = sample_truth(exact, half, d);
            let (all, _) = self.smallest_nprobe(exact, half, &truth, d, target, from)?;
            depths.push((d, all));
            let from = bands.last().map_or(1, |x| x.1).max(all);
            let (band, _) = self.smallest_nprobe(exact, half, &truth, k, target, from)?;
            bands.push((d, band));
            if band >= self.nlist() {
                break;
            }
            d *= 2;
        }
        Ok((depths, bands))
    }

    /// The smallest nprobe ≥ `from` at which a top-`depth` search finds
    /// `target` (the one-sided 95% lower confidence bound of the mean over
    /// the sample, so that other queries reach it too) of the `band` deepest
    /// items of `truth`, the exact top-`depth` of `sample` ([`sample_truth`];
    /// doubling, then bisection), and that share. The deepest band is what a
    /// query needs when its exclusions removed the items above it, and the
    /// hardest part of the top-`depth` to find.
    fn smallest_nprobe(
        &mut self,
        exact: &ItemTable<'_>,
        sample: &[&[f32]],
        truth: &[Vec<Scored>],
        band: usize,
        target: f64,
        from: usize,
    ) -> Result<(usize, f64)> {
        let depth = truth.iter().map(Vec::len).max().unwrap_or(0);
        let truth: Vec<Vec<Scored>> = truth
            .iter()
            .map(|t| t[t.len().saturating_sub(band)..].to_vec())
            .collect();
        // Below the top band, ask for a quarter more than the depth: a real
        // query's deep items are its top k, with its candidate margin, not the
        // last ranks of a longer list, where the 8-bit scores' error would
        // push some out of the candidates whatever the lists scanned.
        let k = if band < depth {
            depth + depth / 4
        } else {
            depth
        };
        let qs: Vec<IvfQuery<'_>> = sample
            .iter()
            .map(|v| IvfQuery {
                vector: v,
                k,
                exclude: &[],
                filter: None,
            })
            .collect();
        let nlist = self.nlist();
        let mut recall_at = |nprobe: usize| -> Result<f64> {
            self.set_nprobe(nprobe);
            Ok(recall_lower_bound(&self.search(exact, &qs)?, &truth))
        };
        let (mut lo, mut hi) = (from.saturating_sub(1), from.clamp(1, nlist));
        let mut at_hi;
        loop {
            at_hi = recall_at(hi)?;
            if at_hi >= target || hi >= nlist {
                break;
            }
            lo = hi;
            hi = (hi * 2).min(nlist);
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            let r = recall_at(mid)?;
            if r >= target {
                hi = mid;
                at_hi = r;
            } else {
                lo = mid;
            }
        }
        Ok((hi, at_hi))
    }
}

/// The exact top-`depth` of every sample query.
fn sample_truth(exact: &ItemTable<'_>, sample: &[&[f32]], depth: usize) -> Vec<Vec<Scored>> {
    let ex: Vec<&[u32]> = vec![&[]; sample.len()];
    exact.top_k_batch(sample, &vec![depth; sample.len()], &ex)
}

/// Which half of `rows` (`d2` values each) each row falls in: above or below
/// the median of their projections on the principal direction (by power
/// iteration from a fixed start; ties by row order), so the halves differ in
/// size by at most one.
fn halves(rows: &[f32], d2: usize) -> Vec<bool> {
    let n = rows.len() / d2;
    let mut mean = vec![0f64; d2];
    for r in rows.chunks_exact(d2) {
        for (m, &v) in mean.iter_mut().zip(r) {
            *m += v as f64 / n as f64;
        }
    }
    let mut dir: Vec<f64> = (0..d2).map(|d| 1.0 + d as f64 / d2 as f64).collect();
    for _ in 0..20 {
        let mut next = vec![0f64; d2];
        for r in rows.chunks_exact(d2) {
            let p: f64 = r
                .iter()
                .zip(&mean)
                .zip(&dir)
                .map(|((&v, m), w)| (v as f64 - m) * w)
                .sum();
            for ((x, &v), m) in next.iter_mut().zip(r).zip(&mean) {
                *x += p * (v as f64 - m);
            }
        }
        let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            break;
        }
        dir = next.into_iter().map(|x| x / norm).collect();
    }
    let proj: Vec<f64> = rows
        .chunks_exact(d2)
        .map(|r| {
            r.iter()
                .zip(&mean)
                .zip(&dir)
                .map(|((&v, m), w)| (v as f64 - m) * w)
                .sum()
        })
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| proj[a].total_cmp(&proj[b]).then(a.cmp(&b)));
    let mut upper = vec![false; n];
    for &i in &order[n / 2..] {
        upper[i] = true;
    }
    upper
}

/// `−|c|²/2` of each row of `d2` values.
fn half_norms(centroids: &[f32], d2: usize) -> Vec<f32> {
    centroids
        .chunks_exact(d2)
        .map(|c| (-0.5 * c.iter().map(|&v| v as f64 * v as f64).sum::<f64>()) as f32)
        .collect()
}

/// A list to split for an empty one: drawn with probability ∝ (size − 1).
fn pick_large(counts: &[usize], rng: &mut SplitMix) -> usize {
    let total: usize = counts.iter().map(|&c| c.saturating_sub(1)).sum();
    if total == 0 {
        return counts
            .iter()
            .enumerate()
            .max_by_key(|&(_, c)| *c)
            .map_or(0, |(i, _)| i);
    }
    let mut r = rng.below(total as u64) as usize;
    for (i, &c) in counts.iter().enumerate() {
        let w = c.saturating_sub(1);
        if r < w {
            return i;
        }
        r -= w;
    }
    counts.len() - 1
}

/// The mean per-query recall minus 1.645 standard errors.
fn recall_lower_bound(got: &[Vec<Scored>], truth: &[Vec<Scored>]) -> f64 {
    let per: Vec<f64> = got
        .iter()
        .zip(truth)
        .filter(|(_, t)| !t.is_empty())
        .map(|(g, t)| recall(std::slice::from_ref(g), std::slice::from_ref(t)))
        .collect();
    let n = per.len() as f64;
    if n < 2.0 {
        return per.first().copied().unwrap_or(1.0);
    }
    let mean = per.iter().sum::<f64>() / n;
    let var = per.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
    mean - 1.645 * (var / n).sqrt()
}

/// Share of the true lists' items found, all lists pooled (ids only).
pub fn recall(got: &[Vec<Scored>], truth: &[Vec<Scored>]) -> f64 {
    let (mut hit, mut all) = (0usize, 0usize);
    for (g, t) in got.iter().zip(truth) {
        let mut want: Vec<u32> = t.iter().map(|s| s.item).collect();
        want.sort_unstable();
        hit += g
            .iter()
            .filter(|s| want.binary_search(&s.item).is_ok())
            .count();
        all += t.len();
    }
    if all == 0 {
        1.0
    } else {
        hit as f64 / all as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` items around `centres` random centres (un-normalised: each item
    /// scaled by a factor in [0.5, 2)), biases in [-0.25, 0.25); and queries
    /// drawn the same way.
    fn clustered(n: usize, dim: usize, centres: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = SplitMix::new(seed, 1, 2);
        let c: Vec<f32> = (0..centres * dim).map(|_| 2.0 * rng.centred()).collect();
        let mut x = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let k = rng.below(centres as u64) as usize;
            let scale = 0.5 + 1.5 * (rng.centred() + 0.5);
            for d in 0..dim {
                x.push(scale * (c[k * dim + d] + 0.35 * rng.centred()));
            }
        }
        let b = (0..n).map(|_| 0.5 * rng.centred()).collect();
        (x, b)
    }

    fn queries(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let (q, _) = clustered(n, dim, 64, seed);
        q.chunks(dim).map(<[f32]>::to_vec).collect()
    }

    /// Lists the first round of `q`'s probe takes.
    fn lists_planned(index: &IvfIndex, q: &IvfQuery<'_>) -> usize {
        index.plan(q, index.coarse(q, index.nlist())).lists.len()
    }

    fn plain<'a>(qs: &'a [Vec<f32>], k: usize) -> Vec<IvfQuery<'a>> {
        qs.iter()
            .map(|v| IvfQuery {
                vector: v,
                k,
                exclude: &[],
                filter: None,
            })
            .collect()
    }

    #[test]
    fn the_8_bit_probe_ranks_lists_as_the_f32_probe_table() -> Result<()> {
        // Items of norms spread 4× with biases, queries of other norms: the
        // 8-bit tables code the item part and bias, the rest is per-list.
        let (n, dim) = (30_000, 24);
        for with_bias in [true, false] {
            let (x, b) = clustered(n, dim, 64, 21);
            let t = ItemTable::new(dim, &x, with_bias.then_some(&b[..]));
            let index = IvfIndex::build(&t, &IvfParams::default())?;
            let exact = index.probe_table();
            let qs = queries(150, dim, 22);
            for (j, q) in qs.iter().enumerate() {
                let q: Vec<f32> = q.iter().map(|v| v * (0.3 + 0.02 * j as f32)).collect();
                let points = index.probe_points(&q, Order::Both);
                for m in [1, 6, 40, index.nlist()] {
                    let got = index.rank_points(&points, m);
                    for (kind, g) in got.iter().enumerate() {
                        assert_eq!(points[kind].0, kind);
                        let want = exact.top_k(&points[kind].1, m, &[]);
                        assert_eq!(g, &want, "bias {with_bias}, query {j}, kind {kind}, m {m}");
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn recall_holds_on_unnormalised_vectors_with_biases_and_scores_are_exact() -> Result<()> {
        let (n, dim, k) = (20_000, 16, 50);
        let (x, b) = clustered(n, dim, 64, 3);
        let t = ItemTable::new(dim, &x, Some(&b));
        let mut index = IvfIndex::build(&t, &IvfParams::default())?;
        assert_eq!(index.len(), n);
        assert!(index.nlist() > 100, "{} lists", index.nlist());
        let sample = queries(100, dim, 4);
        let refs: Vec<&[f32]> = sample.iter().map(Vec::as_slice).collect();
        let (nprobe, r) = index.tune_nprobe(&t, &refs, k, 0.95)?;
        assert!(
            r >= 0.95 && nprobe < index.nlist() / 4,
            "nprobe {nprobe}, recall {r}"
        );
        // Fresh queries: recall holds, and the scores are the exact ones.
        let qs = queries(200, dim, 5);
        let got = index.search(&t, &plain(&qs, k))?;
        let refs: Vec<&[f32]> = qs.iter().map(Vec::as_slice).collect();
        let truth = t.top_k_batch(&refs, &vec![k; qs.len()], &vec![&[][..]; qs.len()]);
        let r = recall(&got, &truth);
        assert!(r >= 0.93, "recall {r} on fresh queries");
        for (g, q) in got.iter().zip(&qs) {
            assert_eq!(g.len(), k);
            let ids: Vec<u32> = g.iter().map(|s| s.item).collect();
            let want = t.scores_of(q, &ids);
            for (s, w) in g.iter().zip(want) {
                assert_eq!(s.score.to_bits(), w.to_bits());
            }
            assert!(g.windows(2).all(|w| w[0].score >= w[1].score));
        }
        // Scanning a small share of the catalogue, not all of it.
        let probed = lists_planned(&index, &plain(&qs, k)[0]);
        assert!(
            probed * 8 < index.nlist(),
            "{probed} of {} lists",
            index.nlist()
        );
        Ok(())
    }

    #[test]
    fn results_do_not_depend_on_threads_or_batching() -> Result<()> {
        let (n, dim, k) = (6_000, 12, 20);
        let (x, b) = clustered(n, dim, 32, 8);
        let t = ItemTable::new(dim, &x, Some(&b));
        let qs = queries(150, dim, 9);
        let run = |threads: usize| -> Result<(IvfIndex, Vec<Vec<Scored>>)> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| Error::InvalidInput(e.to_string()))?;
            pool.install(|| {
                let index = IvfIndex::build(&t, &IvfParams::default())?;
                let r = index.search(&t, &plain(&qs, k))?;
                Ok((index, r))
            })
        };
        let (a, ra) = run(1)?;
        let (bb, rb) = run(3)?;
        assert_eq!(a.centroids, bb.centroids);
        assert_eq!(a.item_list, bb.item_list);
        assert_eq!(ra, rb);
        for (q, want) in plain(&qs, k).iter().zip(&ra).take(20) {
            assert_eq!(&a.search_one(&t, q)?, want);
        }
        Ok(())
    }

    #[test]
    fn exclusions_and_a_selective_filter_keep_recall() -> Result<()> {
        let (n, dim, k) = (30_000, 16, 100);
        let (x, b) = clustered(n, dim, 64, 11);
        let t = ItemTable::new(dim, &x, Some(&b));
        let mut index = IvfIndex::build(&t, &IvfParams::default())?;
        let qs = queries(60, dim, 12);
        let refs: Vec<&[f32]> = qs.iter().map(Vec::as_slice).collect();
        index.tune_nprobe(&t, &refs, k, 0.95)?;
        // A "surface" keeping a fifth of the catalogue (by a hash of the id).
        let keep = |i: u32| (i.wrapping_mul(2_654_435_761) >> 7).is_multiple_of(5);
        let filter = index.filter(keep);
        assert!((filter.allowed() as f64 / n as f64 - 0.2).abs() < 0.02);
        // Each user excludes 1,000 videos: the 500 best for them and 500 others.
        let all = t.top_k_batch(&refs, &vec![500; qs.len()], &vec![&[][..]; qs.len()]);
        let excludes: Vec<Vec<u32>> = all
            .iter()
            .enumerate()
            .map(|(j, top)| {
                let mut e: Vec<u32> = top.iter().map(|s| s.item).collect();
                e.extend((0..500).map(|m| ((j * 7919 + m * 104_729) % n) as u32));
                e.sort_unstable();
                e.dedup();
                e
            })
            .collect();
        let iq: Vec<IvfQuery<'_>> = qs
            .iter()
            .zip(&excludes)
            .map(|(v, e)| IvfQuery {
                vector: v,
                k,
                exclude: e,
                filter: Some(&filter),
            })
            .collect();
        let got = index.search(&t, &iq)?;
        // The truth: the exact top-k among allowed, non-excluded items.
        let truth: Vec<Vec<Scored>> = qs
            .iter()
            .zip(&excludes)
            .map(|(q, e)| {
                let mut ex: Vec<u32> = (0..n as u32).filter(|&i| !keep(i)).collect();
                ex.extend(e);
                ex.sort_unstable();
                ex.dedup();
                t.top_k(q, k, &ex)
            })
            .collect();
        for (g, e) in got.iter().zip(&excludes) {
            assert_eq!(g.len(), k);
            assert!(g
                .iter()
                .all(|s| keep(s.item) && e.binary_search(&s.item).is_err()));
        }
        let r = recall(&got, &truth);
        assert!(r >= 0.95, "filtered recall {r}");
        // The probe widened: about five times the unfiltered lists.
        let wide = lists_planned(&index, &iq[0]);
        assert!(
            wide >= 4 * index.nprobe(),
            "{wide} lists for nprobe {}",
            index.nprobe()
        );
        Ok(())
    }

    #[test]
    fn added_items_are_found_without_a_rebuild() -> Result<()> {
        let (n, dim, k) = (30_000, 16, 100);
        let (x, b) = clustered(n, dim, 64, 21);
        let old = n * 99 / 100;
        let base = ItemTable::new(dim, &x[..old * dim], Some(&b[..old]));
        let mut index = IvfIndex::build(&base, &IvfParams::default())?;
        let qs = queries(300, dim, 22);
        let refs: Vec<&[f32]> = qs.iter().map(Vec::as_slice).collect();
        index.tune_nprobe(&base, &refs[..60], k, 0.95)?;
        let first = index.add(&base, &x[old * dim..], Some(&b[old..]))?;
        assert_eq!(first as usize, old);
        assert_eq!(index.len(), n);
        let full = ItemTable::new(dim, &x, Some(&b));
        let truth = full.top_k_batch(&refs, &vec![k; qs.len()], &vec![&[][..]; qs.len()]);
        let got = index.search(&base, &plain(&qs, k))?;
        // Queries whose true top-k holds new items.
        let with_new: Vec<usize> = (0..qs.len())
            .filter(|&j| truth[j].iter().any(|s| s.item as usize >= old))
            .collect();
        assert!(with_new.len() >= 30, "{} queries", with_new.len());
        let g: Vec<Vec<Scored>> = with_new.iter().map(|&j| got[j].clone()).collect();
        let w: Vec<Vec<Scored>> = with_new.iter().map(|&j| truth[j].clone()).collect();
        let r = recall(&g, &w);
        assert!(r >= 0.95, "recall {r} where new items belong");
        // New items are scored exactly too.
        for (gj, wj) in g.iter().zip(&w) {
            for s in gj.iter().filter(|s| s.item as usize >= old) {
                if let Some(t) = wj.iter().find(|t| t.item == s.item) {
                    assert_eq!(t.score.to_bits(), s.score.to_bits());
                }
            }
        }
        Ok(())
    }

    #[test]
    fn rebalancing_splits_lists_that_fresh_items_crowded() -> Result<()> {
        let (n, dim, k) = (10_000, 8, 20);
        let (x, b) = clustered(n, dim, 32, 31);
        let t = ItemTable::new(dim, &x, Some(&b));
        let mut index = IvfIndex::build(&t, &IvfParams::default())?;
        let built = index.nlist();
        let longest_built = index.lists.iter().map(|l| l.ids.len()).max().unwrap_or(0);
        // 3,000 fresh items near one point, in batches: without splitting,
        // one list would hold them all (10× the longest built list).
        let mut rng = SplitMix::new(5, 5, 5);
        let centre: Vec<f32> = x[..dim].to_vec();
        let fresh: Vec<f32> = (0..3_000 * dim)
            .map(|j| centre[j % dim] + 0.05 * rng.centred())
            .collect();
        for batch in fresh.chunks(500 * dim) {
            index.add(&t, batch, None)?;
        }
        let longest = index.lists.iter().map(|l| l.ids.len()).max().unwrap_or(0);
        assert!(index.nlist() > built, "add split the crowded list");
        assert!(
            longest <= 2 * longest_built,
            "{longest} items in a list, {longest_built} at build"
        );
        // A manual rebalance to a tighter bound.
        let lists = index.nlist();
        let split = index.rebalance(&t, 2.0)?;
        assert!(index.nlist() == lists + split);
        let mean = index.len() as f64 / lists as f64;
        let longest = index.lists.iter().map(|l| l.ids.len()).max().unwrap_or(0);
        assert!(
            longest as f64 <= 2.0 * mean || longest < 2 * PANEL,
            "{longest} items in a list, mean {mean}"
        );
        // Every item is still in exactly one list, the one item_list names.
        let mut seen = vec![0u8; index.len()];
        for (l, list) in index.lists.iter().enumerate() {
            assert_eq!(list.ids.len(), list.codes.len());
            for &i in &list.ids {
                seen[i as usize] += 1;
                assert_eq!(index.item_list[i as usize] as usize, l);
            }
        }
        assert!(seen.iter().all(|&s| s == 1));
        // And queries still find the crowd.
        let mut all = x.clone();
        all.extend_from_slice(&fresh);
        let mut ball = b.clone();
        ball.resize(index.len(), 0.0);
        let full = ItemTable::new(dim, &all, Some(&ball));
        let q = vec![centre.clone()];
        let got = index.search(&t, &plain(&q, k))?;
        let truth = vec![full.top_k(&centre, k, &[])];
        assert!(recall(&got, &truth) >= 0.9);
        Ok(())
    }

    #[test]
    fn wrong_tables_and_queries_are_errors() -> Result<()> {
        let (x, b) = clustered(2_000, 8, 8, 41);
        let t = ItemTable::new(8, &x, Some(&b));
        let index = IvfIndex::build(&t, &IvfParams::default())?;
        let other = ItemTable::new(8, &x[..800], None);
        let q = vec![0.5f32; 8];
        let iq = IvfQuery {
            vector: &q,
            k: 5,
            exclude: &[],
            filter: None,
        };
        assert!(
            matches!(index.search_one(&other, &iq), Err(Error::InvalidInput(m)) if m.contains("2000 items"))
        );
        let short = [1.0f32; 7];
        let bad = IvfQuery {
            vector: &short,
            ..iq
        };
        assert!(index.search(&t, &[iq, bad]).is_err());
        assert!(IvfIndex::build(&ItemTable::new(8, &[], None), &IvfParams::default()).is_err());
        let zero = IvfParams {
            nprobe: 0,
            ..IvfParams::default()
        };
        assert!(matches!(
            IvfIndex::build(&t, &zero),
            Err(Error::InvalidParam {
                field: "nprobe",
                ..
            })
        ));
        let mut index = index;
        assert!(index.add(&t, &[1.0; 7], None).is_err());
        assert!(index.add(&other, &[1.0; 8], None).is_err(), "another table");
        assert!(matches!(
            index.add(&t, &[f32::NAN; 8], None),
            Err(Error::NotFinite { .. })
        ));
        assert_eq!(index.len(), 2_000, "a refused add adds nothing");
        Ok(())
    }

    /// An index over 20,000 clustered items with a tuned depth table, 200
    /// added items, and queries with a filter and exclusions.
    type Fixture = (Vec<f32>, Vec<f32>, IvfIndex, Vec<Vec<f32>>);

    fn saved_fixture() -> Result<Fixture> {
        let (n, dim) = (20_000, 16);
        let (x, b) = clustered(n, dim, 64, 51);
        let t = ItemTable::new(dim, &x, Some(&b));
        let mut index = IvfIndex::build(&t, &IvfParams::default())?;
        let qs = queries(120, dim, 52);
        let refs: Vec<&[f32]> = qs.iter().map(Vec::as_slice).collect();
        index.tune_nprobe(&t, &refs[..60], 50, 0.95)?;
        let (fresh, _) = clustered(200, dim, 64, 53);
        index.add(&t, &fresh, Some(&vec![0.25; 200]))?;
        Ok((x, b, index, qs))
    }

    #[test]
    fn a_saved_index_loads_and_answers_exactly_as_the_built_one() -> Result<()> {
        let (x, b, index, qs) = saved_fixture()?;
        let t = ItemTable::new(16, &x, Some(&b));
        let dir = tempfile::tempdir().map_err(|e| Error::InvalidInput(e.to_string()))?;
        let path = dir.path().join("m.arrow.ivf");
        index.save(&path)?;
        let back = IvfIndex::load(&path, &t)?;
        assert_eq!(
            (back.nlist(), back.len(), back.nprobe(), back.bytes()),
            (index.nlist(), index.len(), index.nprobe(), index.bytes())
        );
        assert_eq!((&back.depths, &back.bands), (&index.depths, &index.bands));
        assert!(!index.depths.is_empty(), "the tuned tables are saved");
        let filter = index.filter(|i| i % 3 == 0);
        let filter_back = back.filter(|i| i % 3 == 0);
        let ex: Vec<u32> = (0..400).map(|i| i * 7).collect();
        for (f, fb) in [(None, None), (Some(&filter), Some(&filter_back))] {
            let mk = |filter| -> Vec<IvfQuery<'_>> {
                qs.iter()
                    .enumerate()
                    .map(|(j, v)| IvfQuery {
                        vector: v,
                        k: 50,
                        exclude: if j % 2 == 0 { &ex[..] } else { &[] },
                        filter,
                    })
                    .collect()
            };
            let want = index.search(&t, &mk(f))?;
            assert_eq!(back.search(&t, &mk(fb))?, want);
            assert!(
                want.iter().flatten().any(|s| s.item as usize >= 20_000),
                "added items are found after the load too"
            );
        }
        Ok(())
    }

    #[test]
    fn a_stale_truncated_foreign_or_future_index_file_is_refused() -> Result<()> {
        let (x, b, index, _) = saved_fixture()?;
        let t = ItemTable::new(16, &x, Some(&b));
        let dir = tempfile::tempdir().map_err(|e| Error::InvalidInput(e.to_string()))?;
        let path = dir.path().join("m.arrow.ivf");
        index.save(&path)?;
        let refused =
            |p: &std::path::Path, t: &ItemTable<'_>, what: &str| match IvfIndex::load(p, t) {
                Err(Error::InvalidIndex { reason, .. }) => {
                    assert!(reason.contains(what), "{reason}")
                }
                other => panic!("{what}: {other:?}"),
            };
        // Another model: one value differs.
        let mut y = x.clone();
        y[12_345] += 1e-3;
        refused(&path, &ItemTable::new(16, &y, Some(&b)), "stale");
        refused(
            &path,
            &ItemTable::new(16, &x[..16 * 19_000], Some(&b[..19_000])),
            "has 19000",
        );
        refused(&path, &ItemTable::new(16, &x, None), "biases");
        // Truncated anywhere, or bytes flipped: an error, never a panic.
        let bytes = std::fs::read(&path).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let cut = dir.path().join("cut.ivf");
        for len in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&cut, &bytes[..len]).map_err(|e| Error::InvalidInput(e.to_string()))?;
            assert!(
                matches!(IvfIndex::load(&cut, &t), Err(Error::InvalidIndex { .. })),
                "cut at {len}"
            );
        }
        let mut rng = SplitMix::new(9, 9, 9);
        for _ in 0..40 {
            let mut b2 = bytes.clone();
            let at = rng.below(b2.len() as u64) as usize;
            b2[at] ^= 0x5a;
            std::fs::write(&cut, &b2).map_err(|e| Error::InvalidInput(e.to_string()))?;
            if let Ok(ix) = IvfIndex::load(&cut, &t) {
                // A flip in padding or a centroid value: still a consistent index.
                assert_eq!(ix.len(), index.len());
            }
        }
        // A future format version.
        let future = dir.path().join("future.ivf");
        index.save_version(&future, 9)?;
        refused(&future, &t, "format version 9 is not supported");
        // A model file, or any Arrow file that is not an index.
        let (m, _) = clustered(10, 4, 2, 1);
        let model = crate::Model {
            users: crate::IdMap::from_ids(vec![1]),
            items: crate::IdMap::from_ids((0..10).collect()),
            factors: crate::Factors {
                dim: 4,
                users: vec![0.0; 4],
                items: m,
                item_bias: vec![0.0; 10],
            },
            user_counts: vec![1],
            surfaces: None,
            user_keys: None,
            item_keys: None,
            item_counts: vec![1; 10],
            meta: Default::default(),
        };
        let model_path = dir.path().join("model.arrow");
        model.save(&model_path)?;
        refused(&model_path, &t, "not a reelkit IVF index");
        // An item in two lists.
        let mut twice = index.clone();
        let dup = twice.lists[1].ids[0];
        twice.lists[0].ids.push(dup);
        twice.save(&path)?;
        refused(&path, &t, "in two lists");
        // A missing file is an I/O error naming it.
        assert!(matches!(
            IvfIndex::load(&dir.path().join("none.ivf"), &t),
            Err(Error::Io { path, .. }) if path.ends_with("none.ivf")
        ));
        Ok(())
    }

    #[test]
    fn probe_orders_merge_in_turns_without_repeats() {
        let sc = |v: &[u32]| -> Vec<Scored> {
            v.iter().map(|&item| Scored { item, score: 0.0 }).collect()
        };
        let ids = |v: Vec<Scored>| -> Vec<u32> { v.iter().map(|s| s.item).collect() };
        assert_eq!(
            ids(merge_probes(sc(&[3, 1, 4]), sc(&[1, 5, 9, 2]), 10)),
            vec![3, 1, 5, 4, 9, 2]
        );
        assert_eq!(ids(merge_probes(sc(&[]), sc(&[7, 7]), 10)), vec![7]);
        // Long rankings (every list) take the bitmap path: the same rule.
        let a: Vec<u32> = (0..100).collect();
        let b: Vec<u32> = (0..100).rev().collect();
        let m = ids(merge_probes(sc(&a), sc(&b), 100));
        assert_eq!(m.len(), 100);
        assert_eq!(&m[..4], &[0, 99, 1, 98]);
    }
}
