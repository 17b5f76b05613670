//! From impressions to training weights: an engagement-weighted blend.

use serde::{Deserialize, Serialize};

use crate::csr::Csr;
use crate::error::{Error, Result};
use crate::ids::IdMap;

/// How one impression turns into a training weight `w` (the confidence of the
/// user–video pair is `1 + alpha · Σ w` over the pair's impressions, and pairs
/// whose summed weight is not positive are not positives at all):
///
/// `w = watch_fraction · min(watch/duration, max_watch_fraction)
///    + completion · completed + like · liked + share · shared
///    + comment · commented + follow · followed + skip · skipped`
///
/// with `completed = watch ≥ duration` and `skipped = watch < min(3 s, duration)`.
/// A pair is a positive only when its summed weight exceeds `min_positive`: by
/// default a user must have watched about half of a video (or engaged with it)
/// for it to count, so mere exposure to what the logging policy showed is not
/// mistaken for taste.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngagementWeights {
    /// Weight of the watched fraction of the video (capped at `max_watch_fraction`).
    pub watch_fraction: f32,
    /// Cap on the watched fraction (loops beyond it add nothing).
    pub max_watch_fraction: f32,
    /// Weight of a completed view.
    pub completion: f32,
    /// Weight of a like.
    pub like: f32,
    /// Weight of a share.
    pub share: f32,
    /// Weight of a comment.
    pub comment: f32,
    /// Weight of a follow.
    pub follow: f32,
    /// Weight of a skip (negative: a skip is evidence against).
    pub skip: f32,
    /// Summed weight a pair must exceed to be a positive.
    pub min_positive: f32,
}

impl Default for EngagementWeights {
    fn default() -> Self {
        EngagementWeights {
            watch_fraction: 1.0,
            max_watch_fraction: 2.0,
            completion: 0.5,
            like: 2.0,
            share: 3.0,
            comment: 2.0,
            follow: 3.0,
            skip: -1.0,
            min_positive: 0.5,
        }
    }
}

/// The impression columns the weighting needs (plain slices: the ranker does
/// not depend on any dataframe library).
#[derive(Debug, Clone, Copy)]
pub struct Impressions<'a> {
    /// The user of each impression.
    pub user_id: &'a [u64],
    /// The video shown.
    pub video_id: &'a [u64],
    /// The video's length, milliseconds.
    pub duration_ms: &'a [u32],
    /// Time watched, milliseconds.
    pub watch_ms: &'a [u32],
    /// Whether the user liked it.
    pub liked: &'a [bool],
    /// Whether the user shared it.
    pub shared: &'a [bool],
    /// Whether the user commented.
    pub commented: &'a [bool],
    /// Whether the user followed the creator.
    pub followed: &'a [bool],
}

impl Impressions<'_> {
    /// Number of impressions (all columns must agree).
    pub fn len(&self) -> Result<usize> {
        let n = self.user_id.len();
        for (what, got) in [
            ("video_id", self.video_id.len()),
            ("duration_ms", self.duration_ms.len()),
            ("watch_ms", self.watch_ms.len()),
            ("liked", self.liked.len()),
            ("shared", self.shared.len()),
            ("commented", self.commented.len()),
            ("followed", self.followed.len()),
        ] {
            if got != n {
                return Err(Error::LengthMismatch {
                    what,
                    expected: n,
                    got,
                });
            }
        }
        Ok(n)
    }

    /// Whether there is no impression.
    pub fn is_empty(&self) -> bool {
        self.user_id.is_empty()
    }
}

impl EngagementWeights {
    /// The weight of impression `i`.
    #[inline]
    pub fn weight(&self, imp: &Impressions<'_>, i: usize) -> f32 {
        let d = imp.duration_ms[i].max(1);
        let w = imp.watch_ms[i];
        let frac = (w as f32 / d as f32).min(self.max_watch_fraction);
        let completed = w >= d;
        let skipped = w < 3000.min(d);
        self.watch_fraction * frac
            + self.completion * completed as u8 as f32
            + self.like * imp.liked[i] as u8 as f32
            + self.share * imp.shared[i] as u8 as f32
            + self.comment * imp.commented[i] as u8 as f32
            + self.follow * imp.followed[i] as u8 as f32
            + self.skip * skipped as u8 as f32
    }
}

/// Interactions ready for training: dense ids and a users × items weight matrix.
#[derive(Debug, Clone)]
pub struct TrainingData {
    /// External user id ↔ row of `matrix`.
    pub users: IdMap,
    /// External item id ↔ column of `matrix`.
    pub items: IdMap,
    /// Users × items, summed weights (all positive).
    pub matrix: Csr,
}

