//! The IVF index file: what is slow to compute about an [`IvfIndex`] (the
//! k-means centroids, every list's members, the tuned `nprobe` and depth
//! tables), stored beside the model so that a server starts, or hot-reloads a
//! new model, without building and tuning again (minutes at 10M items:
//! BENCHMARKS.md, "Constants and choices measured").
//!
//! One Arrow IPC file, readable by any Arrow implementation:
//!
//! | column | type | list rows (`kind` 0, batch 0) | added items (`kind` 1, batch 1) |
//! | --- | --- | --- | --- |
//! | `kind` | uint8 | 0 | 1 |
//! | `vector` | fixed_size_list<float32, dim + 2> | the augmented centroid | the row, its bias, 0 |
//! | `members` | `list<uint32>` | the list's items in scan order | empty |
//!
//! Schema metadata: `reelkit.ivf.format_version` and `reelkit.ivf.state`
//! (JSON: dimension, items, radius, `nprobe`, depth tables, and the XXH3 hash
//! of the item table the index was built from). The 8-bit codes are not
//! stored: they are quantised again from the model's rows at load, in
//! parallel (a deterministic function of the rows, so the loaded index
//! answers exactly as the saved one). An index is only ever loaded against
//! the table it was built from: any other table (a newer model) is refused
//! by its hash, as is a truncated, foreign or future-version file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, UInt32Builder};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, ListArray, RecordBatch, UInt32Array,
    UInt8Array,
};
use arrow_buffer::Buffer;
use arrow_schema::{ArrowError, DataType, Field, Schema};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{IvfIndex, IvfParams, List, Tuning};
use crate::error::{Error, Result};
use crate::int8::Int8Table;
use crate::model::{io_err, write_ipc_file, IpcError, IpcFile};
use crate::topk::ItemTable;

/// The index file format this build writes.
const FORMAT_VERSION: u32 = 1;
/// The index file formats this build reads.
const SUPPORTED: &[u32] = &[1];

const KEY_VERSION: &str = "reelkit.ivf.format_version";
const KEY_STATE: &str = "reelkit.ivf.state";

/// Everything about an index that is not an array.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    dim: usize,
    items: usize,
    added: usize,
    nlist: usize,
    /// The index's own fields, in the order written since format 1.
    #[serde(flatten)]
    tuning: Tuning,
    /// XXH3-64 of the item table's rows and biases, hex.
    table_hash: String,
}

