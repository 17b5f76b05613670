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
//! surfaces writes no such key and no such batch. A model trained on string
//! ids (ISBNs, hashes) has a sixth column `key` (utf8, nullable): the id as
//! given for every row of the side whose ids were strings (null on the other
//! side), `id` then being the dense internal id. Version 1 files (two
//! batches, five columns) are read as before.
//!
//! Loading validates the magic bytes, the footer, every length, the dim and the
//! version, and returns an error (never a panic) on a truncated or foreign file.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, UInt32Array, UInt64Array,
    UInt8Array,
};
use arrow_buffer::{Buffer, ScalarBuffer};
use arrow_ipc::convert::try_fb_to_schema;
use arrow_ipc::reader::{read_footer_length, FileDecoder};
use arrow_ipc::writer::FileWriter;
use arrow_schema::{ArrowError, DataType, Field, Metadata, Schema};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::factors::Factors;
use crate::ids::IdMap;
use crate::params::TrainParams;
use crate::value::ValueModel;

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
    pub fn from_surfaces(
        data: &crate::SurfaceData,
        factors: crate::SurfaceFactors,
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
        let crate::SurfaceFactors {
            dim,
            specific,
            shared,
            surface,
            items,
            item_bias,
            ..
        } = factors;
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
            },
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn batch(
        schema: &Arc<Schema>,
        kind: u8,
        ids: &[u64],
        emb: &[f32],
        dim: usize,
        bias: Vec<f32>,
        counts: &[u32],
        keys: Option<&[String]>,
    ) -> std::result::Result<RecordBatch, ArrowError> {
        let n = ids.len();
        let values = Float32Array::from(emb.to_vec());
        let field = Arc::new(Field::new("item", DataType::Float32, false));
        let list = FixedSizeListArray::try_new(field, dim as i32, Arc::new(values), None)?;
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(UInt8Array::from(vec![kind; n])),
            Arc::new(UInt64Array::from(ids.to_vec())),
            Arc::new(list),
            Arc::new(Float32Array::from(bias)),
            Arc::new(UInt32Array::from(counts.to_vec())),
        ];
        if schema.fields().len() == 6 {
            let keys: arrow_array::StringArray = match keys {
                Some(k) => k.iter().map(|s| Some(s.as_str())).collect(),
                None => std::iter::repeat_n(None::<&str>, n).collect(),
            };
            cols.push(Arc::new(keys));
        }
        RecordBatch::try_new(schema.clone(), cols)
    }

    /// Writes the model atomically (temporary file beside `path`, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.write_file(path, FORMAT_VERSION)
    }

    fn write_file(&self, path: &Path, version: u32) -> Result<()> {
        let dim = self.factors.dim;
        let mut md = HashMap::new();
        md.insert(KEY_VERSION.to_string(), version.to_string());
        md.insert(KEY_DIM.to_string(), dim.to_string());
        md.insert(KEY_USERS.to_string(), self.users.len().to_string());
        md.insert(KEY_ITEMS.to_string(), self.items.len().to_string());
        md.insert(
            KEY_META.to_string(),
            serde_json::to_string(&self.meta).map_err(|e| invalid(path, e.to_string()))?,
        );
        if let Some(sv) = &self.surfaces {
            let ns = sv.names.len();
            if sv.names.iter().any(|n| !valid_surface_name(n)) || ns > crate::MAX_SURFACES {
                return Err(invalid(
                    path,
                    "surface names must be 1 to 8 names of a-z, 0-9, _",
                ));
            }
            let nu = self.users.len();
            if sv.vectors.len() != nu * ns * dim || sv.counts.len() != nu * ns {
                return Err(Error::LengthMismatch {
                    what: "surface vectors",
                    expected: nu * ns * dim,
                    got: sv.vectors.len(),
                });
            }
            md.insert(KEY_SURFACES.to_string(), sv.names.join(","));
        }
        for (keys, n, what) in [
            (&self.user_keys, self.users.len(), "user keys"),
            (&self.item_keys, self.items.len(), "item keys"),
        ] {
            if let Some(k) = keys {
                if k.len() != n {
                    return Err(Error::LengthMismatch {
                        what,
                        expected: n,
                        got: k.len(),
                    });
                }
            }
        }
        let keyed = self.user_keys.is_some() || self.item_keys.is_some();
        let schema = Arc::new(schema(dim, keyed, md));
        let users = Self::batch(
            &schema,
            0,
            self.users.ids(),
            &self.factors.users,
            dim,
            vec![0.0; self.users.len()],
            &self.user_counts,
            self.user_keys.as_deref(),
        )
        .map_err(|e| arrow_err(path, e))?;
        let items = Self::batch(
            &schema,
            1,
            self.items.ids(),
            &self.factors.items,
            dim,
            self.factors.item_bias.clone(),
            &self.item_counts,
            self.item_keys.as_deref(),
        )
        .map_err(|e| arrow_err(path, e))?;
        let mut batches = vec![users, items];
        if let Some(sv) = &self.surfaces {
            let ns = sv.names.len();
            for s in 0..ns {
                let emb: Vec<f32> = sv
                    .vectors
                    .chunks_exact(dim)
                    .skip(s)
                    .step_by(ns)
                    .flatten()
                    .copied()
                    .collect();
                let counts: Vec<u32> = sv.counts.iter().skip(s).step_by(ns).copied().collect();
                batches.push(
                    Self::batch(
                        &schema,
                        2 + s as u8,
                        self.users.ids(),
                        &emb,
                        dim,
                        vec![0.0; self.users.len()],
                        &counts,
                        self.user_keys.as_deref(),
                    )
                    .map_err(|e| arrow_err(path, e))?,
                );
            }
        }
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        write_ipc_file(path, &schema, &refs)
    }
}

