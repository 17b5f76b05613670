//! How a trial's model scores validation users: an embedding, RP3beta's
//! sparse scores, or a blend of two lists.

use crate::eval::ranked_lists;
use crate::factors::Factors;
use crate::split::Split;
use crate::topk::ItemTable;

/// How a candidate scores items during the search.
pub(super) enum Scorer {
    /// Embeddings (with biases).
    Factors(Factors),
    /// RP3beta's sparse item-item weights (a user's scores are the sums of
    /// the rows of their training items) and item biases.
    Sparse {
        rows: Vec<Vec<(u32, f32)>>,
        bias: Vec<f32>,
    },
}

impl Scorer {
    /// The scores' dimension (a sparse scorer's: its longest row).
    pub(super) fn dim(&self) -> usize {
        match self {
            Scorer::Factors(f) => f.dim,
            Scorer::Sparse { rows, .. } => rows.iter().map(Vec::len).max().unwrap_or(0),
        }
    }

    /// Every validation user's top `m` (training items excluded) with
    /// scores; `None` for users without validation items.
    pub(super) fn lists(&self, split: &Split, m: usize) -> Vec<Option<Vec<(u32, f32)>>> {
        let (train, test) = (&split.train.matrix, &split.test);
        match self {
            Scorer::Factors(f) => {
                let table = ItemTable::new(f.dim, &f.items, Some(&f.item_bias));
                ranked_lists(&table, &f.users, train, test, m)
                    .into_iter()
                    .enumerate()
                    .map(|(u, r)| {
                        r.map(|items| {
                            let s = table.scores_of(f.user(u), &items);
                            items.into_iter().zip(s).collect()
                        })
                    })
                    .collect()
            }
            Scorer::Sparse { rows, bias } => {
                use rayon::prelude::*;
                (0..test.n_rows())
                    .into_par_iter()
                    .map_init(
                        || bias.clone(),
                        |acc, u| {
                            if test.row_len(u) == 0 {
                                return None;
                            }
                            acc.copy_from_slice(bias);
                            let seen = train.row(u).0;
                            for &i in seen {
                                for &(j, w) in &rows[i as usize] {
                                    acc[j as usize] += w;
                                }
                            }
                            let mut cand: Vec<(u32, f32)> = acc
                                .iter()
                                .enumerate()
                                .filter(|(j, _)| seen.binary_search(&(*j as u32)).is_err())
                                .map(|(j, &s)| (j as u32, s))
                                .collect();
                            let by = |a: &(u32, f32), b: &(u32, f32)| {
                                b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
                            };
                            if cand.len() > m && m > 0 {
                                cand.select_nth_unstable_by(m - 1, by);
                                cand.truncate(m);
                            }
                            cand.sort_unstable_by(by);
                            Some(cand)
                        },
                    )
                    .collect()
            }
        }
    }

    /// Each user's scores of the items `wants` names for them.
    pub(super) fn scores_for(
        &self,
        split: &Split,
        wants: &[Option<Vec<u32>>],
    ) -> Vec<Option<Vec<f32>>> {
        use rayon::prelude::*;
        match self {
            Scorer::Factors(f) => {
                let table = ItemTable::new(f.dim, &f.items, Some(&f.item_bias));
                wants
                    .par_iter()
                    .enumerate()
                    .map(|(u, w)| w.as_ref().map(|items| table.scores_of(f.user(u), items)))
                    .collect()
            }
            Scorer::Sparse { rows, bias } => wants
                .par_iter()
                .enumerate()
                .map(|(u, w)| {
                    let items = w.as_ref()?;
                    let seen = split.train.matrix.row(u).0;
                    Some(
                        items
                            .iter()
                            .map(|&j| {
                                let mut s = bias[j as usize];
                                for &i in seen {
                                    let row = &rows[i as usize];
                                    if let Ok(at) = row.binary_search_by_key(&j, |e| e.0) {
                                        s += row[at].1;
                                    }
                                }
                                s
                            })
                            .collect(),
                    )
                })
                .collect(),
        }
    }

    /// The root-mean-square score over the validation users' top-100 lists
    /// (the scale a blend divides by).
    pub(super) fn scale(lists: &[Option<Vec<(u32, f32)>>]) -> f64 {
        crate::factors::rms_or_one(lists.iter().flatten().flatten().map(|&(_, s)| s as f64))
    }

    /// Adds `beta · s · ln(1 + n_j)` to every item's score.
    pub(super) fn with_pop_bias(&self, counts: &[u32], beta: f32, scale: f64) -> Scorer {
        let k = beta as f64 * scale;
        match self {
            Scorer::Factors(f) => {
                let mut g = f.clone();
                for (b, &n) in g.item_bias.iter_mut().zip(counts) {
                    *b += (k * (n as f64).ln_1p()) as f32;
                }
                Scorer::Factors(g)
            }
            Scorer::Sparse { rows, bias } => Scorer::Sparse {
                rows: rows.clone(),
                bias: bias
                    .iter()
                    .zip(counts)
                    .map(|(b, &n)| b + (k * (n as f64).ln_1p()) as f32)
                    .collect(),
            },
        }
    }
}
