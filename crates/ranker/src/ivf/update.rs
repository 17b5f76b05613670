//! Changing an index after it is built: filters for it, fresh items, and
//! splitting lists they crowded.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::int8::Int8Table;
use crate::simd::PANEL;
use crate::topk::ItemTable;

use super::build::{assign, augment, halves};
use super::*;

impl IvfIndex {
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
                self.tuning.radius2,
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
        self.split_longer_than(exact, (2 * self.tuning.longest_built) as f64);
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
                    augment(row, b, self.tuning.radius2, &mut aug[r * d2..(r + 1) * d2]);
                }
                let side = halves(&aug, d2);
                let new = self.nlist() as u32;
                let mut parts = [
                    (
                        Int8Table::empty(self.dim, self.tuning.with_bias),
                        Vec::new(),
                        vec![0f64; d2],
                    ),
                    (
                        Int8Table::empty(self.dim, self.tuning.with_bias),
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

    pub(super) fn check_table(&self, exact: &ItemTable<'_>) -> Result<()> {
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
}