/// Writes `batches` as one Arrow IPC file at `path`, atomically: to a
/// temporary file beside it (`.NAME.PID.tmp`, which an interrupted command
/// removes), synced, then renamed over `path`; on failure the temporary file
/// is removed and `path` is untouched. A failed write is an I/O error (a full
/// disk), not a bad file.
pub(crate) fn write_ipc_file(
    path: &Path,
    schema: &Arc<Schema>,
    batches: &[&RecordBatch],
) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let write_err = |e: ArrowError| match e {
        ArrowError::IoError(_, source) => io_err(path, source),
        other => io_err(path, std::io::Error::other(other)),
    };
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).map_err(|e| io_err(path, e))?;
        let mut w =
            FileWriter::try_new(std::io::BufWriter::new(file), schema).map_err(write_err)?;
        for b in batches {
            w.write(b).map_err(write_err)?;
        }
        w.finish().map_err(write_err)?;
        let mut buf = w.into_inner().map_err(write_err)?;
        buf.flush().map_err(|e| io_err(path, e))?;
        let file = buf.into_inner().map_err(|e| io_err(path, e.into_error()))?;
        file.sync_all().map_err(|e| io_err(path, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A model file read into memory: the embeddings are arrays over the file's
/// bytes as read (one aligned buffer, no decoding copy).
#[derive(Debug, Clone)]
pub struct MappedModel {
    /// External user id ↔ user row.
    pub users: IdMap,
    /// External item id ↔ item row.
    pub items: IdMap,
    /// Embedding dimension.
    pub dim: usize,
    /// `users × dim` user embeddings, row-major, in place in the file.
    pub user_factors: ScalarBuffer<f32>,
    /// `items × dim` item embeddings, row-major, in place in the file.
    pub item_factors: ScalarBuffer<f32>,
    /// One bias per item (zero for iALS).
    pub item_bias: ScalarBuffer<f32>,
    /// Training interactions per user.
    pub user_counts: ScalarBuffer<u32>,
    /// Training interactions per item.
    pub item_counts: ScalarBuffer<u32>,
    /// Per-surface models: every user's vector on every surface.
    pub surfaces: Option<MappedSurfaces>,
    /// Users trained on string ids: the ids as given, by row.
    pub user_keys: Option<Keys>,
    /// Items trained on string ids: the ids as given, by row.
    pub item_keys: Option<Keys>,
    /// How the model was trained.
    pub meta: ModelMeta,
    /// The file's format version (one of [`SUPPORTED_VERSIONS`]).
    pub format_version: u32,
    /// XXH3-64 of the file's bytes exactly as mapped: stable across Rust
    /// releases and platforms, and the version the server reports (computed
    /// from the mapping itself, so it names the bytes being served even if the
    /// path is replaced meanwhile). For a model built in memory
    /// ([`crate::Ranker::from_model`]): of its embeddings and biases.
    pub content_hash: u64,
}

fn meta_num(path: &Path, md: &Metadata, key: &str) -> Result<usize> {
    md.get(key)
        .ok_or_else(|| invalid(path, format!("metadata `{key}` missing")))?
        .parse()
        .map_err(|_| invalid(path, format!("metadata `{key}` is not a number")))
}

struct Side {
    ids: Vec<u64>,
    emb: ScalarBuffer<f32>,
    bias: ScalarBuffer<f32>,
    counts: ScalarBuffer<u32>,
    /// The `key` column: `None` without one or when every value is null.
    keys: Option<Vec<String>>,
}

fn side(path: &Path, batch: &RecordBatch, kind: u8, rows: usize, dim: usize) -> Result<Side> {
    let what = match kind {
        0 => "user",
        1 => "item",
        _ => "surface user",
    };
    if batch.num_rows() != rows {
        return Err(invalid(
            path,
            format!(
                "{what} table has {} rows, metadata says {rows}",
                batch.num_rows()
            ),
        ));
    }
    let col = |i: usize| batch.column(i);
    let kinds = col(0)
        .as_any()
        .downcast_ref::<UInt8Array>()
        .ok_or_else(|| invalid(path, "column `kind` is not uint8"))?;
    if kinds.null_count() > 0 || kinds.values().iter().any(|&k| k != kind) {
        return Err(invalid(
            path,
            format!("{what} table holds rows of another kind"),
        ));
    }
    let ids = col(1)
        .as_any()
        .downcast_ref::<UInt64Array>()
        .ok_or_else(|| invalid(path, "column `id` is not uint64"))?;
    let list = col(2)
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .ok_or_else(|| invalid(path, "column `embedding` is not a fixed-size list"))?;
    if list.value_length() as usize != dim {
        return Err(Error::DimensionMismatch {
            expected: dim,
            got: list.value_length() as usize,
        });
    }
    let values = list
        .values()
        .as_any()
        .downcast_ref::<Float32Array>()
        .ok_or_else(|| invalid(path, "embedding values are not float32"))?;
    let bias = col(3)
        .as_any()
        .downcast_ref::<Float32Array>()
        .ok_or_else(|| invalid(path, "column `bias` is not float32"))?;
    let counts = col(4)
        .as_any()
        .downcast_ref::<UInt32Array>()
        .ok_or_else(|| invalid(path, "column `count` is not uint32"))?;
    if ids.null_count()
        + list.null_count()
        + values.null_count()
        + bias.null_count()
        + counts.null_count()
        > 0
    {
        return Err(invalid(path, format!("{what} table has nulls")));
    }
    // The list may be a slice of its values: take exactly this batch's part.
    let offset = list.offset() * dim;
    if values.len() < offset + rows * dim {
        return Err(invalid(
            path,
            format!("{what} embeddings are shorter than {rows} × {dim}"),
        ));
    }
    let emb = values.values().slice(offset, rows * dim);
    if let Some(pos) = emb.iter().position(|v| !v.is_finite()) {
        return Err(invalid(
            path,
            format!(
                "{what} {} has a non-finite embedding value",
                pos / dim.max(1)
            ),
        ));
    }
    // Finite is not enough: a score sums `dim` products, and values near
    // f32::MAX overflow it to infinity (NaN after a subtraction).
    if let Some(pos) = emb.iter().position(|v| v.abs() > MAX_EMBEDDING) {
        return Err(invalid(
            path,
            format!(
                "{what} {} has an embedding value of {:e}, beyond ±{MAX_EMBEDDING:e}: its scores would overflow",
                pos / dim.max(1),
                emb[pos]
            ),
        ));
    }
    if bias
        .values()
        .iter()
        .any(|v| !v.is_finite() || v.abs() > MAX_BIAS)
    {
        return Err(invalid(
            path,
            format!("{what} bias is not finite or beyond ±{MAX_BIAS:e}"),
        ));
    }
    let keys = match batch.columns().get(5) {
        None => None,
        Some(col) => {
            let k = col
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .ok_or_else(|| invalid(path, "column `key` is not utf8"))?;
            match k.null_count() {
                0 => Some((0..k.len()).map(|r| k.value(r).to_string()).collect()),
                n if n == k.len() => None,
                _ => return Err(invalid(path, format!("{what} keys are partly null"))),
            }
        }
    };
    Ok(Side {
        ids: ids.values().to_vec(),
        emb,
        bias: bias.values().clone(),
        counts: counts.values().clone(),
        keys,
    })
}

/// Largest embedding value a model file may hold: `dim · MAX²` (dim ≤ 1024)
/// stays far below f32::MAX, so no score can overflow.
const MAX_EMBEDDING: f32 = 1e15;

/// Largest item bias a model file may hold.
const MAX_BIAS: f32 = 1e30;

impl MappedModel {
    /// Reads and validates a model file.
    ///
    /// The bytes are read into memory (a 64-byte-aligned buffer the arrays
    /// point into, no decoding copy), not memory-mapped: a served model must
    /// survive its file being overwritten in place (`cp new.arrow live.arrow`,
    /// a truncation), which turns every access to a mapping of the file into
    /// SIGBUS or into bytes of the new model answering under the old version.
    /// A file rewritten while it is read fails validation (or hashes to a
    /// different [`MappedModel::content_hash`]); it never mixes two models.
    pub fn open(path: &Path) -> Result<MappedModel> {
        let mut file = File::open(path).map_err(|e| io_err(path, e))?;
        let len = file.metadata().map_err(|e| io_err(path, e))?.len();
        let len = usize::try_from(len).map_err(|_| invalid(path, "file larger than memory"))?;
        if len < 8 + 10 {
            return Err(invalid(
                path,
                "missing Arrow IPC magic bytes (truncated or foreign file)",
            ));
        }
        // Into fresh zero pages, 2 MiB ones for a large file: IVF retrieval
        // reads item rows at random (see `pages`).
        let bytes = crate::pages::huge_region(len, |out| {
            std::io::Read::read_exact(&mut file, out).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    invalid(
                        path,
                        "the file shrank while it was read (rewritten in place?)",
                    )
                } else {
                    io_err(path, e)
                }
            })
        })?;
        Self::from_buffer(path, bytes)
    }

    /// Memory-maps and validates a model file: no copy, and the pages are the
    /// page cache's, shared by every process mapping the file.
    ///
    /// # Safety
    /// Nothing may truncate or rewrite the file in place while the model (or
    /// any array of it) lives: a truncation makes every later access SIGBUS,
    /// a rewrite changes the model's bytes under it. Replacing the file by
    /// rename is fine. [`MappedModel::open`] has no such condition.
    pub unsafe fn map(path: &Path) -> Result<MappedModel> {
        let file = File::open(path).map_err(|e| io_err(path, e))?;
        // SAFETY: the caller guarantees the file is not changed in place.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io_err(path, e))?;
        let len = mmap.len();
        let mmap = Arc::new(mmap);
        let Some(ptr) = std::ptr::NonNull::new(mmap.as_ptr() as *mut u8) else {
            return Err(invalid(path, "empty file"));
        };
        // SAFETY: `ptr` and `len` describe the mapping, which the `Arc` keeps
        // alive for as long as the buffer (and every slice of it) lives.
        let buffer = unsafe { Buffer::from_custom_allocation(ptr, len, mmap) };
        Self::from_buffer(path, buffer)
    }

    /// Validates and decodes a whole model file's bytes.
    fn from_buffer(path: &Path, buffer: Buffer) -> Result<MappedModel> {
        let len = buffer.len();
        if len < 8 + 10 || &buffer[..6] != b"ARROW1" || &buffer[len - 6..] != b"ARROW1" {
            return Err(invalid(
                path,
                "missing Arrow IPC magic bytes (truncated or foreign file)",
            ));
        }
        // Malformed flatbuffers deep inside a foreign file could trip an assertion
        // in a dependency: keep the promise of an error, never a panic.
        let mut model = std::panic::catch_unwind(|| Self::decode(path, &buffer))
            .unwrap_or_else(|_| Err(invalid(path, "corrupt Arrow IPC structure")))?;
        model.content_hash = twox_hash::XxHash3_64::oneshot(buffer.as_slice());
        Ok(model)
    }

    fn decode(path: &Path, buffer: &Buffer) -> Result<MappedModel> {
        let ipc = IpcFile::open(buffer).map_err(|e| e.into_model_error(path))?;
        let file_schema = ipc.schema.clone();
        let md = file_schema.metadata().clone();
        let version = md.get(KEY_VERSION).ok_or_else(|| {
            invalid(
                path,
                format!("metadata `{KEY_VERSION}` missing: not a reelkit model"),
            )
        })?;
        match version.parse::<u32>() {
            Ok(v) if SUPPORTED_VERSIONS.contains(&v) => {}
            _ => {
                return Err(Error::Incompatible {
                    path: path.to_path_buf(),
                    found: version.clone(),
                    supported: SUPPORTED_VERSIONS,
                })
            }
        }
        let format_version: u32 = version.parse().unwrap_or(FORMAT_VERSION);
        let dim = meta_num(path, &md, KEY_DIM)?;
        let n_users = meta_num(path, &md, KEY_USERS)?;
        let n_items = meta_num(path, &md, KEY_ITEMS)?;
        if dim == 0 || dim > 65_536 {
            return Err(invalid(path, format!("dim {dim} out of range")));
        }
        let keyed = format_version >= 2 && file_schema.fields().len() == 6;
        let expected = schema(dim, keyed, HashMap::new());
        if file_schema.fields() != expected.fields() {
            return Err(invalid(
                path,
                format!("unexpected schema {:?}", file_schema.fields()),
            ));
        }
        let meta: ModelMeta = serde_json::from_str(
            md.get(KEY_META)
                .ok_or_else(|| invalid(path, "metadata `reelkit.meta` missing"))?,
        )
        .map_err(|e| invalid(path, format!("metadata `reelkit.meta`: {e}")))?;

        let names: Vec<String> = match (format_version, md.get(KEY_SURFACES)) {
            (1, Some(_)) => {
                return Err(invalid(
                    path,
                    format!("metadata `{KEY_SURFACES}` in a version 1 file"),
                ))
            }
            (_, None) => Vec::new(),
            (_, Some(list)) => {
                let names: Vec<String> = list.split(',').map(str::to_string).collect();
                let mut unique = names.clone();
                unique.sort();
                unique.dedup();
                if names.len() > crate::MAX_SURFACES
                    || unique.len() != names.len()
                    || names.iter().any(|n| !valid_surface_name(n))
                {
                    return Err(invalid(
                        path,
                        format!("metadata `{KEY_SURFACES}` is not 1 to 8 distinct surface names"),
                    ));
                }
                names
            }
        };
        let batches = ipc.batches(buffer).map_err(|e| e.into_model_error(path))?;
        if batches.len() != 2 + names.len() {
            return Err(invalid(
                path,
                format!(
                    "expected {} record batches, found {}",
                    2 + names.len(),
                    batches.len()
                ),
            ));
        }
        let u = side(path, &batches[0], 0, n_users, dim)?;
        let i = side(path, &batches[1], 1, n_items, dim)?;
        let surfaces = if names.is_empty() {
            None
        } else {
            let mut vectors = Vec::with_capacity(names.len());
            let mut counts = Vec::with_capacity(names.len());
            for (s, batch) in batches[2..].iter().enumerate() {
                let side = side(path, batch, 2 + s as u8, n_users, dim)?;
                if side.ids != u.ids || side.keys != u.keys {
                    return Err(invalid(
                        path,
                        format!(
                            "the vectors of surface `{}` are not the users' in order",
                            names[s]
                        ),
                    ));
                }
                vectors.push(side.emb);
                counts.push(side.counts);
            }
            Some(MappedSurfaces {
                names,
                vectors,
                counts,
            })
        };
        let keys = |k: Option<Vec<String>>, what: &str| -> Result<Option<Keys>> {
            match k {
                None => Ok(None),
                Some(k) => Keys::new(k)
                    .map(Some)
                    .ok_or_else(|| invalid(path, format!("duplicate {what} keys"))),
            }
        };
        let user_keys = keys(u.keys, "user")?;
        let item_keys = keys(i.keys, "item")?;
        let users = IdMap::from_ids(u.ids);
        let items = IdMap::from_ids(i.ids);
        if users.len() != n_users || items.len() != n_items {
            return Err(invalid(path, "duplicate ids"));
        }
        Ok(MappedModel {
            user_keys,
            item_keys,
            users,
            items,
            dim,
            user_factors: u.emb,
            item_factors: i.emb,
            item_bias: i.bias,
            user_counts: u.counts,
            item_counts: i.counts,
            surfaces,
            meta,
            format_version,
            content_hash: 0,
        })
    }
}

