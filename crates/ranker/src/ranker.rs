//! `Ranker`: a loaded model that answers recommendation and scoring requests.
//! `Send + Sync`: share one behind an `Arc` across a service's threads.

use std::path::Path;

use arrow_buffer::ScalarBuffer;

use crate::als::fold_in;
use crate::error::{Error, Result};
use crate::linalg::{dot, gram, Isa};
use crate::model::{MappedModel, Model, FORMAT_VERSION};
use crate::topk::{ItemTable, Scored};

/// Options of one recommendation request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Videos that must not be returned (e.g. already seen).
    pub exclude: Vec<u64>,
    /// Fresh history: when non-empty, the user's embedding is folded in from
    /// these videos (exact least squares for iALS) instead of read from the model;
    /// this is how a user unseen in training gets personalised results. History
    /// videos are excluded too.
    pub history: Vec<u64>,
    /// Re-rank the retrieved candidates with the value model, when the model has one.
    pub use_value_model: bool,
}

/// One recommended item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    pub item_id: u64,
    pub score: f32,
}

/// A response: items best first, and whether the popularity fallback was used
/// (unknown user without history).
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendations {
    pub items: Vec<Recommendation>,
    pub fallback: bool,
}

/// Candidates retrieved per requested item before the value model re-ranks.
const VALUE_MODEL_OVERSAMPLE: usize = 4;

/// A model ready to serve.
#[derive(Debug)]
pub struct Ranker {
    model: MappedModel,
    item_gram: Vec<f32>,
    popular: Vec<u32>,
    isa: Isa,
}

impl Ranker {
    /// Memory-maps and validates a model file.
    pub fn open(path: &Path) -> Result<Ranker> {
        Ok(Ranker::from_mapped(MappedModel::open(path)?))
    }

    /// Serves an in-memory model (e.g. right after training).
    pub fn from_model(m: Model) -> Ranker {
        Ranker::from_mapped(MappedModel {
            users: m.users,
            items: m.items,
            dim: m.factors.dim,
            user_factors: ScalarBuffer::from(m.factors.users),
            item_factors: ScalarBuffer::from(m.factors.items),
            item_bias: ScalarBuffer::from(m.factors.item_bias),
            user_counts: ScalarBuffer::from(m.user_counts),
            item_counts: ScalarBuffer::from(m.item_counts),
            meta: m.meta,
            format_version: FORMAT_VERSION,
        })
    }

    fn from_mapped(model: MappedModel) -> Ranker {
        let item_gram = gram(&model.item_factors, model.dim);
        let popular = crate::eval::popularity_order(&model.item_counts);
        Ranker {
            model,
            item_gram,
            popular,
            isa: Isa::detect(),
        }
    }

    /// The underlying model.
    pub fn model(&self) -> &MappedModel {
        &self.model
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.model.dim
    }