fn schema(d2: usize, metadata: HashMap<String, String>) -> Schema {
    Schema::new_with_metadata(
        vec![
            Field::new("kind", DataType::UInt8, false),
            Field::new(
                "vector",
                DataType::FixedSizeList(
                    Arc::new(Field::new("item", DataType::Float32, false)),
                    d2 as i32,
                ),
                false,
            ),
            Field::new(
                "members",
                DataType::List(Arc::new(Field::new("item", DataType::UInt32, true))),
                false,
            ),
        ],
        metadata,
    )
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidIndex {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// XXH3-64 of a table's dimension, rows and biases (native byte order: an
/// index file is read on the kind of machine that wrote it).
pub(crate) fn table_hash(t: &ItemTable<'_>) -> u64 {
    fn bytes(v: &[f32]) -> &[u8] {
        // SAFETY: f32 has no padding and every bit pattern is a valid u8;
        // the slice covers exactly the floats' bytes.
        unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
    }
    let mut h = twox_hash::XxHash3_64::new();
    std::hash::Hasher::write(&mut h, &(t.dim() as u64).to_le_bytes());
    std::hash::Hasher::write(&mut h, bytes(t.factors()));
    if let Some(b) = t.bias() {
        std::hash::Hasher::write(&mut h, bytes(b));
    }
    std::hash::Hasher::finish(&h)
}

impl IvfIndex {
    /// Writes the index to `path` (see the module documentation of
    /// `ivf_file`: centroids, members, tuned state; the codes are quantised
    /// again at load). Atomic: a temporary file renamed over `path`, so a
    /// reader never sees half a file.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_version(path, FORMAT_VERSION)
    }

    /// [`IvfIndex::save`] with the format version to write (tests write
    /// future ones).
    pub(super) fn save_version(&self, path: &Path, version: u32) -> Result<()> {
        let d2 = self.dim + 2;
        let state = State {
            dim: self.dim,
            items: self.base,
            added: self.fresh_bias.len(),
            nlist: self.lists.len(),
            tuning: self.tuning.clone(),
            table_hash: format!("{:016x}", self.table_hash),
        };
        let mut md = HashMap::new();
        md.insert(KEY_VERSION.to_string(), version.to_string());
        md.insert(
            KEY_STATE.to_string(),
            serde_json::to_string(&state).map_err(|e| invalid(path, e.to_string()))?,
        );
        let schema = Arc::new(schema(d2, md));
        let batch = |kind: u8, vectors: Vec<f32>, members: &mut ListBuilder<UInt32Builder>| {
            let rows = vectors.len() / d2;
            let item = Arc::new(Field::new("item", DataType::Float32, false));
            let vector = FixedSizeListArray::try_new(
                item,
                d2 as i32,
                Arc::new(Float32Array::from(vectors)),
                None,
            )?;
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(UInt8Array::from(vec![kind; rows])) as ArrayRef,
                    Arc::new(vector),
                    Arc::new(members.finish()),
                ],
            )
        };
        let arrow = |e: ArrowError| invalid(path, e.to_string());
        let mut members = ListBuilder::new(UInt32Builder::new());
        for l in &self.lists {
            members.values().append_slice(&l.ids);
            members.append(true);
        }
        let lists = batch(0, self.centroids.clone(), &mut members).map_err(arrow)?;
        let mut added = Vec::with_capacity(self.fresh_bias.len() * d2);
        for (row, &b) in self
            .fresh
            .chunks_exact(self.dim.max(1))
            .zip(&self.fresh_bias)
        {
            added.extend_from_slice(row);
            added.extend([b, 0.0]);
        }
        for _ in 0..self.fresh_bias.len() {
            members.append(true);
        }
        let added = batch(1, added, &mut members).map_err(arrow)?;

        write_ipc_file(path, &schema, &[&lists, &added])
    }

    /// Reads an index written by [`IvfIndex::save`] for `exact`, the table it
    /// was built from: refused (an error naming the file and what is wrong,
    /// never a panic) when the file is truncated, foreign, of a future format
    /// version, or was built from another table. The file is read whole into
    /// memory, so replacing it later does not affect the loaded index.
    pub fn load(path: &Path, exact: &ItemTable<'_>) -> Result<IvfIndex> {
        // A regular file only: a link to a device would be read forever.
        let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
        if !meta.is_file() {
            return Err(io_err(
                path,
                std::io::Error::other("not a regular file (a device, a pipe or a directory)"),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
        // Malformed flatbuffers or arrays deep inside a foreign file could trip
        // an assertion in a dependency: keep the promise of an error.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            IvfIndex::from_file(path, bytes, exact)
        }))
        .unwrap_or_else(|_| Err(invalid(path, "corrupt Arrow IPC structure")))
    }

    fn from_file(path: &Path, bytes: Vec<u8>, exact: &ItemTable<'_>) -> Result<IvfIndex> {
        let (state, batches) = decode(path, bytes)?;
        let (dim, d2) = (state.dim, state.dim + 2);
        if dim != exact.dim() || state.items != exact.len() {
            return Err(invalid(
                path,
                format!(
                    "stale: built from {} items of dimension {}, this model has {} of dimension {}",
                    state.items,
                    dim,
                    exact.len(),
                    exact.dim()
                ),
            ));
        }
        if state.tuning.with_bias != exact.bias().is_some() {
            return Err(invalid(
                path,
                "built with and used without item biases (or the reverse)",
            ));
        }
        let hash = format!("{:016x}", table_hash(exact));
        if state.table_hash != hash {
            return Err(invalid(
                path,
                format!(
                    "stale: built from another item table (its hash {}, this model's {hash})",
                    state.table_hash
                ),
            ));
        }
        let (centroids, members) = columns(path, &batches[0], 0, d2)?;
        let (added, _) = columns(path, &batches[1], 1, d2)?;
        let nlist = members.len();
        if nlist == 0 || nlist != state.nlist {
            return Err(invalid(
                path,
                format!("{nlist} lists, the state says {}", state.nlist),
            ));
        }
        if added.len() != state.added * d2 {
            return Err(invalid(path, "added items do not match the state"));
        }
        if !(state.tuning.radius2.is_finite()
            && state.tuning.typical2.is_finite()
            && (0.0..=state.tuning.radius2).contains(&state.tuning.typical2))
        {
            return Err(invalid(path, "the radii are not finite with 0 ≤ ρ² ≤ R²"));
        }
        if let Some(p) = centroids.iter().chain(&added).position(|v| !v.is_finite()) {
            return Err(invalid(
                path,
                format!("value {p} of `vector` is not finite"),
            ));
        }
        let total = state.items + state.added;
        let mut item_list = vec![u32::MAX; total];
        for (l, ids) in members.iter().enumerate() {
            for &i in ids {
                match item_list.get_mut(i as usize) {
                    Some(slot) if *slot == u32::MAX => *slot = l as u32,
                    Some(_) => return Err(invalid(path, format!("item {i} is in two lists"))),
                    None => {
                        return Err(invalid(
                            path,
                            format!("list {l} holds item {i}, beyond the {total} indexed"),
                        ))
                    }
                }
            }
        }
        if let Some(i) = item_list.iter().position(|&l| l == u32::MAX) {
            return Err(invalid(path, format!("item {i} is in no list")));
        }
        let table_ok =
            |t: &[(usize, usize)]| t.iter().all(|&(d, l)| d >= 1 && (1..=nlist).contains(&l));
        if state.tuning.nprobe == 0
            || state.tuning.oversample == 0
            || !table_ok(&state.tuning.depths)
            || !table_ok(&state.tuning.bands)
        {
            return Err(invalid(
                path,
                "nprobe, oversample or a depth table out of range",
            ));
        }

        let mut fresh = Vec::with_capacity(state.added * dim);
        let mut fresh_bias = Vec::with_capacity(state.added);
        for row in added.chunks_exact(d2) {
            fresh.extend_from_slice(&row[..dim]);
            fresh_bias.push(row[dim]);
        }
        let t = &state.tuning;
        let mut index = IvfIndex::from_centroids(
            dim,
            centroids,
            t.with_bias,
            (t.radius2, t.typical2),
            &IvfParams::default(),
        );
        let (x, bias) = (exact.factors(), exact.bias());
        let base = state.items;
        index.lists = members
            .into_par_iter()
            .map(|ids| {
                let mut codes = Int8Table::empty(dim, index.tuning.with_bias);
                codes.reserve(ids.len());
                for &i in &ids {
                    let i = i as usize;
                    if i < base {
                        codes.push(&x[i * dim..(i + 1) * dim], bias.map_or(0.0, |b| b[i]));
                    } else {
                        let j = i - base;
                        codes.push(&fresh[j * dim..(j + 1) * dim], fresh_bias[j]);
                    }
                }
                List { codes, ids }
            })
            .collect();
        index.item_list = item_list;
        index.base = base;
        index.fresh = fresh;
        index.fresh_bias = fresh_bias;
        index.tuning = state.tuning;
        index.table_hash = table_hash(exact);
        Ok(index)
    }
}

