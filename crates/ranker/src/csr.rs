//! Compressed sparse rows: the interaction matrix (users × items) and its transpose.

/// A sparse matrix with sorted, duplicate-free column indices in each row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Csr {
    n_cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl Csr {
    /// Builds from `(row, col, value)` triplets; duplicates are summed.
    pub fn from_triplets(
        n_rows: usize,
        n_cols: usize,
        rows: &[u32],
        cols: &[u32],
        vals: &[f32],
    ) -> Csr {
        debug_assert!(rows.len() == cols.len() && cols.len() == vals.len());
        let mut counts = vec![0usize; n_rows + 1];
        for &r in rows {
            counts[r as usize + 1] += 1;
        }
        for i in 0..n_rows {
            counts[i + 1] += counts[i];
        }
        let mut next = counts.clone();
        let mut indices = vec![0u32; rows.len()];
        let mut values = vec![0f32; rows.len()];
        for ((&r, &c), &v) in rows.iter().zip(cols).zip(vals) {
            let at = &mut next[r as usize];
            indices[*at] = c;
            values[*at] = v;
            *at += 1;
        }
        // Sort each row by column and merge duplicates.
        let mut indptr = Vec::with_capacity(n_rows + 1);
        indptr.push(0);
        let mut out_idx = Vec::with_capacity(indices.len());
        let mut out_val = Vec::with_capacity(values.len());
        let mut pairs: Vec<(u32, f32)> = Vec::new();
        for r in 0..n_rows {
            pairs.clear();
            pairs.extend(
                indices[counts[r]..counts[r + 1]]
                    .iter()
                    .copied()
                    .zip(values[counts[r]..counts[r + 1]].iter().copied()),
            );
            pairs.sort_unstable_by_key(|p| p.0);
            for &(c, v) in &pairs {
                if out_idx.len() > *indptr.last().unwrap_or(&0) && out_idx.last() == Some(&c) {
                    if let Some(last) = out_val.last_mut() {
                        *last += v;
                    }
                } else {
                    out_idx.push(c);
                    out_val.push(v);
                }
            }
            indptr.push(out_idx.len());
        }
        Csr {
            n_cols,
            indptr,
            indices: out_idx,
            values: out_val,
        }
    }

    /// The entries whose value `keep` accepts, in place of rebuilding from
    /// triplets: each row stays sorted and duplicate-free, so the result is
    /// the one `from_triplets` would build from the kept entries.
    pub fn filter(&self, keep: impl Fn(f32) -> bool) -> Csr {
        let mut indptr = Vec::with_capacity(self.indptr.len());
        indptr.push(0);
        let mut indices = Vec::with_capacity(self.nnz());
        let mut values = Vec::with_capacity(self.nnz());
        for r in 0..self.n_rows() {
            let (c, v) = self.row(r);
            for (&c, &v) in c.iter().zip(v) {
                if keep(v) {
                    indices.push(c);
                    values.push(v);
                }
            }
            indptr.push(indices.len());
        }
        Csr {
            n_cols: self.n_cols,
            indptr,
            indices,
            values,
        }
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Number of columns.
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Column indices and values of row `r`.
    #[inline]
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r], self.indptr[r + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }

    /// Number of entries in row `r`.
    #[inline]
    pub fn row_len(&self, r: usize) -> usize {
        self.indptr[r + 1] - self.indptr[r]
    }

    /// Whether row `r` holds column `c` (binary search).
    pub fn contains(&self, r: usize, c: u32) -> bool {
        self.row(r).0.binary_search(&c).is_ok()
    }

    /// The transpose (columns become rows).
    pub fn transpose(&self) -> Csr {
        let n_rows = self.n_rows();
        let mut counts = vec![0usize; self.n_cols + 1];
        for &c in &self.indices {
            counts[c as usize + 1] += 1;
        }
        for i in 0..self.n_cols {
            counts[i + 1] += counts[i];
        }
        let mut next = counts.clone();
        let mut indices = vec![0u32; self.nnz()];
        let mut values = vec![0f32; self.nnz()];
        for r in 0..n_rows {
            let (cols, vals) = self.row(r);
            for (&c, &v) in cols.iter().zip(vals) {
                let at = &mut next[c as usize];
                indices[*at] = r as u32;
                values[*at] = v;
                *at += 1;
            }
        }
        Csr {
            n_cols: n_rows,
            indptr: counts,
            indices,
            values,
        }
    }

    /// Applies `f` to every value.
    pub fn map_values(&mut self, f: impl Fn(f32) -> f32) {
        self.values.iter_mut().for_each(|v| *v = f(*v));
    }
}

/// Test data: `users` users in two taste groups over `items` items (the first
/// half of the users pick from the first half of the items), `per_user` each.
#[cfg(test)]
pub(crate) fn two_taste_groups(users: u32, items: u32, per_user: u32) -> Csr {
    let half = items / 2;
    let mut rows = Vec::new();
    let mut cols = Vec::new();
    for u in 0..users {
        let base = if u < users / 2 { 0 } else { half };
        for k in 0..per_user {
            rows.push(u);
            cols.push(base + (u * 7 + k * 3) % half);
        }
    }
    let vals = vec![1.0; rows.len()];
    Csr::from_triplets(users as usize, items as usize, &rows, &cols, &vals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triplets_are_sorted_merged_and_transposed() {
        let m = Csr::from_triplets(
            3,
            4,
            &[2, 0, 2, 0, 2],
            &[1, 3, 0, 3, 1],
            &[1.0, 2.0, 3.0, 4.0, 5.0],
        );
        assert_eq!(m.row(0), (&[3u32][..], &[6.0f32][..]));
        assert_eq!(m.row(1).0.len(), 0);
        assert_eq!(m.row(2), (&[0u32, 1][..], &[3.0f32, 6.0][..]));
        assert!(m.contains(2, 1) && !m.contains(1, 1));
        let t = m.transpose();
        assert_eq!(t.n_rows(), 4);
        assert_eq!(t.row(3), (&[0u32][..], &[6.0f32][..]));
        assert_eq!(t.row(1), (&[2u32][..], &[6.0f32][..]));
        assert_eq!(t.transpose(), m);
    }

    #[test]
    fn filtering_is_rebuilding_from_the_kept_triplets() {
        // Seeded triplets with duplicates; keep the summed values above 1.
        let mut rng = crate::rng::SplitMix::new(7, 0, 0);
        let mut next = |m: u64| rng.below(m) as u32;
        let n = 400;
        let (rows, cols, vals): (Vec<u32>, Vec<u32>, Vec<f32>) = (0..n)
            .map(|_| (next(30), next(50), next(4) as f32 * 0.5))
            .fold(
                (vec![], vec![], vec![]),
                |(mut r, mut c, mut v), (a, b, w)| {
                    r.push(a);
                    c.push(b);
                    v.push(w);
                    (r, c, v)
                },
            );
        let m = Csr::from_triplets(30, 50, &rows, &cols, &vals);
        let kept = m.filter(|v| v > 1.0);
        let (mut r2, mut c2, mut v2) = (vec![], vec![], vec![]);
        for r in 0..m.n_rows() {
            for (&c, &v) in m.row(r).0.iter().zip(m.row(r).1) {
                if v > 1.0 {
                    r2.push(r as u32);
                    c2.push(c);
                    v2.push(v);
                }
            }
        }
        assert_eq!(kept, Csr::from_triplets(30, 50, &r2, &c2, &v2));
        assert!(kept.nnz() > 0 && kept.nnz() < m.nnz());
    }
}