/// Why an Arrow IPC file's bytes could not be decoded.
#[derive(Debug)]
pub(crate) enum IpcError {
    /// Arrow refused a structure.
    Arrow(ArrowError),
    /// A structure is inconsistent with the file (the text says which).
    Invalid(String),
}

impl IpcError {
    fn into_model_error(self, path: &Path) -> Error {
        match self {
            IpcError::Arrow(e) => arrow_err(path, e),
            IpcError::Invalid(reason) => invalid(path, reason),
        }
    }
}

/// An Arrow IPC file held in memory: its schema, and its record batches
/// decoded on demand as arrays over the file's own bytes. Every block is
/// checked against the file's length before it is decoded, so a corrupt
/// length is an error, never an allocation of what it claims.
pub(crate) struct IpcFile {
    /// The file's schema, metadata included.
    pub(crate) schema: Schema,
    version: arrow_ipc::MetadataVersion,
    blocks: Vec<arrow_ipc::Block>,
}

impl IpcFile {
    /// Checks the magic bytes and the footer, and reads the schema.
    pub(crate) fn open(buffer: &Buffer) -> std::result::Result<IpcFile, IpcError> {
        let len = buffer.len();
        if len < 8 + 10 || &buffer[..6] != b"ARROW1" || &buffer[len - 6..] != b"ARROW1" {
            return Err(IpcError::Invalid(
                "missing Arrow IPC magic bytes (truncated or foreign file)".into(),
            ));
        }
        let mut trailer = [0u8; 10];
        trailer.copy_from_slice(&buffer[len - 10..]);
        let footer_len = read_footer_length(trailer).map_err(IpcError::Arrow)?;
        if footer_len + 10 + 8 > len {
            return Err(IpcError::Invalid(
                "footer longer than the file (truncated?)".into(),
            ));
        }
        let footer = arrow_ipc::root_as_footer(&buffer[len - 10 - footer_len..len - 10])
            .map_err(|e| IpcError::Invalid(format!("bad footer: {e}")))?;
        let fb_schema = footer
            .schema()
            .ok_or_else(|| IpcError::Invalid("no schema in footer".into()))?;
        let schema = try_fb_to_schema(fb_schema).map_err(IpcError::Arrow)?;
        let blocks = footer
            .recordBatches()
            .map(|b| b.iter().copied().collect())
            .unwrap_or_default();
        Ok(IpcFile {
            schema,
            version: footer.version(),
            blocks,
        })
    }

