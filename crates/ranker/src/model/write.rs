//! Writing a model file (atomically: a temporary file, synced, renamed).

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, UInt32Array, UInt64Array, UInt8Array,
};
use arrow_ipc::writer::FileWriter;
use arrow_schema::{ArrowError, DataType, Field, Schema};

use crate::error::{Error, Result};

use super::*;

impl Model {
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

    pub(super) fn write_file(&self, path: &Path, version: u32) -> Result<()> {
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
            if sv.names.iter().any(|n| !valid_surface_name(n)) || ns > crate::surfaces::MAX_SURFACES
            {
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
