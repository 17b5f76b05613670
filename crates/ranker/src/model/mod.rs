//! The model file: one Arrow IPC file, memory-mapped on load.
//!
//! Schema (readable by any Arrow implementation, pyarrow included):
//!
//! | column | type | meaning |
//! | --- | --- | --- |
//! | `kind` | uint8 | 0 = user, 1 = item, `2 + s` = a user's vector on surface `s` |
//! | `id` | uint64 | external id |
//! | `embedding` | fixed_size_list<float32, dim> | the learned vector |
//! | `bias` | float32 | added to every score of the item (0 for users) |
//! | `count` | uint32 | training interactions of the user or item (the popularity prior) |
//!
//! Record batch 0 holds the users, batch 1 the items. Schema metadata:
//! `reelkit.format_version`, `reelkit.dim`, `reelkit.n_users`, `reelkit.n_items`
//! and `reelkit.meta` (JSON: training parameters, data fingerprint, value model).
//!
//! Version 2 adds per-surface models ([`crate::train_surface_ials`]): the
//! metadata `reelkit.surfaces` names the surfaces (`reels,feed,watch`), and
//! batch `2 + s` holds every user's vector on surface `s` (kind `2 + s`, the
//! users in batch 0's order, `count` = their training interactions there);
//! batch 0's embeddings are then the users' shared tastes. A model without
//! surfaces writes no such key and no such batch. Where a per-surface
//! model's videos also have vectors of a surface's own, the item rows are
//! wider (`reelkit.meta`'s `item_specific` says whose; see
//! [`Model::from_surfaces`]) and every reader serves them as any model's:
//! no new batch, no new version. A model trained on string
//! ids (ISBNs, hashes) has a sixth column `key` (utf8, nullable): the id as
//! given for every row of the side whose ids were strings (null on the other
//! side), `id` then being the dense internal id. Version 1 files (two
//! batches, five columns) are read as before.
//!
//! Loading validates the magic bytes, the footer, every length, the dim and the
//! version, and returns an error (never a panic) on a truncated or foreign file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_buffer::ScalarBuffer;
use arrow_schema::{ArrowError, DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::factors::Factors;
use crate::ids::IdMap;
use crate::params::TrainParams;
use crate::value::ValueModel;

mod read;
#[cfg(test)]
mod tests;
mod write;

pub use read::MappedModel;
pub(crate) use read::{IpcError, IpcFile};
pub(crate) use write::write_ipc_file;

/// The format version this build writes.
pub const FORMAT_VERSION: u32 = 2;
/// The format versions this build reads.
pub const SUPPORTED_VERSIONS: &[u32] = &[1, 2];

const KEY_VERSION: &str = "reelkit.format_version";
const KEY_DIM: &str = "reelkit.dim";
const KEY_USERS: &str = "reelkit.n_users";
const KEY_ITEMS: &str = "reelkit.n_items";
const KEY_META: &str = "reelkit.meta";
const KEY_SURFACES: &str = "reelkit.surfaces";

/// Everything about a model that is not an array.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Training parameters (for fold-in: `alpha`, `reg`, `reg_exponent`).
    pub params: TrainParams,
    /// A hash of the training interactions, to tell models of different data apart.
    pub fingerprint: String,
    /// The ranking stage, when fitted.
    pub value_model: Option<ValueModel>,
    /// Free-form provenance: what made the model (e.g. `reelkit 0.1.0 train`);
    /// never a command line, which could carry paths or secrets.
    pub source: String,
    /// Per-surface models: each surface's specific share `φ_s` (the share of
    /// a user's taste that is the surface's own), in the order of the
    /// model's surfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specific: Option<Vec<f32>>,
    /// Per-surface models whose videos have vectors of each surface's own
    /// (some `ψ_s > 0`): each surface's video share, in the order of the
    /// model's surfaces. The vectors are then `dim = factors × (1 + the
    /// surfaces with ψ_s > 0)` wide (see [`Model::from_surfaces`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_specific: Option<Vec<f32>>,
}