    /// Every record batch, in order (`buffer`: the bytes `open` was given).
    pub(crate) fn batches(
        &self,
        buffer: &Buffer,
    ) -> std::result::Result<Vec<RecordBatch>, IpcError> {
        let decoder = FileDecoder::new(Arc::new(self.schema.clone()), self.version);
        let mut batches = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let start = usize::try_from(block.offset())
                .map_err(|_| IpcError::Invalid("negative block offset".into()))?;
            let block_len = usize::try_from(block.metaDataLength())
                .ok()
                .zip(usize::try_from(block.bodyLength()).ok())
                .and_then(|(a, b)| a.checked_add(b))
                .ok_or_else(|| IpcError::Invalid("negative block length".into()))?;
            if start
                .checked_add(block_len)
                .is_none_or(|end| end > buffer.len())
            {
                return Err(IpcError::Invalid(
                    "record batch beyond the end of the file (truncated?)".into(),
                ));
            }
            let data = buffer.slice_with_length(start, block_len);
            let batch = decoder
                .read_record_batch(block, &data)
                .map_err(IpcError::Arrow)?
                .ok_or_else(|| IpcError::Invalid("empty record batch".into()))?;
            batches.push(batch);
        }
        Ok(batches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::TrainParams;

    fn model() -> Model {
        let dim = 3;
        Model {
            users: IdMap::from_ids(vec![10, 20]),
            items: IdMap::from_ids(vec![7, 8, 9, 1 << 40]),
            factors: Factors {
                dim,
                users: (0..6).map(|x| x as f32 * 0.5).collect(),
                items: (0..12).map(|x| 1.0 - x as f32 * 0.25).collect(),
                item_bias: vec![0.0, 0.1, -0.2, 0.3],
            },
            user_counts: vec![3, 4],
            item_counts: vec![1, 2, 3, 4],
            surfaces: None,
            user_keys: None,
            item_keys: None,
            meta: ModelMeta {
                params: TrainParams::default(),
                fingerprint: "abc".into(),
                value_model: None,
                source: "test".into(),
                specific: None,
            },
        }
    }

    fn surface_model() -> Model {
        let mut m = model();
        m.surfaces = Some(SurfaceVectors {
            names: vec!["reels".into(), "feed".into(), "watch".into()],
            vectors: (0..18).map(|x| x as f32 * -0.125).collect(),
            counts: vec![1, 0, 2, 3, 0, 1],
        });
        m.meta.specific = Some(vec![0.1, 0.0, 0.75]);
        m
    }

    #[test]
    fn surface_vectors_round_trip_and_are_checked() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
        let path = dir.path().join("s.arrow");
        let m = surface_model();
        m.save(&path)?;
        let back = MappedModel::open(&path)?;
        assert_eq!(back.format_version, 2);
        let sv = back.surfaces.as_ref().expect("surfaces read back");
        assert_eq!(sv.names, ["reels", "feed", "watch"]);
        let want = m
            .surfaces
            .as_ref()
            .map(|s| s.vectors.clone())
            .unwrap_or_default();
        for u in 0..2 {
            for s in 0..3 {
                assert_eq!(
                    &sv.vectors[s][u * 3..(u + 1) * 3],
                    &want[(u * 3 + s) * 3..(u * 3 + s + 1) * 3],
                    "user {u} surface {s}"
                );
                assert_eq!(sv.counts[s][u], [1, 0, 2, 3, 0, 1][u * 3 + s]);
            }
        }
        assert_eq!(back.meta.specific, Some(vec![0.1, 0.0, 0.75]));
        assert_eq!(&back.user_factors[..], &m.factors.users[..]);
        // Truncated anywhere: an error naming the file, never a panic.
        let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
        let cut = dir.path().join("cut.arrow");
        for keep in [bytes.len() / 3, bytes.len() * 2 / 3, bytes.len() - 7] {
            std::fs::write(&cut, &bytes[..keep]).map_err(|e| io_err(&cut, e))?;
            let err = MappedModel::open(&cut).expect_err("truncated");
            assert!(err.to_string().contains("cut.arrow"), "{err}");
        }
        // Vectors of the wrong length are refused at save.
        let mut short = m.clone();
        if let Some(s) = short.surfaces.as_mut() {
            s.vectors.pop();
        }
        assert!(short.save(&dir.path().join("short.arrow")).is_err());
        let mut bad = m;
        if let Some(s) = bad.surfaces.as_mut() {
            s.names[1] = "Feed,x".into();
        }
        assert!(bad.save(&dir.path().join("bad.arrow")).is_err());
        Ok(())
    }