impl TrainingData {
    /// From `(user, item, weight)` triplets; duplicates are summed and pairs whose
    /// total is not above `min_weight` dropped (0 for generic interactions: every
    /// positive weight counts). Ids are indexed in order of first appearance.
    pub fn from_triplets(
        user_ids: &[u64],
        item_ids: &[u64],
        weights: Option<&[f32]>,
        min_weight: f32,
    ) -> Result<TrainingData> {
        if user_ids.len() != item_ids.len() {
            return Err(Error::LengthMismatch {
                what: "item ids",
                expected: user_ids.len(),
                got: item_ids.len(),
            });
        }
        if let Some(w) = weights {
            if w.len() != user_ids.len() {
                return Err(Error::LengthMismatch {
                    what: "weights",
                    expected: user_ids.len(),
                    got: w.len(),
                });
            }
            if let Some(row) = w.iter().position(|v| !v.is_finite()) {
                return Err(Error::NotFinite {
                    what: "weight",
                    row,
                    value: w[row],
                });
            }
        }
        let mut users = IdMap::new();
        let mut items = IdMap::new();
        let rows: Vec<u32> = user_ids.iter().map(|&u| users.insert(u)).collect();
        let cols: Vec<u32> = item_ids.iter().map(|&i| items.insert(i)).collect();
        let vals: Vec<f32> = match weights {
            Some(w) => w.to_vec(),
            None => vec![1.0; rows.len()],
        };
        let m = Csr::from_triplets(users.len(), items.len(), &rows, &cols, &vals);
        Ok(TrainingData {
            users,
            items,
            matrix: keep_above(&m, min_weight),
        })
    }

    /// From impressions weighted by `w`.
    pub fn from_impressions(imp: &Impressions<'_>, w: &EngagementWeights) -> Result<TrainingData> {
        let n = imp.len()?;
        let weights: Vec<f32> = (0..n).map(|i| w.weight(imp, i)).collect();
        Self::from_triplets(imp.user_id, imp.video_id, Some(&weights), w.min_positive)
    }

    /// A hash of the matrix and ids (FNV-1a over ids, indices and weights).
    pub fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |x: u64| {
            for b in x.to_le_bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for &u in self.users.ids() {
            eat(u);
        }
        for &i in self.items.ids() {
            eat(i);
        }
        for u in 0..self.matrix.n_rows() {
            let (cols, vals) = self.matrix.row(u);
            for (&c, &v) in cols.iter().zip(vals) {
                eat(((u as u64) << 32) | c as u64);
                eat(v.to_bits() as u64);
            }
        }
        format!("{h:016x}")
    }
}

/// Drops entries whose weight is not above `min` (and never keeps a weight ≤ 0).
pub fn keep_above(m: &Csr, min: f32) -> Csr {
    m.filter(|v| v > min && v > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_blend_engagement_and_skips_are_not_positives() -> Result<()> {
        let imp = Impressions {
            user_id: &[1, 1, 2, 2],
            video_id: &[10, 10, 10, 11],
            duration_ms: &[10_000, 10_000, 10_000, 60_000],
            watch_ms: &[10_000, 5_000, 20_000, 1_000],
            liked: &[true, false, false, false],
            shared: &[false, false, true, false],
            commented: &[false; 4],
            followed: &[false; 4],
        };
        let w = EngagementWeights::default();
        assert!((w.weight(&imp, 0) - (1.0 + 0.5 + 2.0)).abs() < 1e-6);
        assert!((w.weight(&imp, 1) - 0.5).abs() < 1e-6);
        // Half watched, alone, is not above the positive threshold.
        assert!((w.weight(&imp, 2) - (2.0 + 0.5 + 3.0)).abs() < 1e-6);
        // 1 s of a minute: a skip, weight negative.
        assert!(w.weight(&imp, 3) < 0.0);
        let td = TrainingData::from_impressions(&imp, &w)?;
        assert_eq!(td.users.len(), 2);
        assert_eq!(td.matrix.nnz(), 2, "user 2's skip is not a positive");
        let u1 = td.users.get(1).map(|u| u as usize).unwrap_or(99);
        assert!(
            (td.matrix.row(u1).1[0] - 4.0).abs() < 1e-6,
            "two impressions summed"
        );
        Ok(())
    }

    #[test]
    fn bad_lengths_and_nan_weights_are_errors() {
        assert!(TrainingData::from_triplets(&[1, 2], &[3], None, 0.0).is_err());
        let err =
            TrainingData::from_triplets(&[1, 2], &[3, 4], Some(&[1.0, f32::NAN]), 0.0).unwrap_err();
        assert!(err.to_string().contains("row 1"), "{err}");
    }
}
