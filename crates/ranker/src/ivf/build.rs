//! Building an index: seeded k-means on the augmented items, every item into
//! its nearest list, the probe tables.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::int8::Int8Table;
use crate::rng::SplitMix;
use crate::topk::{ItemTable, TableBound};

use super::*;

/// Lifts row `x` with bias `b` to `[x, b, √(R² − |x|² − b²)]` into `out`.
pub(super) fn augment(x: &[f32], b: f32, radius2: f64, out: &mut [f32]) {
    let d = x.len();
    out[..d].copy_from_slice(x);
    out[d] = b;
    let n2: f64 = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() + b as f64 * b as f64;
    out[d + 1] = (radius2 - n2).max(0.0).sqrt() as f32;
}

/// Nearest centroid (highest `x̃·c̃ − |c̃|²/2`, ties by lower index) of each
/// augmented row, in parallel chunks (results independent of the threads).
pub(super) fn assign(centroids: &ItemTable<'_>, rows: &[f32], d2: usize) -> Vec<u32> {
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
        index.tuning.longest_built = index.lists.iter().map(|l| l.ids.len()).max().unwrap_or(0);
        Ok(index)
    }

    pub(super) fn from_centroids(
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
            base: 0,
            fresh: Vec::new(),
            fresh_bias: Vec::new(),
            table_hash: 0,
            tuning: Tuning {
                with_bias,
                radius2,
                typical2,
                order: Order::Pole,
                plain_k: 0,
                nprobe: params.nprobe.max(1),
                oversample: params.oversample.max(1),
                seed: params.seed,
                depths: Vec::new(),
                bands: Vec::new(),
                longest_built: 0,
            },
        };
        index.derive_probe();
        index
    }

    /// The half norms, probe table and its bound, from the centroids (after
    /// they are set or split).
    pub(super) fn derive_probe(&mut self) {
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
        let lift = 2.0 * (self.tuning.radius2 - self.tuning.typical2).max(0.0).sqrt() as f32;
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
}

/// Which half of `rows` (`d2` values each) each row falls in: above or below
/// the median of their projections on the principal direction (by power
/// iteration from a fixed start; ties by row order), so the halves differ in
/// size by at most one.
pub(super) fn halves(rows: &[f32], d2: usize) -> Vec<bool> {
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