/// Every user's vector on every surface of a per-surface model.
#[derive(Debug, Clone, PartialEq)]
pub struct SurfaceVectors {
    /// The surfaces' names, in the vectors' order (e.g. reels, feed, watch).
    pub names: Vec<String>,
    /// `users × names × dim`: user `u` on surface `s` at `(u · names + s) · dim`.
    pub vectors: Vec<f32>,
    /// `users × names`: each user's training interactions on each surface.
    pub counts: Vec<u32>,
}

/// A per-surface model's user vectors as read from a file, one array per
/// surface over the file's bytes.
#[derive(Debug, Clone)]
pub struct MappedSurfaces {
    /// The surfaces' names, in file order.
    pub names: Vec<String>,
    /// Per surface, `users × dim` vectors (users in the model's order).
    pub vectors: Vec<ScalarBuffer<f32>>,
    /// Per surface, each user's training interactions there.
    pub counts: Vec<ScalarBuffer<u32>>,
}

impl MappedSurfaces {
    /// The index of the surface called `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

/// String ids of one side of a model: the id of each row, and the row of
/// each id.
#[derive(Debug, Clone, PartialEq)]
pub struct Keys {
    keys: Vec<String>,
    index: HashMap<String, u32>,
}

impl Keys {
    /// The keys of rows `0..`; `None` when two rows share a key.
    pub fn new(keys: Vec<String>) -> Option<Keys> {
        let mut index = HashMap::with_capacity(keys.len());
        for (r, k) in keys.iter().enumerate() {
            if index.insert(k.clone(), r as u32).is_some() {
                return None;
            }
        }
        Some(Keys { keys, index })
    }

    /// The key of row `r`.
    pub fn key(&self, r: u32) -> &str {
        &self.keys[r as usize]
    }

    /// The row of `key`.
    pub fn row(&self, key: &str) -> Option<u32> {
        self.index.get(key).copied()
    }

    /// Every key, by row.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }
}

/// Whether `name` is a usable surface name: 1 to 32 characters of `a-z`,
/// `0-9` and `_` (it is stored in a comma-separated list).
fn valid_surface_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A model in memory, as trained (owned vectors).
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// External user id ↔ user row.
    pub users: IdMap,
    /// External item id ↔ item row.
    pub items: IdMap,
    /// Embeddings and item biases.
    pub factors: Factors,
    /// Training interactions per user (the fold-in and fallback use them).
    pub user_counts: Vec<u32>,
    /// Training interactions per item (popularity, the fallback's order).
    pub item_counts: Vec<u32>,
    /// Per-surface models: every user's vector on every surface (then
    /// `factors.users` are the shared tastes).
    pub surfaces: Option<SurfaceVectors>,
    /// Users trained on string ids: each row's id as given (`users` then maps
    /// dense internal ids).
    pub user_keys: Option<Vec<String>>,
    /// Items trained on string ids: each row's id as given.
    pub item_keys: Option<Vec<String>>,
    /// How the model was trained.
    pub meta: ModelMeta,
}

fn schema(dim: usize, keyed: bool, metadata: HashMap<String, String>) -> Schema {
    let mut fields = vec![
        Field::new("kind", DataType::UInt8, false),
        Field::new("id", DataType::UInt64, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(
                Arc::new(Field::new("item", DataType::Float32, false)),
                dim as i32,
            ),
            false,
        ),
        Field::new("bias", DataType::Float32, false),
        Field::new("count", DataType::UInt32, false),
    ];
    if keyed {
        fields.push(Field::new("key", DataType::Utf8, true));
    }
    Schema::new_with_metadata(fields, metadata)
}

pub(crate) fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

