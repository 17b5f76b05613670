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
//! items far from it; a filtered query needed many times the pole's time).
//! The recall each order reaches, and FAISS's inner-product quantizer's
//! (which ranks lists by `q̃·c̃`), are in BENCHMARKS.md (IVF section).
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

mod build;
mod file;
mod search;
mod tune;
mod update;

pub use tune::recall;

use crate::int8::Int8Table;
use crate::simd::PANEL;
use crate::topk::TableBound;

/// Candidates kept beyond `oversample·k` for exact rescoring, for the 8-bit
/// codes' error at the `k`-th place: the smallest margin that lost no recall
/// against 64 (BENCHMARKS.md, "Constants and choices measured").
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
    /// codes, limit recall (BENCHMARKS.md, "Constants and choices measured").
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
    /// Items of the table the index was built from; added items follow.
    base: usize,
    /// Rows and biases of added items.
    fresh: Vec<f32>,
    fresh_bias: Vec<f32>,
    /// XXH3 of the table the index was built from (an index file is loaded
    /// only against that table).
    table_hash: u64,
    tuning: Tuning,
}

/// What an index is besides its arrays and sizes: its geometry, its tuned
/// probe orders and its settings (saved in the index file as they are).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Tuning {
    with_bias: bool,
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
    oversample: usize,
    seed: u64,
    /// From [`IvfIndex::tune_nprobe`]: lists needed for the target recall of
    /// the top `depth` items, for doubling depths (empty: `nprobe` for every
    /// depth, widened in proportion).
    depths: Vec<(usize, usize)>,
    /// The same for the `k` deepest of the top `depth` (what a query needs
    /// when its exclusions removed the items above them).
    bands: Vec<(usize, usize)>,
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

impl IvfIndex {
    /// Coordinates of a centroid the 8-bit probe tables code: the item part,
    /// and the bias where items have one.
    fn code_width(&self) -> usize {
        self.dim + usize::from(self.tuning.with_bias)
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
        self.tuning.nprobe
    }

    /// Sets the lists a query scans (at least 1, at most all), for every
    /// depth (forgetting a tuned depth table).
    pub fn set_nprobe(&mut self, nprobe: usize) {
        self.tuning.nprobe = nprobe.clamp(1, self.nlist().max(1));
        self.tuning.depths.clear();
        self.tuning.bands.clear();
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
            _ => self.tuning.nprobe as f64 * (depth / k.max(1) as f64).max(1.0),
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
        match self.tuning.order {
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
                    + if self.tuning.with_bias {
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
}

#[cfg(test)]
mod tests;
