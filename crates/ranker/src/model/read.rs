//! Reading a model file: validated, then arrays over its bytes as read.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    Array, FixedSizeListArray, Float32Array, RecordBatch, UInt32Array, UInt64Array, UInt8Array,
};
use arrow_buffer::{Buffer, ScalarBuffer};
use arrow_ipc::convert::try_fb_to_schema;
use arrow_ipc::reader::{read_footer_length, FileDecoder};
use arrow_schema::{ArrowError, Metadata, Schema};

use crate::error::{Error, Result};
use crate::ids::IdMap;

use super::*;

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
                if names.len() > crate::surfaces::MAX_SURFACES
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