/// The state and the two record batches of an index file's bytes.
fn decode(path: &Path, bytes: Vec<u8>) -> Result<(State, Vec<RecordBatch>)> {
    let buffer = Buffer::from_vec(bytes);
    let fail = |e: IpcError| match e {
        IpcError::Arrow(e) => invalid(path, e.to_string()),
        IpcError::Invalid(reason) => invalid(path, reason),
    };
    let ipc = IpcFile::open(&buffer).map_err(fail)?;
    let md = &ipc.schema.metadata;
    let version = md.get(KEY_VERSION).ok_or_else(|| {
        invalid(
            path,
            format!("metadata `{KEY_VERSION}` missing: not a reelkit IVF index"),
        )
    })?;
    if !version.parse::<u32>().is_ok_and(|v| SUPPORTED.contains(&v)) {
        return Err(invalid(
            path,
            format!("format version {version} is not supported (this build reads {SUPPORTED:?})"),
        ));
    }
    let state: State = serde_json::from_str(
        md.get(KEY_STATE)
            .ok_or_else(|| invalid(path, format!("metadata `{KEY_STATE}` missing")))?,
    )
    .map_err(|e| invalid(path, format!("metadata `{KEY_STATE}`: {e}")))?;
    if state.dim == 0 || state.dim > 65_536 {
        return Err(invalid(
            path,
            format!("dimension {} out of range", state.dim),
        ));
    }
    if ipc.schema.fields() != schema(state.dim + 2, HashMap::new()).fields() {
        return Err(invalid(
            path,
            format!("unexpected schema {:?}", ipc.schema.fields()),
        ));
    }
    let batches = ipc.batches(&buffer).map_err(fail)?;
    if batches.len() != 2 {
        return Err(invalid(
            path,
            format!("expected 2 record batches, found {}", batches.len()),
        ));
    }
    Ok((state, batches))
}

/// Batch `kind`'s vectors (flat) and members, checked.
fn columns(
    path: &Path,
    batch: &RecordBatch,
    kind: u8,
    d2: usize,
) -> Result<(Vec<f32>, Vec<Vec<u32>>)> {
    let what = if kind == 0 { "lists" } else { "added items" };
    let bad = |col: &str| invalid(path, format!("{what}: column `{col}` is malformed"));
    let kinds = batch
        .column(0)
        .as_any()
        .downcast_ref::<UInt8Array>()
        .ok_or_else(|| bad("kind"))?;
    if kinds.null_count() > 0 || kinds.values().iter().any(|&k| k != kind) {
        return Err(invalid(
            path,
            format!("{what}: batch holds rows of another kind"),
        ));
    }
    let vector = batch
        .column(1)
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .ok_or_else(|| bad("vector"))?;
    let values = vector
        .values()
        .as_any()
        .downcast_ref::<Float32Array>()
        .ok_or_else(|| bad("vector"))?;
    if vector.null_count() > 0 || values.null_count() > 0 || values.len() != batch.num_rows() * d2 {
        return Err(bad("vector"));
    }
    let members = batch
        .column(2)
        .as_any()
        .downcast_ref::<ListArray>()
        .ok_or_else(|| bad("members"))?;
    let ids = members
        .values()
        .as_any()
        .downcast_ref::<UInt32Array>()
        .ok_or_else(|| bad("members"))?;
    if members.null_count() > 0 || ids.null_count() > 0 {
        return Err(bad("members"));
    }
    let offsets = members.value_offsets();
    let lists = offsets
        .windows(2)
        .map(|w| ids.values()[w[0] as usize..w[1] as usize].to_vec())
        .collect();
    Ok((values.values().to_vec(), lists))
}