fn arrow_err(path: &Path, e: ArrowError) -> Error {
    Error::Arrow {
        path: path.to_path_buf(),
        source: e,
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidModel {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The ids of one side of imported factors.
#[derive(Debug, Clone, PartialEq)]
pub enum ExternalIds {
    /// Numeric ids.
    Numbers(Vec<u64>),
    /// String ids (kept in the model file's `key` column).
    Strings(Vec<String>),
}

impl ExternalIds {
    /// How many ids.
    pub fn len(&self) -> usize {
        match self {
            ExternalIds::Numbers(v) => v.len(),
            ExternalIds::Strings(v) => v.len(),
        }
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Model {
    /// A model of factors trained on `data`: its ids, the training counts of
    /// every user and item (the popularity fallback and the value model's
    /// features read them), its parameters and the data's fingerprint.
    pub fn new(data: &crate::TrainingData, factors: Factors, params: TrainParams) -> Model {
        let m = &data.matrix;
        Model {
            users: data.users.clone(),
            items: data.items.clone(),
            factors,
            user_counts: (0..m.n_rows()).map(|u| m.row_len(u) as u32).collect(),
            item_counts: crate::eval::item_counts(m),
            surfaces: None,
            user_keys: None,
            item_keys: None,
            meta: ModelMeta {
                params,
                fingerprint: data.fingerprint(),
                value_model: None,
                source: String::new(),
                specific: None,
                item_specific: None,
            },
        }
    }

    /// A model of factors trained elsewhere (Spark MLlib ALS, implicit): each
    /// side's ids (numbers or strings) and its vectors, row-major, `dim` per
    /// id. Scores are dot products, as the trainer's; the training counts are
    /// unknown, so the popularity fallback of an unknown user ranks items in
    /// id order. Errors: lengths that disagree, no id, a repeated id, a
    /// non-finite or overflowing value.
    pub fn from_factors(
        users: ExternalIds,
        user_vectors: Vec<f32>,
        items: ExternalIds,
        item_vectors: Vec<f32>,
        dim: usize,
    ) -> Result<Model> {
        if dim == 0 {
            return Err(Error::InvalidParam {
                field: "dim",
                allowed: "1 or more",
                got: "0".into(),
            });
        }
        let side = |ids: ExternalIds,
                    v: &[f32],
                    what: &'static str|
         -> Result<(IdMap, Option<Vec<String>>)> {
            let n = ids.len();
            if n == 0 {
                return Err(Error::InvalidParam {
                    field: what,
                    allowed: "one id or more",
                    got: "none".into(),
                });
            }
            if v.len() != n * dim {
                return Err(Error::LengthMismatch {
                    what,
                    expected: n * dim,
                    got: v.len(),
                });
            }
            if let Some(bad) = v.iter().position(|x| !x.is_finite() || x.abs() > 1e15) {
                return Err(Error::InvalidParam {
                    field: what,
                    allowed: "finite values of at most 1e15",
                    got: format!("{} at row {}", v[bad], bad / dim),
                });
            }
            let (map, keys) = match ids {
                ExternalIds::Numbers(v) => (IdMap::from_ids(v), None),
                ExternalIds::Strings(k) => (IdMap::from_ids((0..n as u64).collect()), Some(k)),
            };
            if map.len() != n {
                return Err(Error::InvalidParam {
                    field: what,
                    allowed: "distinct ids",
                    got: format!("{} repeated ids", n - map.len()),
                });
            }
            if let Some(k) = &keys {
                if Keys::new(k.clone()).is_none() {
                    return Err(Error::InvalidParam {
                        field: what,
                        allowed: "distinct ids",
                        got: "a repeated string id".into(),
                    });
                }
            }
            Ok((map, keys))
        };
        let (n_users, n_items) = (users.len(), items.len());
        let (users, user_keys) = side(users, &user_vectors, "user factors")?;
        let (items, item_keys) = side(items, &item_vectors, "item factors")?;
        Ok(Model {
            users,
            items,
            factors: Factors {
                dim,
                users: user_vectors,
                items: item_vectors,
                item_bias: vec![0.0; n_items],
            },
            user_counts: vec![0; n_users],
            item_counts: vec![0; n_items],
            surfaces: None,
            user_keys,
            item_keys,
            meta: ModelMeta {
                source: "imported factors".into(),
                ..ModelMeta::default()
            },
        })
    }

    /// A per-surface model fitted on `data`: the shared tastes as the user
    /// vectors, every user's vector on every surface (surfaces named by
    /// `names`, in `data`'s surface order), the pooled training counts, and
    /// the shares it was fitted with.
    ///
    /// Where videos have vectors of a surface's own (`ψ_s > 0`), the model
    /// keeps one item table all the same, so that every reader, index and
    /// retrieval path serves it unchanged: a video's row is `[q_i, z_is for
    /// each surface s with ψ_s > 0]`, a user's vector on such a surface
    /// `w_us` at `z_is`'s place, on another surface (`z_is = q_i`) at
    /// `q_i`'s place, and the shared taste `p_u` at `q_i`'s place, zeros
    /// elsewhere. Every product is then the model's score exactly (`w_us ·
    /// z_is`, `p_u · q_i`); the rows are `1 +` that many surfaces wide.
    pub fn from_surfaces(
        data: &crate::surfaces::SurfaceData,
        factors: crate::surfaces::SurfaceFactors,
        names: &[&str],
        params: TrainParams,
    ) -> Result<Model> {
        let ns = data.n_surfaces;
        if names.len() != ns || factors.n_surfaces != ns {
            return Err(Error::LengthMismatch {
                what: "surface names",
                expected: ns,
                got: names.len(),
            });
        }
        if let Some(bad) = names.iter().find(|n| !valid_surface_name(n)) {
            return Err(Error::InvalidInput(format!(
                "surface name `{bad}`: use 1 to 32 characters of a-z, 0-9 and _"
            )));
        }
        let pooled = data.pooled();
        let counts = (0..data.users.len() * ns)
            .map(|r| data.matrix.row_len(r) as u32)
            .collect();
        let fingerprint = crate::TrainingData {
            users: data.users.clone(),
            items: data.items.clone(),
            matrix: data.matrix.clone(),
        }
        .fingerprint();
        let crate::surfaces::SurfaceFactors {
            dim,
            specific,
            item_specific,
            shared,
            surface,
            items,
            surface_items,
            item_bias,
            ..
        } = factors;
        let own: Vec<usize> = (0..ns)
            .filter(|&s| item_specific.get(s).is_some_and(|&x| x > 0.0))
            .collect();
        if !own.is_empty() && surface_items.len() != items.len() * ns {
            // Shares above 0 without the vectors they were fitted with: the
            // shared vectors would serve another model than the one fitted.
            return Err(Error::LengthMismatch {
                what: "per-surface video vectors",
                expected: items.len() * ns,
                got: surface_items.len(),
            });
        }
        let (dim, shared, surface, items, item_specific) = if own.is_empty() {
            (dim, shared, surface, items, None)
        } else {
            let wide = dim * (1 + own.len());
            // The block of surface `s` in a wide row: 0 is `q_i`'s.
            let block = |s: usize| own.iter().position(|&o| o == s).map_or(0, |k| k + 1);
            let mut rows_items = vec![0f32; items.len() / dim.max(1) * wide];
            for (i, row) in rows_items.chunks_exact_mut(wide).enumerate() {
                row[..dim].copy_from_slice(&items[i * dim..(i + 1) * dim]);
                for (k, &s) in own.iter().enumerate() {
                    let at = (i * ns + s) * dim;
                    row[(k + 1) * dim..(k + 2) * dim].copy_from_slice(&surface_items[at..at + dim]);
                }
            }
            let mut rows_shared = vec![0f32; shared.len() / dim.max(1) * wide];
            for (row, p) in rows_shared
                .chunks_exact_mut(wide)
                .zip(shared.chunks_exact(dim))
            {
                row[..dim].copy_from_slice(p);
            }
            let mut rows_surface = vec![0f32; surface.len() / dim.max(1) * wide];
            for (r, (row, w)) in rows_surface
                .chunks_exact_mut(wide)
                .zip(surface.chunks_exact(dim))
                .enumerate()
            {
                let b = block(r % ns);
                row[b * dim..(b + 1) * dim].copy_from_slice(w);
            }
            (
                wide,
                rows_shared,
                rows_surface,
                rows_items,
                Some(item_specific),
            )
        };
        Ok(Model {
            users: data.users.clone(),
            items: data.items.clone(),
            factors: Factors {
                dim,
                users: shared,
                items,
                item_bias,
            },
            user_counts: (0..pooled.n_rows())
                .map(|u| pooled.row_len(u) as u32)
                .collect(),
            item_counts: crate::eval::item_counts(&pooled),
            user_keys: None,
            item_keys: None,
            surfaces: Some(SurfaceVectors {
                names: names.iter().map(|n| n.to_string()).collect(),
                vectors: surface,
                counts,
            }),
            meta: ModelMeta {
                params,
                fingerprint,
                value_model: None,
                source: String::new(),
                specific: Some(specific),
                item_specific,
            },
        })
    }
}