    #[test]
    fn string_ids_round_trip() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
        let path = dir.path().join("k.arrow");
        let mut m = surface_model();
        m.item_keys = Some(vec![
            "034545104X".into(),
            "0155061224".into(),
            "é-ü".into(),
            "x".into(),
        ]);
        m.save(&path)?;
        let back = MappedModel::open(&path)?;
        let keys = back.item_keys.as_ref().expect("item keys");
        assert_eq!(keys.key(2), "é-ü");
        assert_eq!(keys.row("0155061224"), Some(1));
        assert!(back.user_keys.is_none());
        assert!(back.surfaces.is_some());
        // A model without keys has no key column at all.
        let plain = dir.path().join("p.arrow");
        model().save(&plain)?;
        assert!(MappedModel::open(&plain)?.item_keys.is_none());
        // Duplicate keys are refused at load.
        m.item_keys = Some(vec!["a".into(), "b".into(), "a".into(), "c".into()]);
        m.save(&path)?;
        let err = MappedModel::open(&path).expect_err("duplicate keys");
        assert!(err.to_string().contains("duplicate item keys"), "{err}");
        Ok(())
    }

    #[test]
    fn version_1_files_still_read() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
        let path = dir.path().join("v1.arrow");
        let m = model();
        m.write_file(&path, 1)?;
        let back = MappedModel::open(&path)?;
        assert_eq!(back.format_version, 1);
        assert!(back.surfaces.is_none());
        assert_eq!(&back.user_factors[..], &m.factors.users[..]);
        // A version 1 file claiming surfaces is not one this build wrote.
        let sm = surface_model();
        sm.write_file(&path, 1)?;
        let err = MappedModel::open(&path).expect_err("surfaces in v1");
        assert!(err.to_string().contains("version 1"), "{err}");
        Ok(())
    }

    #[test]
    fn model_round_trips() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
        let path = dir.path().join("m.arrow");
        let m = model();
        m.save(&path)?;
        let back = MappedModel::open(&path)?;
        assert_eq!(back.dim, 3);
        assert_eq!(back.users, m.users);
        assert_eq!(back.items, m.items);
        assert_eq!(&back.user_factors[..], &m.factors.users[..]);
        assert_eq!(&back.item_factors[..], &m.factors.items[..]);
        assert_eq!(&back.item_bias[..], &m.factors.item_bias[..]);
        assert_eq!(&back.item_counts[..], &m.item_counts[..]);
        assert_eq!(back.meta, m.meta);
        // Same model, same bytes: no timestamps inside.
        let path2 = dir.path().join("m2.arrow");
        m.save(&path2)?;
        let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
        assert_eq!(Some(&bytes), std::fs::read(&path2).ok().as_ref());
        // The content hash is XXH3-64 of those bytes (stable: a fixed
        // algorithm, not std's DefaultHasher), and differs for other bytes.
        assert_eq!(back.content_hash, twox_hash::XxHash3_64::oneshot(&bytes));
        let mut other = m.clone();
        other.factors.items[0] += 1.0;
        other.save(&path2)?;
        assert_ne!(MappedModel::open(&path2)?.content_hash, back.content_hash);
        Ok(())
    }

    #[test]
    fn truncated_and_foreign_files_are_errors() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
        let path = dir.path().join("m.arrow");
        model().save(&path)?;
        let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
        let cut = dir.path().join("cut.arrow");
        for keep in [0, 5, 100, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&cut, &bytes[..keep]).map_err(|e| io_err(&cut, e))?;
            let err = MappedModel::open(&cut).expect_err("truncated file must be rejected");
            assert!(err.to_string().contains("cut.arrow"), "{err}");
        }
        // Flip bytes all over the file: errors, never panics.
        for at in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[at] ^= 0x5A;
            std::fs::write(&cut, &b).map_err(|e| io_err(&cut, e))?;
            let _ = MappedModel::open(&cut);
        }
        let foreign = dir.path().join("foreign.arrow");
        std::fs::write(&foreign, b"user_id,item_id\n1,2\n").map_err(|e| io_err(&foreign, e))?;
        assert!(MappedModel::open(&foreign).is_err());
        Ok(())
    }

    #[test]
    fn future_versions_are_incompatible() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
        let path = dir.path().join("m.arrow");
        model().write_file(&path, 9)?;
        match MappedModel::open(&path) {
            Err(Error::Incompatible { found, .. }) => assert_eq!(found, "9"),
            other => panic!("expected a version error, got {other:?}"),
        }
        Ok(())
    }
}