    /// The item table to score against.
    pub fn items(&self) -> ItemTable<'_> {
        ItemTable {
            dim: self.model.dim,
            factors: &self.model.item_factors,
            bias: Some(&self.model.item_bias),
            isa: self.isa,
        }
    }

    /// The stored embedding of a known user.
    pub fn user_embedding(&self, user_id: u64) -> Option<&[f32]> {
        let u = self.model.users.get(user_id)? as usize;
        let d = self.model.dim;
        Some(&self.model.user_factors[u * d..(u + 1) * d])
    }

    /// The embedding of a user with this history (unknown videos are ignored).
    pub fn fold_in(&self, history: &[u64]) -> Vec<f32> {
        let items: Vec<u32> = history
            .iter()
            .filter_map(|&v| self.model.items.get(v))
            .collect();
        let w = vec![1.0; items.len()];
        let p = &self.model.meta.params;
        fold_in(
            &self.model.item_factors,
            &self.item_gram,
            self.model.dim,
            &items,
            &w,
            p.alpha,
            p.reg,
            p.reg_exponent,
        )
    }

    fn exclusion(&self, req: &Request) -> Vec<u32> {
        let mut ex: Vec<u32> = req
            .exclude
            .iter()
            .chain(&req.history)
            .filter_map(|&v| self.model.items.get(v))
            .collect();
        ex.sort_unstable();
        ex.dedup();
        ex
    }

    /// Top-`k` item indices for an embedding, `exclude` sorted ascending; with the
    /// value model when asked and available.
    ///
    /// Called from inside a rayon task (a batch over users), the scan stays on
    /// that thread; called from outside, the catalogue is split across threads.
    pub fn rank(&self, q: &[f32], k: usize, exclude: &[u32], use_value_model: bool) -> Vec<Scored> {
        let items = self.items();
        let retrieve = |k: usize| {
            if rayon::current_thread_index().is_some() {
                items.top_k(q, k, exclude)
            } else {
                items.top_k_parallel(q, k, exclude)
            }
        };
        match (&self.model.meta.value_model, use_value_model) {
            (Some(vm), true) => {
                let cands = retrieve(k.saturating_mul(VALUE_MODEL_OVERSAMPLE));
                let mut rescored: Vec<Scored> = cands
                    .iter()
                    .map(|c| {
                        let i = c.item as usize;
                        let bias = self.model.item_bias[i];
                        Scored {
                            item: c.item,
                            score: vm.score(c.score - bias, self.model.item_counts[i], bias) as f32,
                        }
                    })
                    .collect();
                rescored.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
                rescored.truncate(k);
                rescored
            }
            _ => retrieve(k),
        }
    }

    /// Recommends `k` items for a user. An unknown user without history gets the
    /// most popular items, flagged as a fallback.
    pub fn recommend(&self, user_id: u64, k: usize, req: &Request) -> Recommendations {
        let exclude = self.exclusion(req);
        let q: Option<Vec<f32>> = if !req.history.is_empty() {
            Some(self.fold_in(&req.history))
        } else {
            self.user_embedding(user_id).map(|e| e.to_vec())
        };
        match q {
            Some(q) => Recommendations {
                items: self
                    .rank(&q, k, &exclude, req.use_value_model)
                    .into_iter()
                    .map(|s| Recommendation {
                        item_id: self.model.items.id(s.item),
                        score: s.score,
                    })
                    .collect(),
                fallback: false,
            },
            None => Recommendations {
                items: self
                    .popular
                    .iter()
                    .filter(|i| exclude.binary_search(i).is_err())
                    .take(k)
                    .map(|&i| Recommendation {
                        item_id: self.model.items.id(i),
                        score: self.model.item_counts[i as usize] as f32,
                    })
                    .collect(),
                fallback: true,
            },
        }
    }

    /// Dot-product scores (plus bias) of a known user for the given videos.
    pub fn score(&self, user_id: u64, videos: &[u64]) -> Result<Vec<f32>> {
        let q = self
            .user_embedding(user_id)
            .ok_or(Error::UnknownUser(user_id))?;
        let d = self.model.dim;
        videos
            .iter()
            .map(|&v| {
                let i = self.model.items.get(v).ok_or(Error::UnknownItem(v))? as usize;
                Ok(dot(q, &self.model.item_factors[i * d..(i + 1) * d]) + self.model.item_bias[i])
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::factors::Factors;
    use crate::ids::IdMap;
    use crate::model::ModelMeta;
    use crate::params::TrainParams;

    fn ranker() -> Ranker {
        Ranker::from_model(Model {
            users: IdMap::from_ids(vec![100]),
            items: IdMap::from_ids(vec![1, 2, 3, 4]),
            factors: Factors {
                dim: 2,
                users: vec![1.0, 0.0],
                items: vec![0.9, 0.0, 0.5, 0.5, 0.1, 1.0, -1.0, 0.0],
                item_bias: vec![0.0; 4],
            },
            user_counts: vec![2],
            item_counts: vec![5, 1, 9, 2],
            meta: ModelMeta {
                params: TrainParams::default(),
                fingerprint: String::new(),
                value_model: None,
                source: String::new(),
            },
        })
    }

    #[test]
    fn recommend_excludes_and_falls_back() -> Result<()> {
        let r = ranker();
        let rec = r.recommend(
            100,
            2,
            &Request {
                exclude: vec![1],
                ..Request::default()
            },
        );
        assert!(!rec.fallback);
        assert_eq!(
            rec.items.iter().map(|x| x.item_id).collect::<Vec<_>>(),
            vec![2, 3]
        );
        let rec = r.recommend(999, 2, &Request::default());
        assert!(rec.fallback);
        assert_eq!(
            rec.items.iter().map(|x| x.item_id).collect::<Vec<_>>(),
            vec![3, 1]
        );
        // An unknown user with history is personalised, history excluded.
        let rec = r.recommend(
            999,
            1,
            &Request {
                history: vec![1],
                ..Request::default()
            },
        );
        assert!(!rec.fallback);
        assert_eq!(rec.items[0].item_id, 2);
        assert_eq!(r.score(100, &[1, 4])?, vec![0.9, -1.0]);
        assert!(matches!(r.score(100, &[77]), Err(Error::UnknownItem(77))));
        Ok(())
    }

    #[test]
    fn ranker_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Ranker>();
    }
}
