//! Train/test splits: by time for event logs, seeded per-user random for
//! generic interactions.

use crate::confidence::TrainingData;
use crate::csr::Csr;
use crate::error::Result;
use crate::ids::IdMap;
use crate::rng::SplitMix;

/// A split: training data and test positives indexed like the training data.
#[derive(Debug, Clone)]
pub struct Split {
    /// The training part.
    pub train: TrainingData,
    /// Users × items (training indices; items unseen in training get indices
    /// past the training catalogue so they count as misses, never as hits).
    pub test: Csr,
    /// Test interactions of users absent from training (not evaluable, dropped).
    pub dropped_test_users: usize,
    /// Test interactions with items absent from training (kept: unreachable).
    pub unknown_test_items: usize,
}

/// Each user's positives shuffled with a per-user seeded stream; `round(test_fraction · n)`
/// of them go to the test set.
pub fn split_random(data: &TrainingData, test_fraction: f64, seed: u64) -> Split {
    let m = &data.matrix;
    let (mut tr, mut te) = ((vec![], vec![], vec![]), (vec![], vec![], vec![]));
    let mut order: Vec<usize> = Vec::new();
    for u in 0..m.n_rows() {
        let (items, w) = m.row(u);
        let n = items.len();
        let n_test = ((n as f64) * test_fraction).round() as usize;
        order.clear();
        order.extend(0..n);
        let mut rng = SplitMix::new(seed, 0x5B17, u as u64);
        for i in (1..n).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        for (rank, &k) in order.iter().enumerate() {
            let dst = if rank < n_test { &mut te } else { &mut tr };
            dst.0.push(u as u32);
            dst.1.push(items[k]);
            dst.2.push(w[k]);
        }
    }
    let train = Csr::from_triplets(m.n_rows(), m.n_cols(), &tr.0, &tr.1, &tr.2);
    let test = Csr::from_triplets(m.n_rows(), m.n_cols(), &te.0, &te.1, &te.2);
    Split {
        train: TrainingData {
            users: data.users.clone(),
            items: data.items.clone(),
            matrix: train,
        },
        test,
        dropped_test_users: 0,
        unknown_test_items: 0,
    }
}

/// Interactions with `ts < cutoff` train, the rest test; in either part a
/// user–item pair counts when its summed weight is above `min_weight`.
pub fn split_by_time(
    user_ids: &[u64],
    item_ids: &[u64],
    weights: &[f32],
    ts: &[i64],
    cutoff: i64,
    min_weight: f32,
) -> Result<Split> {
    let before: Vec<usize> = (0..user_ids.len()).filter(|&i| ts[i] < cutoff).collect();
    let pick_u: Vec<u64> = before.iter().map(|&i| user_ids[i]).collect();
    let pick_i: Vec<u64> = before.iter().map(|&i| item_ids[i]).collect();
    let pick_w: Vec<f32> = before.iter().map(|&i| weights[i]).collect();
    let train = TrainingData::from_triplets(&pick_u, &pick_i, Some(&pick_w), min_weight)?;
    let mut extra = IdMap::new();
    let n_train_items = train.items.len() as u32;
    let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
    let (mut dropped, mut unknown) = (0usize, 0usize);
    for i in (0..user_ids.len()).filter(|&i| ts[i] >= cutoff) {
        let Some(u) = train.users.get(user_ids[i]) else {
            dropped += 1;
            continue;
        };
        let item = match train.items.get(item_ids[i]) {
            Some(x) => x,
            None => {
                unknown += 1;
                n_train_items + extra.insert(item_ids[i])
            }
        };
        r.push(u);
        c.push(item);
        v.push(weights[i]);
    }
    let test = Csr::from_triplets(
        train.users.len(),
        train.items.len() + extra.len(),
        &r,
        &c,
        &v,
    );
    Ok(Split {
        test: crate::confidence::keep_above(&test, min_weight),
        train,
        dropped_test_users: dropped,
        unknown_test_items: unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_split_is_seeded_per_user_and_partitions() -> Result<()> {
        let users: Vec<u64> = (0..100).map(|i| i / 10).collect();
        let items: Vec<u64> = (0..100).map(|i| i % 37).collect();
        let data = TrainingData::from_triplets(&users, &items, None, 0.0)?;
        let a = split_random(&data, 0.2, 7);
        let b = split_random(&data, 0.2, 7);
        assert_eq!(a.test, b.test);
        assert_eq!(a.train.matrix.nnz() + a.test.nnz(), data.matrix.nnz());
        for u in 0..10 {
            assert_eq!(a.test.row_len(u), 2);
            for &i in a.test.row(u).0 {
                assert!(!a.train.matrix.contains(u, i));
            }
        }
        assert_ne!(split_random(&data, 0.2, 8).test, a.test);
        Ok(())
    }

    #[test]
    fn time_split_keeps_unknown_items_as_misses() -> Result<()> {
        let s = split_by_time(
            &[1, 1, 2, 1, 3],
            &[10, 11, 10, 12, 10],
            &[1.0; 5],
            &[1, 2, 3, 10, 11],
            5,
            0.0,
        )?;
        assert_eq!(s.train.matrix.nnz(), 3);
        assert_eq!(s.test.nnz(), 1);
        assert_eq!(s.unknown_test_items, 1);
        assert_eq!(s.dropped_test_users, 1);
        let u1 = s.train.users.get(1).map(|u| u as usize).unwrap_or(9);
        assert!(s.test.row(u1).0[0] as usize >= s.train.items.len());
        Ok(())
    }
}
